"""vitals_absent, heart_rate, breathing_rate and spo2 from scripted sample sequences."""

from __future__ import annotations

from detectors.findings import FindingKind, Severity
from tests.detectors.helpers import NIGHT_MS, Harness, band, mat, seconds

K = FindingKind


def test_vitals_absent_at_exactly_60_s_not_one_sample_short() -> None:
    short = Harness()
    short.feed(seconds(NIGHT_MS, 30) + seconds(NIGHT_MS + 30_000, 59, hr=None))
    assert short.of(K.VITALS_ABSENT) == []
    h = Harness()
    h.feed(seconds(NIGHT_MS, 30) + seconds(NIGHT_MS + 30_000, 60, hr=None))
    [f] = h.of(K.VITALS_ABSENT)
    assert f.severity is Severity.CRITICAL
    assert (f.started_ms, f.at_ms) == (NIGHT_MS + 30_000, NIGHT_MS + 89_000)
    assert f.evidence["window_s"] == 60
    assert f.device_id == "mat-0001"


def test_vitals_absent_from_rr_zero_with_hr_present_and_hr_zero() -> None:
    h = Harness()
    h.feed(seconds(NIGHT_MS, 60, rr=0))
    assert len(h.of(K.VITALS_ABSENT)) == 1
    h2 = Harness()
    h2.feed(seconds(NIGHT_MS, 60, hr=0))
    assert len(h2.of(K.VITALS_ABSENT)) == 1


def test_no_vitals_absent_for_empty_bed_bad_signal_or_movement() -> None:
    for values in ({"occ": 0}, {"sq": 20}, {"move": 60}):
        h = Harness()
        h.feed(seconds(NIGHT_MS, 300, hr=None, rr=None, **values))
        assert h.of(K.VITALS_ABSENT) == [], values


def test_vitals_absent_gap_in_data_restarts_the_window() -> None:
    h = Harness()
    h.feed(seconds(NIGHT_MS, 40, hr=None) + seconds(NIGHT_MS + 70_000, 40, hr=None))
    assert h.of(K.VITALS_ABSENT) == []


def test_vitals_absent_clears_after_a_minute_of_vitals() -> None:
    h = Harness()
    h.feed(seconds(NIGHT_MS, 70, hr=None) + seconds(NIGHT_MS + 70_000, 61))
    [cleared] = h.of(K.VITALS_ABSENT, cleared=True)
    assert cleared.started_ms == NIGHT_MS
    assert cleared.at_ms == NIGHT_MS + 130_000


def test_heart_rate_high_needs_two_full_minutes_at_the_limit() -> None:
    short = Harness()
    short.feed(seconds(NIGHT_MS, 119, hr=131))
    assert short.of(K.HEART_RATE) == []
    h = Harness()
    h.feed(seconds(NIGHT_MS, 120, hr=131))
    [f] = h.of(K.HEART_RATE)
    assert f.severity is Severity.HIGH
    assert f.evidence["min"] == 131
    low = Harness()
    low.feed(seconds(NIGHT_MS, 120, hr=40))
    assert len(low.of(K.HEART_RATE)) == 1
    below = Harness()
    below.feed(seconds(NIGHT_MS, 300, hr=41))
    assert below.of(K.HEART_RATE) == []


def test_single_wild_samples_never_alarm() -> None:
    h = Harness()
    samples = seconds(NIGHT_MS, 600)
    for i in range(0, 600, 60):
        samples[i] = mat(samples[i].ts_ms, hr=220, rr=40)
    h.feed(samples)
    assert h.kinds() == []


def test_flapping_around_the_limit_fires_once_and_does_not_chatter() -> None:
    h = Harness()
    h.feed(mat(NIGHT_MS + 1000 * i, hr=133 if i % 2 else 128) for i in range(600))
    assert len(h.of(K.HEART_RATE)) == 1
    assert h.of(K.HEART_RATE, cleared=True) == []  # 128 is inside the hysteresis band


def test_heart_rate_escalates_medium_to_high_and_clears_once() -> None:
    h = Harness()
    h.feed(seconds(NIGHT_MS, 600, hr=115))
    h.feed(seconds(NIGHT_MS + 600_000, 130, hr=140))
    h.feed(seconds(NIGHT_MS + 730_000, 70, hr=70))
    fired = h.of(K.HEART_RATE)
    assert [f.severity for f in fired] == [Severity.MEDIUM, Severity.HIGH]
    assert fired[0].at_ms == NIGHT_MS + 599_000
    [cleared] = h.of(K.HEART_RATE, cleared=True)
    assert cleared.severity is Severity.HIGH
    assert cleared.started_ms == NIGHT_MS


def test_medium_heart_rate_one_sample_short_of_ten_minutes() -> None:
    h = Harness()
    h.feed(seconds(NIGHT_MS, 599, hr=111))
    assert h.of(K.HEART_RATE) == []


def test_breathing_rate_high_and_low_but_not_from_apnoea() -> None:
    fast = Harness()
    fast.feed(seconds(NIGHT_MS, 120, rr=25))
    assert [f.severity for f in fast.of(K.BREATHING_RATE)] == [Severity.HIGH]
    slow = Harness()
    slow.feed(seconds(NIGHT_MS, 120, rr=8))
    assert len(slow.of(K.BREATHING_RATE)) == 1
    apnoea = Harness()
    apnoea.feed(seconds(NIGHT_MS, 300, rr=0))
    assert apnoea.of(K.BREATHING_RATE) == []


def test_out_of_order_sample_is_ignored() -> None:
    h = Harness()
    h.feed(seconds(NIGHT_MS, 100, hr=140))
    h.feed([mat(NIGHT_MS + 50_000, hr=140)])  # older than the last: no effect
    h.feed(seconds(NIGHT_MS + 100_000, 19, hr=140))
    assert h.of(K.HEART_RATE) == []
    h.feed([mat(NIGHT_MS + 119_000, hr=140)])
    assert len(h.of(K.HEART_RATE)) == 1


def test_wristband_heart_rate_counts_in_bed_only() -> None:
    out_of_bed = Harness()
    out_of_bed.feed(seconds(NIGHT_MS, 5, occ=0, hr=None, rr=None))
    out_of_bed.feed(band(NIGHT_MS + 10_000 + 30_000 * i, hr=150) for i in range(10))
    assert out_of_bed.of(K.HEART_RATE) == []
    in_bed = Harness()
    in_bed.feed(seconds(NIGHT_MS, 5, hr=None, rr=None, move=50))  # in bed, pad unreadable
    in_bed.feed(band(NIGHT_MS + 10_000 + 30_000 * i, hr=150) for i in range(5))
    [f] = in_bed.of(K.HEART_RATE)
    assert f.device_id == "band-0001"
    assert f.at_ms == NIGHT_MS + 130_000


def test_spo2_two_low_readings_in_a_row() -> None:
    h = Harness()
    h.feed([band(NIGHT_MS, spo2=90), band(NIGHT_MS + 30_000, spo2=96)])
    assert h.of(K.SPO2) == []
    h.feed([band(NIGHT_MS + 60_000, spo2=93), band(NIGHT_MS + 90_000, spo2=92)])
    assert [f.severity for f in h.of(K.SPO2)] == [Severity.MEDIUM]
    h.feed([band(NIGHT_MS + 120_000, spo2=91), band(NIGHT_MS + 150_000, spo2=89)])
    assert [f.severity for f in h.of(K.SPO2)] == [Severity.MEDIUM, Severity.HIGH]
    h.feed([band(NIGHT_MS + 180_000, spo2=95), band(NIGHT_MS + 210_000, spo2=96)])
    assert len(h.of(K.SPO2, cleared=True)) == 1


def test_spo2_readings_far_apart_or_unworn_are_not_in_a_row() -> None:
    h = Harness()
    h.feed([band(NIGHT_MS, spo2=88), band(NIGHT_MS + 301_000, spo2=88)])
    h.feed(
        [
            band(NIGHT_MS + 400_000, spo2=88, worn=0),
            band(NIGHT_MS + 430_000, spo2=97),
            band(NIGHT_MS + 460_000, spo2=88),
        ]
    )
    assert h.of(K.SPO2) == []
