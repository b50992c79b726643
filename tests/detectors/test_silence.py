"""device_silent by receive time and Last Will; a silent device feeds no vitals findings."""

from __future__ import annotations

from detectors.findings import FindingKind, Severity
from ingest.records import DeviceStatus, StatusState
from tests.detectors.helpers import MAT, NIGHT_MS, RID, Harness, band, mat, seconds

K = FindingKind


def test_mattress_silent_after_5_min_and_cleared_by_data() -> None:
    h = Harness()
    h.feed(seconds(NIGHT_MS, 10))
    h.runner.tick(NIGHT_MS + 9_000 + 299_000)
    assert h.of(K.DEVICE_SILENT) == []
    h.runner.tick(NIGHT_MS + 9_000 + 300_000)
    [f] = h.of(K.DEVICE_SILENT)
    assert (f.severity, f.device_id, f.started_ms) == (Severity.MEDIUM, MAT, NIGHT_MS + 9_000)
    h.runner.tick(NIGHT_MS + 400_000)
    assert len(h.of(K.DEVICE_SILENT)) == 1  # reported once
    h.feed(seconds(NIGHT_MS + 400_000, 1))
    assert len(h.of(K.DEVICE_SILENT, cleared=True)) == 1


def test_wristband_limit_is_30_min_and_devices_never_heard_start_at_first_tick() -> None:
    h = Harness()
    h.runner.tick(NIGHT_MS)
    h.runner.tick(NIGHT_MS + 300_000)
    assert [f.device_id for f in h.of(K.DEVICE_SILENT)] == ["mat-0001"]
    h.runner.tick(NIGHT_MS + 1_800_000)
    assert [f.device_id for f in h.of(K.DEVICE_SILENT)] == ["mat-0001", "band-0001"]


def test_offline_status_is_silent_at_once_and_online_clears() -> None:
    h = Harness()
    h.feed(seconds(NIGHT_MS, 5))
    h.runner.accept(
        [DeviceStatus(MAT, RID, NIGHT_MS + 6_000, StatusState.OFFLINE, False)], NIGHT_MS + 6_000
    )
    [f] = h.of(K.DEVICE_SILENT)
    assert f.evidence["status"] == "offline"
    h.runner.accept(
        [DeviceStatus(MAT, RID, NIGHT_MS + 60_000, StatusState.ONLINE, True)], NIGHT_MS + 60_000
    )
    assert len(h.of(K.DEVICE_SILENT, cleared=True)) == 1


def test_a_run_cut_by_silence_does_not_fire_later() -> None:
    h = Harness()
    h.feed(seconds(NIGHT_MS, 50, hr=None))
    h.runner.tick(NIGHT_MS + 49_000 + 300_000)
    # The device comes back with the same condition: the window starts again from its return.
    back = NIGHT_MS + 350_000
    h.feed(seconds(back, 59, hr=None), received_at_ms=back)
    assert h.of(K.VITALS_ABSENT) == []
    h.feed([mat(back + 59_000, hr=None)])
    assert len(h.of(K.VITALS_ABSENT)) == 1


def test_a_restart_longer_than_the_limit_does_not_make_every_device_silent() -> None:
    before = Harness()
    before.feed(seconds(NIGHT_MS, 10))
    before.runner.tick(NIGHT_MS + 10_000)
    after = Harness()
    after.runner.restore(before.runner.snapshot())
    back_ms = NIGHT_MS + 10 * 60_000  # the service was down for ten minutes
    after.runner.resume(back_ms)
    after.runner.tick(back_ms + 1000)
    assert after.of(FindingKind.DEVICE_SILENT) == []
    after.runner.tick(back_ms + 301_000)  # and a device that really stays silent still is
    assert [f.device_id for f in after.of(FindingKind.DEVICE_SILENT)] == ["mat-0001"]


def test_with_the_pad_silent_the_band_heart_rate_still_counts() -> None:
    h = Harness()
    h.feed(seconds(NIGHT_MS, 10, occ=0, hr=None, rr=None, sq=2))  # out of bed, then the pad dies
    h.runner.tick(NIGHT_MS + 10_000 + 301_000)
    assert [f.kind for f in h.findings] == [FindingKind.DEVICE_SILENT]
    start = NIGHT_MS + 320_000
    h.feed([band(start + i * 30_000, hr=35) for i in range(10)])  # 5 min of heart rate 35
    assert h.of(FindingKind.HEART_RATE)
