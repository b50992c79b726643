"""Night summaries, apnea_index and sleep_change against the resident's own nights."""

from __future__ import annotations

from datetime import date

from detectors.findings import FindingKind, Severity
from ingest.records import Record
from tests.detectors.helpers import NIGHT_MS, Harness, seconds

K = FindingKind
DAY = 86_400_000
# NIGHT_MS is 23:00 local on 2025-01-14; the summary runs 18:00 to 12:00 the next day.
EVENING = NIGHT_MS - 5 * 3_600_000  # 18:00 local


def night(
    start: int, *, hr: float = 62, away_s: int = 300, pauses: int = 0, move: int = 1
) -> list[Record]:
    """In bed 22:00-06:30 with one exit at 02:00, `pauses` 15 s pauses, then up."""
    bed = start + 4 * 3_600_000
    out: list[Record] = []
    out += seconds(start, 3600, occ=0, hr=None, rr=None, sq=1)  # 18:00-19:00 empty
    out += seconds(bed, 4 * 3600, hr=hr, move=move)  # 22:00-02:00
    out += seconds(bed + 4 * 3_600_000, away_s, occ=0, hr=None, rr=None, sq=1)
    back = bed + 4 * 3_600_000 + away_s * 1000
    rest = 4 * 3600 + 1800 - away_s
    samples = seconds(back, rest, hr=hr, move=move)
    for k in range(pauses):
        i = 60 + k * 100
        samples[i : i + 5] = seconds(samples[i].ts_ms, 5, hr=hr, rr=0, move=move)
    out += samples
    up = back + rest * 1000
    out += seconds(up, 600, occ=0, hr=None, rr=None, sq=1)
    return out


def test_summary_of_a_scripted_night() -> None:
    h = Harness()
    h.feed(night(EVENING, pauses=140))
    h.feed(seconds(EVENING + 18 * 3_600_000, 1, occ=0, hr=None, rr=None))  # 12:00: night over
    [s] = h.summaries
    assert s.night == date(2025, 1, 14)
    assert s.resident_id == "r-0001"
    assert s.bedtime_ms == EVENING + 4 * 3_600_000
    assert s.exits == 1
    assert s.longest_absence_s == 300
    assert abs(s.time_in_bed_s - (8 * 3600 + 1800 - 300)) <= 2
    assert s.sleep_onset_ms == s.bedtime_ms
    assert s.hr_mean == 62
    assert s.rr_min == 14
    assert s.pauses == 140
    assert s.pause_source == "rr"
    assert abs(s.pauses_per_h - 140 / ((8 * 3600 + 1500) / 3600)) < 0.1
    row = s.to_row()
    assert row["night"] == date(2025, 1, 14)
    assert row["bedtime_at"].hour == 14
    [apnea] = h.of(K.APNEA_INDEX)
    assert apnea.severity is Severity.LOW
    assert apnea.evidence["pauses"] == 140


def test_sleep_change_needs_seven_nights_and_a_robust_z_of_three() -> None:
    h = Harness()
    for n in range(8):
        h.feed(night(EVENING + n * DAY, hr=60 + (n % 3)))
    assert h.of(K.SLEEP_CHANGE) == []
    h.feed(night(EVENING + 8 * DAY, hr=75, away_s=7000))
    h.feed(seconds(EVENING + 9 * DAY, 1, occ=0, hr=None, rr=None))
    [change] = h.of(K.SLEEP_CHANGE)
    assert change.severity is Severity.LOW
    assert set(change.evidence["metrics"]) == {"hr_mean", "time_in_bed_s"}
    assert len(h.summaries) == 9
    assert h.of(K.APNEA_INDEX) == []
