"""breathing_pause from rr = 0 runs, and its count into the night's apnea index."""

from __future__ import annotations

from detectors.findings import FindingKind, Severity
from tests.detectors.helpers import NIGHT_MS, Harness, mat, seconds

K = FindingKind


def test_a_30_s_pause_is_20_samples_of_rr_zero() -> None:
    short = Harness()
    short.feed(
        seconds(NIGHT_MS, 10)
        + seconds(NIGHT_MS + 10_000, 19, rr=0)
        + seconds(NIGHT_MS + 29_000, 10)
    )
    assert short.of(K.BREATHING_PAUSE) == []
    h = Harness()
    h.feed(
        seconds(NIGHT_MS, 10)
        + seconds(NIGHT_MS + 10_000, 20, rr=0)
        + seconds(NIGHT_MS + 30_000, 10)
    )
    [f] = h.of(K.BREATHING_PAUSE)
    assert f.severity is Severity.HIGH
    assert f.evidence["source"] == "rr"
    assert f.started_ms == NIGHT_MS  # rr = 0 at t says no breath since t - 10 s
    assert f.at_ms == NIGHT_MS + 29_000
    assert len(h.of(K.BREATHING_PAUSE, cleared=True)) == 1


def test_pauses_of_10_s_count_into_the_night() -> None:
    h = Harness()
    samples = []
    for k in range(5):
        base = NIGHT_MS + 60_000 * k
        samples += seconds(base, 40) + seconds(base + 40_000, 3, rr=0) + seconds(base + 43_000, 17)
    h.feed(samples)
    assert h.runner._states["r-0001"].night.pauses_rr == 5  # type: ignore[index]
    assert h.of(K.BREATHING_PAUSE) == []


def test_no_pause_when_the_heart_is_not_measured_either() -> None:
    h = Harness()
    h.feed(seconds(NIGHT_MS, 45, rr=0, hr=None))
    assert h.of(K.BREATHING_PAUSE) == []


def test_alternating_rr_zero_is_not_a_pause() -> None:
    h = Harness()
    h.feed(mat(NIGHT_MS + 1000 * i, rr=0 if i % 3 else 12) for i in range(300))
    assert h.of(K.BREATHING_PAUSE) == []


def test_one_lost_sample_does_not_split_a_pause() -> None:
    h = Harness()
    run = seconds(NIGHT_MS, 25, rr=0)
    del run[12]
    h.feed(run)
    assert len(h.of(K.BREATHING_PAUSE)) == 1
