"""The runner: unknown devices, determinism across replay speeds, snapshot and restore."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from detectors.findings import Finding, FindingKind
from detectors.runner import LATE_SETTLE_MS, DetectorRunner
from ingest.records import DeviceId, EventType, MattressSample, Record, ResidentId, SampleSource
from tests.detectors.helpers import NIGHT_MS, RID, Harness, band, config, event, mat, seconds, when
from tests.detectors.test_nights import EVENING, night

DATA = Path(__file__).parent / "data"


def scripted_night() -> list[Record]:
    """Two hours with a tachycardia, a pause, an exit with no return and an SOS."""
    out: list[Record] = []
    t = NIGHT_MS
    out += seconds(t, 600)
    out += seconds(t + 600_000, 200, hr=140)
    out += seconds(t + 800_000, 100)
    out += seconds(t + 900_000, 25, rr=0)
    out += seconds(t + 925_000, 300)
    out += seconds(t + 1_225_000, 1500, occ=0, hr=None, rr=None, sq=1)
    out += seconds(t + 2_725_000, 600)
    wrist: list[Record] = [band(t + 30_000 * i + 500) for i in range(110)]
    wrist.append(event(t + 3_000_500, EventType.SOS))  # after the exit: no inhibition
    return sorted(out + wrist, key=when)


def play(records: list[Record], chunk: int, *, snapshot_at: int | None = None) -> list[Finding]:
    found: list[Finding] = []
    runner = DetectorRunner(
        residents={RID: config()}, on_finding=found.append, on_derived=lambda rows: None
    )
    for i in range(0, len(records), chunk):
        if snapshot_at is not None and i >= snapshot_at:
            blob = runner.snapshot()
            runner = DetectorRunner(
                residents={RID: config()}, on_finding=found.append, on_derived=lambda rows: None
            )
            runner.restore(blob)
            snapshot_at = None
        batch = records[i : i + chunk]
        runner.accept(batch, when(batch[-1]))
    return found


def test_same_findings_whatever_the_batching_and_receive_times() -> None:
    records = scripted_night()
    one = play(records, 1)
    assert {f.kind for f in one if not f.cleared} == {
        FindingKind.HEART_RATE,
        FindingKind.BREATHING_PAUSE,
        FindingKind.BED_EXIT_NO_RETURN,
        FindingKind.SOS,
    }
    assert play(records, 97) == one


def test_restart_from_a_snapshot_neither_refires_nor_forgets() -> None:
    records = scripted_night()
    straight = play(records, 10)
    for cut in (650, 1000, 2000, 3500):  # inside the tachycardia, the pause, the absence
        assert play(records, 10, snapshot_at=cut) == straight, cut


def test_a_snapshot_saved_by_the_previous_version_restores() -> None:
    # Saved by the version before the detectors ran a message's samples in one loop, at the
    # 2000th record of the scripted night (fed 10 at a time): it carries the tachycardia's
    # episode, the pause's, the exit's and the night.
    blob = (DATA / "snapshot-v1-scripted-night-2000.bin").read_bytes()
    records = scripted_night()
    straight: list[Finding] = []
    runner = DetectorRunner(
        residents={RID: config()}, on_finding=straight.append, on_derived=lambda rows: None
    )
    restored: list[Finding] = []
    after = DetectorRunner(
        residents={RID: config()}, on_finding=restored.append, on_derived=lambda rows: None
    )
    after.restore(blob)
    for i in range(0, len(records), 10):
        batch = records[i : i + 10]
        if i == 2000:
            assert runner.snapshot() == blob  # the same state, saved in the same form
            straight.clear()
        runner.accept(batch, when(batch[-1]))
        if i >= 2000:
            after.accept(batch, when(batch[-1]))
    assert restored == straight
    assert {f.kind for f in straight} >= {FindingKind.BED_EXIT_NO_RETURN, FindingKind.SOS}


def test_messages_of_one_device_give_what_single_samples_give() -> None:
    """As the service feeds them: a message is 10 pad samples, or one band reading, in the
    order they come; two nights with exits, pauses and a tachycardia, summaries included."""
    t = EVENING
    records: list[Record] = night(t, pauses=140) + night(t + 86_400_000, hr=140, away_s=1500)
    records += [band(when(r) + 500) for r in records[::30]]
    records.sort(key=when)
    one, batched = Harness(), Harness()
    one.feed(records)
    message: list[Record] = []
    for record in records:
        if message and (record.device_id != message[0].device_id or len(message) == 10):
            batched.runner.accept(message, when(message[-1]))
            message = []
        message.append(record)
    batched.runner.accept(message, when(message[-1]))
    one.runner.close_nights()
    batched.runner.close_nights()
    assert batched.findings == one.findings
    assert batched.summaries == one.summaries
    assert len(one.summaries) == 2
    assert {f.kind for f in one.findings} >= {FindingKind.HEART_RATE, FindingKind.APNEA_INDEX}
    assert batched.runner.snapshot() == one.runner.snapshot()


def test_snapshot_is_compact_and_versioned() -> None:
    h = Harness()
    h.feed(scripted_night())
    blob = h.runner.snapshot()
    assert len(blob) < 4_000
    with pytest.raises(ValueError, match="version"):
        h.runner.restore(zlib.compress(b'{"v": 99, "residents": {}}'))
    with pytest.raises(ValueError, match="not a detector snapshot"):
        h.runner.restore(b"garbage")


def test_records_of_unmapped_devices_and_derived_samples_are_ignored() -> None:
    h = Harness()
    stranger = [
        MattressSample(DeviceId("mat-x"), None, NIGHT_MS + i * 1000, None, 0, 0, 1, 90)
        for i in range(100)
    ]
    other = [
        MattressSample(DeviceId("mat-y"), ResidentId("r-9"), NIGHT_MS + i * 1000, None, 0, 0, 1, 90)
        for i in range(100)
    ]
    derived = [mat(NIGHT_MS + i * 1000, hr=None) for i in range(100)]
    derived = [
        MattressSample(
            d.device_id, d.resident_id, d.ts_ms, d.hr, d.rr, d.move, d.occ, d.sq, SampleSource.WAVE
        )
        for d in derived
    ]
    h.feed(stranger + other + derived)
    assert h.findings == []


def test_set_residents_applies_new_settings_and_keeps_state() -> None:
    from detectors.settings import parse_detector_settings

    h = Harness()
    h.feed(seconds(NIGHT_MS, 30, hr=None))
    h.runner.set_residents({RID: config(parse_detector_settings({"vitals_absent_window_s": 40}))})
    h.feed(seconds(NIGHT_MS + 30_000, 10, hr=None))
    assert len(h.of(FindingKind.VITALS_ABSENT)) == 1


def test_late_data_is_analysed_apart_once_settled_and_its_findings_marked_late() -> None:
    h = Harness()
    t = NIGHT_MS
    h.feed(seconds(t, 600))
    live_again = t + 3_600_000
    h.feed(seconds(live_again, 60, hr=140))  # a tachycardia building up, live
    # The pad's buffer of the hour it was offline arrives now: a 40 s pause at t + 1000 s.
    backlog = seconds(t + 900_000, 100) + seconds(t + 1_000_000, 40, rr=0)
    backlog += seconds(t + 1_040_000, 60)
    arrived = live_again + 61_000
    for i in range(0, len(backlog), 10):
        h.runner.accept_late(backlog[i : i + 10], arrived)
    h.runner.tick(arrived + LATE_SETTLE_MS - 1)
    assert h.of(FindingKind.BREATHING_PAUSE) == []  # more of the backlog may still come
    h.runner.tick(arrived + LATE_SETTLE_MS)
    [pause] = h.of(FindingKind.BREATHING_PAUSE)
    assert pause.late
    assert pause.started_ms == t + 990_000
    assert [f.late for f in h.of(FindingKind.BREATHING_PAUSE, cleared=True)] == [True]
    # The live episode went on undisturbed by the normal samples of the backlog.
    h.feed(seconds(live_again + 60_000, 70, hr=140))
    [fast] = h.of(FindingKind.HEART_RATE)
    assert not fast.late
    assert fast.started_ms == live_again
    # The late analysis neither closed a night nor counted into the live one.
    assert h.summaries == []
    assert h.runner._states[RID].night.pauses_rr == 0


def test_a_backlog_in_any_order_and_from_both_devices_is_analysed_in_time_order() -> None:
    h = Harness()
    t = NIGHT_MS
    h.feed(seconds(t + 7_200_000, 10))
    h.feed([band(t + 7_200_500)])
    pad = seconds(t, 30) + seconds(t + 30_000, 200, hr=35) + seconds(t + 230_000, 30)
    wrist = [band(t + 30_000 * i + 500, hr=35) for i in range(1, 8)]
    chunks = [pad[i : i + 10] for i in range(0, len(pad), 10)] + [[w] for w in wrist]
    for chunk in reversed(chunks):  # newest first, the band's after the pad's
        h.runner.accept_late(chunk, t + 7_300_000)
    h.runner.analyse_late()
    slow = h.of(FindingKind.HEART_RATE)
    assert [f.late for f in slow] == [True]  # one episode, from both devices' data
    assert slow[0].started_ms == t + 30_000


def test_after_a_restart_data_older_than_the_restored_state_is_late_data() -> None:
    h = Harness()
    t = NIGHT_MS
    h.feed(seconds(t + 3_600_000, 10))
    restored = Harness()
    restored.runner.restore(h.runner.snapshot())
    # A backlog of before the live data, arriving first after the restart (nothing in ingest
    # remembers what came before the restart, so it reaches the live entry point).
    restored.feed(seconds(t, 10) + seconds(t + 10_000, 40, rr=0) + seconds(t + 50_000, 10))
    assert restored.findings == []
    restored.runner.analyse_late()
    [pause] = restored.of(FindingKind.BREATHING_PAUSE)
    assert pause.late
