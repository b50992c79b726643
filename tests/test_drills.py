"""The fault drills, short: each runs the real service as a process of its own on a private
Mosquitto and a private PostgreSQL server, with a ward pressing SOS and falls while the fault is
injected, and checks every promise (tests/drills.py says which). bench/drills.py runs them at
full length for the README's table.

The drills are independent (a broker, a server, a receiver and a service each) and mostly wait,
so they run three at a time; each is then reported as a test of its own.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.drills import DRILLS, Outcome, Plan, run

# Shorter than the benchmark's (30 residents, 20 s, 5 kills, 60 s outage), still a fault with
# presses before, during and after it.
SHORT = Plan(residents=10, seconds=8.0, press_every_s=0.5, kills=2, outage_s=10.0, hostile_rate=500)
NAMES = [d for d in DRILLS if d != "baseline"]  # every drill checks the baseline's promises too
AT_ONCE = 3


@pytest.fixture(scope="module")
def outcomes() -> dict[str, Outcome | BaseException]:
    def one(name: str) -> Outcome | BaseException:
        try:
            return run(name, SHORT)
        except Exception as exc:  # reported by that drill's test, the others go on
            return exc

    # The longest first (the ladder drill waits for 30 s reminders).
    order = sorted(NAMES, key=lambda n: n != "shorten-ladder")
    with ThreadPoolExecutor(AT_ONCE) as pool:
        return dict(zip(order, pool.map(one, order), strict=True))


@pytest.mark.slow
@pytest.mark.parametrize("drill", NAMES)
def test_drill(drill: str, outcomes: dict[str, Outcome | BaseException]) -> None:
    outcome = outcomes[drill]
    if isinstance(outcome, BaseException):
        raise outcome
    assert outcome.presses >= 8, outcome.row()
    assert outcome.samples > 0, outcome.row()
    assert not outcome.failed, outcome.row()
