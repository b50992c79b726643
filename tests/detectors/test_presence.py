"""bed_exit_no_return in the local night window, with returns, flickers and inhibition; immobile."""

from __future__ import annotations

from detectors.findings import FindingKind, Severity
from ingest.records import EventType
from tests.detectors.helpers import DAY_MS, NIGHT_MS, Harness, event, seconds

K = FindingKind
OUT = {"occ": 0, "hr": None, "rr": None, "sq": 2}


def exit_at(h: Harness, start: int, away_s: int, *, back_s: int = 60) -> int:
    """In bed a minute, away `away_s` seconds, back `back_s`; returns the exit time."""
    h.feed(seconds(start, 60))
    h.feed(seconds(start + 60_000, away_s, **OUT))
    h.feed(seconds(start + 60_000 + away_s * 1000, back_s))
    return start + 60_000


def test_no_return_within_20_min_at_night_fires_at_exactly_20_min() -> None:
    h = Harness()
    out = exit_at(h, NIGHT_MS, 1201)
    [f] = h.of(K.BED_EXIT_NO_RETURN)
    assert f.severity is Severity.HIGH
    assert (f.started_ms, f.at_ms) == (out, out + 1_200_000)
    assert len(h.of(K.BED_EXIT_NO_RETURN, cleared=True)) == 1


def test_return_one_sample_before_the_limit_is_no_finding() -> None:
    h = Harness()
    exit_at(h, NIGHT_MS, 1200)  # the last empty sample is at 1199 s
    assert h.of(K.BED_EXIT_NO_RETURN) == []


def test_a_flicker_of_occupancy_is_not_a_return() -> None:
    h = Harness()
    h.feed(seconds(NIGHT_MS, 60))
    h.feed(seconds(NIGHT_MS + 60_000, 600, **OUT))
    h.feed(seconds(NIGHT_MS + 660_000, 2))
    h.feed(seconds(NIGHT_MS + 662_000, 700, **OUT))
    [f] = h.of(K.BED_EXIT_NO_RETURN)
    assert f.started_ms == NIGHT_MS + 60_000


def test_day_time_exit_and_empty_bed_from_the_start_are_not_findings() -> None:
    day = Harness()
    exit_at(day, DAY_MS, 3000)
    assert day.of(K.BED_EXIT_NO_RETURN) == []
    never_in = Harness()
    never_in.feed(seconds(NIGHT_MS, 3000, **OUT))
    assert never_in.kinds() == []


def test_open_fall_or_sos_suppresses_the_exit_finding() -> None:
    for kind in (EventType.FALL, EventType.SOS):
        h = Harness()
        h.feed(seconds(NIGHT_MS, 60))
        h.feed(seconds(NIGHT_MS + 60_000, 90, **OUT))
        h.feed([event(NIGHT_MS + 150_000, kind)])
        h.feed(seconds(NIGHT_MS + 150_000, 1500, **OUT))
        assert h.of(K.BED_EXIT_NO_RETURN) == [], kind
    cancelled = Harness()
    cancelled.feed([event(NIGHT_MS, EventType.SOS), event(NIGHT_MS + 5_000, EventType.SOS_CANCEL)])
    exit_at(cancelled, NIGHT_MS + 10_000, 1300)
    assert len(cancelled.of(K.BED_EXIT_NO_RETURN)) == 1


def test_immobile_after_two_hours_without_movement() -> None:
    h = Harness()
    h.feed(seconds(NIGHT_MS, 7199, move=0))
    assert h.of(K.IMMOBILE) == []
    h.feed(seconds(NIGHT_MS + 7_199_000, 2, move=0))
    [f] = h.of(K.IMMOBILE)
    assert f.severity is Severity.MEDIUM
    assert f.started_ms == NIGHT_MS
    h.feed(seconds(NIGHT_MS + 7_201_000, 1, move=40))
    assert len(h.of(K.IMMOBILE, cleared=True)) == 1


def test_a_movement_restarts_the_immobile_clock() -> None:
    h = Harness()
    h.feed(seconds(NIGHT_MS, 5000, move=0))
    h.feed(seconds(NIGHT_MS + 5_000_000, 1, move=15))
    h.feed(seconds(NIGHT_MS + 5_001_000, 5000, move=0))
    assert h.of(K.IMMOBILE) == []


def test_an_exit_just_before_the_night_whose_deadline_falls_in_it_fires() -> None:
    evening = NIGHT_MS - 2 * 3600_000  # 21:00 local
    h = Harness()
    out = exit_at(h, evening - 3 * 60_000, 1300)  # out at 20:58, not back by 21:18
    [f] = h.of(K.BED_EXIT_NO_RETURN)
    assert (f.started_ms, f.at_ms) == (out, out + 1_200_000)
    early = Harness()
    exit_at(early, evening - 31 * 60_000, 1300)  # out at 20:30: its 20 min end at 20:50
    assert early.of(K.BED_EXIT_NO_RETURN) == []
