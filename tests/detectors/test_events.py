"""sos, fall, wristband_removed and low_battery."""

from __future__ import annotations

from dataclasses import replace

from detectors.findings import FindingKind, Severity
from ingest.records import DeviceEvent, EventType
from tests.detectors.helpers import BAND, NIGHT_MS, RID, Harness, band, event

K = FindingKind


def test_sos_at_once_presses_join_and_cancel_clears() -> None:
    h = Harness()
    h.feed(
        [
            event(NIGHT_MS, EventType.SOS),
            event(NIGHT_MS + 90_000, EventType.SOS),
            event(NIGHT_MS + 200_000, EventType.SOS),
        ]
    )
    fired = h.of(K.SOS)
    assert [f.severity for f in fired] == [Severity.CRITICAL] * 3
    assert [f.at_ms for f in fired] == [NIGHT_MS, NIGHT_MS + 90_000, NIGHT_MS + 200_000]
    assert [f.started_ms for f in fired] == [NIGHT_MS, NIGHT_MS, NIGHT_MS]
    assert [f.evidence["presses"] for f in fired] == [1, 2, 3]
    h.feed([event(NIGHT_MS + 400_000, EventType.SOS)])  # > 2 min after the last: a new group
    assert h.of(K.SOS)[-1].started_ms == NIGHT_MS + 400_000
    h.feed([event(NIGHT_MS + 410_000, EventType.SOS_CANCEL)])
    [cleared] = h.of(K.SOS, cleared=True)
    assert cleared.started_ms == NIGHT_MS + 400_000


def test_fall_is_critical_at_once_with_its_evidence() -> None:
    h = Harness()
    h.feed([DeviceEvent(BAND, RID, NIGHT_MS, EventType.FALL, conf=0.9, lat=31.2, degraded=True)])
    [f] = h.findings
    assert (f.kind, f.severity, f.at_ms) == (K.FALL, Severity.CRITICAL, NIGHT_MS)
    assert f.evidence == {"event": "fall", "conf": 0.9, "lat": 31.2, "degraded": True}


def test_wristband_removed_by_event_or_two_unworn_readings_and_back_on() -> None:
    h = Harness()
    h.feed([band(NIGHT_MS, worn=0)])
    assert h.of(K.WRISTBAND_REMOVED) == []
    h.feed([band(NIGHT_MS + 30_000, worn=0), band(NIGHT_MS + 60_000, worn=0)])
    assert [f.severity for f in h.of(K.WRISTBAND_REMOVED)] == [Severity.LOW]
    h.feed([band(NIGHT_MS + 90_000, worn=1)])
    assert len(h.of(K.WRISTBAND_REMOVED, cleared=True)) == 1
    h.feed([event(NIGHT_MS + 100_000, EventType.REMOVED)])
    assert len(h.of(K.WRISTBAND_REMOVED)) == 2


def test_low_battery_with_hysteresis() -> None:
    h = Harness()
    h.feed([band(NIGHT_MS + 30_000 * i, bat=b) for i, b in enumerate([20, 15, 14, 16, 15, 24, 25])])
    assert len(h.of(K.LOW_BATTERY)) == 1
    [cleared] = h.of(K.LOW_BATTERY, cleared=True)
    assert cleared.evidence == {"bat": 25}


def test_an_sos_delivered_again_after_a_restart_is_not_a_second_press() -> None:
    before = Harness()
    press = event(NIGHT_MS, EventType.SOS)
    before.feed([press])
    after = Harness()
    after.runner.restore(before.runner.snapshot())
    after.feed([press])  # the broker redelivers what was detected but not yet acknowledged
    assert after.findings == []
    after.feed([event(NIGHT_MS + 30_000, EventType.SOS)])  # a real second press still counts
    assert [f.evidence["presses"] for f in after.of(FindingKind.SOS)] == [2]


def test_a_fall_delivered_again_after_a_restart_is_not_a_second_fall() -> None:
    before = Harness()
    # The band's clock is an hour fast: the fall is acted on at receive time, known by its own.
    fall = DeviceEvent(BAND, RID, NIGHT_MS, EventType.FALL, device_ts_ms=NIGHT_MS + 3_600_000)
    before.feed([fall])
    after = Harness()
    after.runner.restore(before.runner.snapshot())
    after.feed([replace(fall, ts_ms=NIGHT_MS + 20_000)])  # delivered again, received later
    assert after.findings == []
    after.feed([event(NIGHT_MS + 60_000, EventType.FALL)])  # another fall still counts
    assert len(after.of(FindingKind.FALL)) == 1


def test_emergencies_decided_apart_follow_the_same_rules_and_remember_a_snapshot() -> None:
    from detectors.events import Emergencies
    from tests.detectors.helpers import config

    apart = Emergencies()
    apart.set_residents({RID: config()})
    first = apart.step(event(NIGHT_MS, EventType.SOS))
    assert [(f.kind, f.severity, f.evidence["presses"]) for f in first] == [
        (K.SOS, Severity.CRITICAL, 1)
    ]
    assert apart.step(event(NIGHT_MS, EventType.SOS)) == []  # the same press, delivered again
    assert apart.step(event(NIGHT_MS + 5_000, EventType.SOS))[0].evidence["presses"] == 2
    assert apart.step(event(NIGHT_MS, EventType.REMOVED)) == []  # not an emergency
    # After a restart: what the detector worker's snapshot remembers is not decided twice.
    h = Harness()
    h.feed([event(NIGHT_MS + 10_000, EventType.FALL)])
    restarted = Emergencies()
    restarted.set_residents({RID: config()})
    restarted.restore(h.runner.snapshot())
    assert restarted.step(event(NIGHT_MS + 10_000, EventType.FALL)) == []
    assert [f.kind for f in restarted.step(event(NIGHT_MS + 20_000, EventType.FALL))] == [K.FALL]
