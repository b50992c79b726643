"""Episode: the persistence window, the tolerance for interruptions, and hysteresis on clearing."""

from __future__ import annotations

from collections.abc import Sequence

from detectors.persist import BAND, CLEAR, FIRE, NONE, NORMAL, ON, UNKNOWN, Episode

W, TOL, CLR = 10_000, 3_000, 5_000


def feed(ep: Episode, scores: Sequence[int | None], start: int = 0) -> list[int]:
    return [ep.update(start + 1000 * i, sc, 1.0, W, TOL, CLR) for i, sc in enumerate(scores)]


def test_fires_when_the_run_spans_the_window_not_before() -> None:
    assert FIRE not in feed(Episode(), [ON] * 10)  # spans 9 s
    decisions = feed(Episode(), [ON] * 11)  # spans 10 s
    assert decisions.index(FIRE) == 10
    assert decisions.count(FIRE) == 1


def test_short_interruptions_are_tolerated_long_ones_restart() -> None:
    assert FIRE in feed(Episode(), [ON] * 5 + [BAND] * 2 + [ON] * 4)
    assert FIRE not in feed(Episode(), [ON] * 5 + [NORMAL] * 4 + [ON] * 6)


def test_clears_only_after_clear_time_of_normal_and_band_resets_it() -> None:
    ep = Episode()
    feed(ep, [ON] * 11)
    assert CLEAR not in feed(ep, [NORMAL] * 4 + [BAND] + [NORMAL] * 5, start=11_000)
    assert feed(ep, [NORMAL], start=21_000) == [CLEAR]  # 5 s after the band sample at 15 s
    assert not ep.fired


def test_unknown_samples_neither_fire_nor_clear() -> None:
    ep = Episode()
    feed(ep, [ON] * 11)
    assert set(feed(ep, [UNKNOWN] * 50, start=11_000)) == {NONE}
    assert ep.fired


def test_drop_pending_forgets_an_unfired_run_only() -> None:
    ep = Episode()
    feed(ep, [ON] * 5)
    ep.drop_pending()
    assert FIRE not in feed(ep, [ON] * 6, start=5_000)
    fired = Episode()
    feed(fired, [ON] * 11)
    fired.drop_pending()
    assert fired.fired
