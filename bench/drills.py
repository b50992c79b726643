"""Fault drills, full length: the real service under faults, with a ward pressing SOS and falls.

The drills and their checks are in tests/drills.py (the test suite runs a short version of
them); this runs them all, or one, and prints the README's table.

    uv run python bench/drills.py [--drill all] [--residents 30] [--seconds 20] [--outage 60]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.drills import DRILLS, TABLE_HEAD, Plan, run  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--drill", choices=["all", *DRILLS], default="all")
    p.add_argument("--residents", type=int, default=30)
    p.add_argument("--seconds", type=float, default=20.0, help="of fault, with traffic flowing")
    p.add_argument("--press-every", type=float, default=0.5)
    p.add_argument("--kills", type=int, default=5, help="SIGKILLs of the service")
    p.add_argument("--outage", type=float, default=60.0, help="seconds PostgreSQL is away")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    plan = Plan(
        residents=args.residents,
        seconds=args.seconds,
        press_every_s=args.press_every,
        kills=args.kills,
        outage_s=args.outage,
        seed=args.seed,
    )
    names = list(DRILLS) if args.drill == "all" else [args.drill]
    print(TABLE_HEAD)
    failed = False
    for name in names:
        outcome = run(name, plan)
        failed |= outcome.failed
        print(outcome.row(), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
