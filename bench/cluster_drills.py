"""Cluster drills, full size: BedWatch on a three-node NATS JetStream cluster (two bridges,
three workers, the engine) under faults, with a ward of 500 residents' pads and bands pressing
SOS; then the direct-capture control without the bridge.

The drills and their checks are in tests/cluster_drills.py (the test suite runs a short version
of them); this runs them at full size and prints the README's table and a `RESULT {json}` line.

    uv run python bench/cluster_drills.py [--residents 500] [--rate 300] [--lease 10]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.cluster_drills import (  # noqa: E402
    DRILLS,
    TABLE_HEAD,
    ClusterPlan,
    direct_capture,
    result,
    run,
)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--residents", type=int, default=500)
    p.add_argument("--rate", type=float, default=300.0, help="ward messages a second")
    p.add_argument("--lease", type=float, default=10.0, help="cluster.lease_ttl_s")
    p.add_argument("--settle", type=float, default=10.0, help="seconds of traffic per drill")
    p.add_argument("--presses", type=int, default=4, help="SOS presses per drill")
    p.add_argument("--down", type=float, default=5.0, help="seconds a killed node stays away")
    p.add_argument("--drill", choices=["all", *DRILLS, "none"], default="all")
    p.add_argument("--no-control", action="store_true", help="skip the direct-capture control")
    args = p.parse_args()
    plan = ClusterPlan(
        residents=args.residents,
        rate_per_s=args.rate,
        lease_ttl_s=args.lease,
        settle_s=args.settle,
        presses=args.presses,
        down_s=args.down,
    )
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    began = time.monotonic()
    names = list(DRILLS) if args.drill == "all" else [] if args.drill == "none" else [args.drill]
    with tempfile.TemporaryDirectory(prefix="bedwatch-cluster-drills-") as folder:
        report = run(plan, Path(folder), names)
        control = None if args.no_control else direct_capture(plan, Path(folder))
    print(
        f"load average at the start: {load}; {plan.residents} residents (pads and bands),"
        f" {plan.rate_per_s:g} msg/s, leases of {plan.lease_ttl_s:g} s;"
        f" {time.monotonic() - began:.0f} s in all\n"
    )
    print(TABLE_HEAD)
    for outcome in [*report.outcomes, *([control] if control else [])]:
        print(outcome.row())
    print(f"\n{report.summary()}")
    print("RESULT " + json.dumps(result(report, control)), flush=True)
    return 1 if report.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
