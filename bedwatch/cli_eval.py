"""`bedwatch eval`: score findings against ground truth, from files or from simulated nights."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from detectors.scoring import Report, score


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "eval",
        help="score detector findings against ground truth",
        description="Score FINDINGS.jsonl files against a simulator's GROUND_TRUTH.jsonl, or "
        "(--simulate N) play N simulated bed-nights through ingest's decoder and the detectors "
        "and score those. Prints sensitivity, false alarms per bed-night and detection delay "
        "per finding kind.",
    )
    p.add_argument("truth", nargs="?", type=Path, help="ground truth JSONL")
    p.add_argument("findings", nargs="*", type=Path, help="findings JSONL (one finding a line)")
    p.add_argument(
        "--simulate",
        type=int,
        metavar="BED_NIGHTS",
        help="simulate at least this many bed-nights instead of reading files",
    )
    p.add_argument("--nights-per-bed", type=int, default=10, help="consecutive nights a bed")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--wave-every",
        type=int,
        default=5,
        help="every Nth bed's pad also sends its raw waveform (0: none)",
    )
    p.add_argument(
        "--out", type=Path, help="with --simulate: write truth.jsonl, findings.jsonl here"
    )
    p.add_argument("--show-missed", action="store_true", help="list undetected scenarios")
    p.set_defaults(handler=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    if args.simulate:
        report = _simulated(args)
    elif args.truth is not None and args.findings:
        findings = [f for path in args.findings for f in _jsonl(path)]
        report = score(list(_jsonl(args.truth)), findings)
    else:
        print(
            "bedwatch eval: give GROUND_TRUTH.jsonl FINDINGS.jsonl... or --simulate N",
            file=sys.stderr,
        )
        return 2
    print(report.table())
    if args.show_missed:
        for miss in report.missed:
            print("missed:", json.dumps(miss))
    return 0


def _simulated(args: argparse.Namespace) -> Report:
    from bedwatch.evaluate import simulate, split_beds  # the simulator only when asked

    beds, nights = split_beds(args.simulate, args.nights_per_bed)
    began = time.perf_counter()
    run = simulate(beds, nights, seed=args.seed, wave_every=args.wave_every)
    findings = run.findings_json()
    print(
        f"simulated {beds} beds x {nights} nights: {run.messages} messages, "
        f"{len(findings)} findings, {run.derived} waveform samples, "
        f"{len(run.summaries)} night summaries in {time.perf_counter() - began:.1f} s"
    )
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        _write(args.out / "truth.jsonl", run.truth)
        _write(args.out / "findings.jsonl", findings)
    return score(run.truth, findings)


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, separators=(",", ":")) + "\n")
