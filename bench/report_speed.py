"""Report speed: the operations report of a month of 200 residents, and one sleep report.

Run: `uv run python bench/report_speed.py` (about a minute). Budget: the monthly operations
report in under 30 s, from the command (`bedwatch report operations`, its own process, cold:
imports and font loading included). A fresh database (dropped at the end) gets a month of a
street: residents in areas (2 communities x 4 committees x 5 buildings), a pad and a band each,
care staff and a supervisor, a night summary per resident and night, alerts (`--alerts-per-day`
per resident, kinds and answer times drawn from a seeded generator) with their notifications,
findings, and for one resident a night of 1 Hz pad samples. Then it times, best of `--runs`:
the figures read (`gather`) and the PDF drawn and printed (`render`), in this process and warm;
and once each, cold, the two commands. The last line, `RESULT {...}`, has every figure as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

ZONE = ZoneInfo("Asia/Shanghai")
MONTH = date(2026, 11, 1)
DAYS = 30
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=ZONE)
SPAN_S = 18 * 3600
# kind, severity, share of alerts, median answer (s)
KINDS = [
    ("sos", "critical", 0.05, 40),
    ("fall", "critical", 0.03, 45),
    ("bed_exit_no_return", "high", 0.15, 120),
    ("breathing_pause", "high", 0.10, 150),
    ("heart_rate", "medium", 0.20, 600),
    ("immobile", "medium", 0.20, 900),
    ("device_silent", "medium", 0.17, 1800),
    ("low_battery", "low", 0.10, 3600),
]


def area(i: int) -> str:
    return f"community-{i % 2}/committee-{i // 2 % 4}/{i // 8 % 5 + 1}"


def copy_rows(
    conn: psycopg.Connection[Any], statement: str, rows: Iterator[tuple[Any, ...]]
) -> int:
    n = 0
    with conn.cursor().copy(statement) as copy:
        for row in rows:
            copy.write_row(row)
            n += 1
    return n


def registry(conn: psycopg.Connection[Any], residents: int) -> None:
    staff = max(1, residents // 10)
    conn.cursor().executemany(
        "INSERT INTO contacts (id, name, role, areas) VALUES (%s, %s, %s, %s)",
        [(f"c-{k:03d}", f"护理员 {k}", "care_staff", []) for k in range(staff)]
        + [("s-office", "街道办", "supervisor", ["*"])],
    )
    conn.cursor().executemany(
        "INSERT INTO residents (id, name, room, area) VALUES (%s, %s, %s, %s)",
        [(f"r-{i:04d}", f"老人 {i}", f"{i // 8}-{i % 8}01", area(i)) for i in range(residents)],
    )
    conn.cursor().executemany(
        "INSERT INTO care_team (resident_id, contact_id, position) VALUES (%s, %s, 0)",
        [(f"r-{i:04d}", f"c-{i % staff:03d}") for i in range(residents)],
    )
    devices = [(f"{kind[:4]}-{i:04d}", kind, f"r-{i:04d}") for i in range(residents)
               for kind in ("mattress", "wristband")]  # fmt: skip
    conn.cursor().executemany(
        "INSERT INTO devices (id, kind, resident_id) VALUES (%s, %s, %s)", devices
    )
    conn.cursor().executemany(
        "INSERT INTO device_health (device_id, last_seen_at, messages) VALUES (%s, %s, 1)",
        [(d, NOW - timedelta(seconds=5 + k % 4000)) for k, (d, _, _) in enumerate(devices)],
    )


def nights(conn: psycopg.Connection[Any], residents: int, rng: random.Random) -> int:
    def rows() -> Iterator[tuple[Any, ...]]:
        for i in range(residents):
            for k in range(DAYS):
                if rng.random() < 0.03:
                    continue  # a pad that sent nothing that night
                night = MONTH + timedelta(days=k)
                start = datetime.combine(night, datetime.min.time(), ZONE) + timedelta(hours=18)
                in_bed = rng.gauss(8.5, 0.8) * 3600
                yield (
                    f"r-{i:04d}", night, start, start + timedelta(seconds=SPAN_S),
                    int(SPAN_S * rng.uniform(0.7, 1.0)), in_bed,
                    start + timedelta(hours=4, minutes=rng.randint(0, 90)), rng.randint(0, 4),
                    rng.uniform(60, 1800), rng.uniform(2, 15), rng.gauss(64, 6), 50.0, 90.0,
                    rng.gauss(15, 1.5), 10.0, 22.0, rng.randint(0, 80), rng.uniform(0, 12),
                )  # fmt: skip

    return copy_rows(
        conn,
        "COPY night_summaries (resident_id, night, from_at, to_at, samples, time_in_bed_s,"
        " sleep_onset_at, exits, longest_absence_s, restlessness_pct, hr_mean, hr_min, hr_max,"
        " rr_mean, rr_min, rr_max, pauses, pauses_per_h, pause_source, pauses_wave)"
        " FROM STDIN",
        ((*r, "rr", 0) for r in rows()),
    )


def alerts(
    conn: psycopg.Connection[Any], residents: int, per_day: float, rng: random.Random
) -> tuple[int, int]:
    staff = max(1, residents // 10)
    weights = [share for _, _, share, _ in KINDS]
    made: list[tuple[Any, ...]] = []
    pages: list[tuple[Any, ...]] = []
    for i in range(residents):
        for k in range(DAYS):
            day = datetime.combine(MONTH + timedelta(days=k), datetime.min.time(), ZONE)
            for _ in range(_poisson(rng, per_day)):
                kind, severity, _, median = rng.choices(KINDS, weights)[0]
                started = day + timedelta(seconds=rng.randrange(86_400))
                raised = started + timedelta(seconds=rng.uniform(0.2, 2))
                answer = None if rng.random() < 0.01 else rng.lognormvariate(0, 0.8) * median
                acked = None if answer is None else raised + timedelta(seconds=answer)
                by = f"c-{i % staff:03d}"
                alert_id = len(made) + 1
                made.append((
                    alert_id, f"r-{i:04d}", kind, severity, "resolved", raised, acked,
                    None if acked is None else by, raised + timedelta(hours=2),
                    "system" if acked is None else by, started, started,
                    0 if answer is None or answer < 120 else 1,
                ))  # fmt: skip
                sent = raised + timedelta(seconds=rng.uniform(0.05, 1))
                pages.append((alert_id, by, sent, rng.uniform(100, 900)))
    n = copy_rows(
        conn,
        "COPY alerts (id, resident_id, kind, severity, state, opened_at, acked_at, acked_by,"
        " resolved_at, resolved_by, started_at, last_seen_at, tier) FROM STDIN",
        iter(made),
    )
    conn.execute("SELECT setval('alerts_id_seq', %s)", (n,))
    m = copy_rows(
        conn,
        "COPY notifications (alert_id, contact_id, channel_index, channel, attempt, reason,"
        " result, title, body, created_at, due_at, sent_at, duration_ms) FROM STDIN",
        ((a, c, 0, "json://x", 1, "opened", "delivered", "t", "b", s, s, s, d)
         for a, c, s, d in pages),
    )  # fmt: skip
    findings = ((r[1], r[2], r[3], r[10], r[10]) for r in made)
    copy_rows(
        conn,
        "COPY findings (resident_id, kind, severity, at, started_at) FROM STDIN",
        findings,
    )
    return n, m


def _poisson(rng: random.Random, mean: float) -> int:
    # Knuth's method: enough for a handful a day.
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def one_night(conn: psycopg.Connection[Any], resident: str, night: date) -> int:
    """A night of 1 Hz pad samples for the sleep report's resident."""
    start = datetime.combine(night, datetime.min.time(), ZONE) + timedelta(hours=21)
    device = "matt-" + resident[2:]
    rows = (
        (start + timedelta(seconds=s), device, resident, 62 + s % 7, 15, s % 50 == 0, 1, 80)
        for s in range(9 * 3600)
    )
    return copy_rows(
        conn,
        "COPY mattress_samples (time, device_id, resident_id, hr, rr, move, occ, sq) FROM STDIN",
        ((t, d, r, hr, rr, int(mv), occ, sq) for t, d, r, hr, rr, mv, occ, sq in rows),
    )


# The machine is shared: beside each wall time, the CPU time this process (or the command's)
# spent, which other users' load inflates far less.
Timing = tuple[float, float]  # wall s, CPU s


def best_of(runs: int, work: Callable[[], Any]) -> Timing:
    times = []
    for _ in range(runs):
        t, cpu = time.perf_counter(), time.process_time()
        work()
        times.append((time.perf_counter() - t, time.process_time() - cpu))
    wall, cpu = min(times)
    return round(wall, 2), round(cpu, 2)


def command(argv: list[str], url: str) -> Timing:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEDWATCH_")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "bedwatch.cli", *argv],
        env=env | {"BEDWATCH_DATABASE_URL": url},
        check=True,
        capture_output=True,
    )
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return round(wall, 1), round(cpu, 1)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from alerts.config import default_config
    from alerts.operations import Period
    from bedwatch.migrate import migrate
    from bedwatch.reports import operations, operations_pages
    from bedwatch.reports.sleep import sleep_report_pdf
    from bedwatch.reports.text import Lang
    from bedwatch.settings import Settings
    from tests.support import fresh_database

    rng = random.Random(args.seed)
    night = MONTH + timedelta(days=DAYS - 2)
    result: dict[str, Any] = {"residents": args.residents, "load_avg": os.getloadavg()[0]}
    with fresh_database() as url, tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        t = time.perf_counter()
        migrate(Settings().replace("database", url=url, create_database=False))
        with psycopg.connect(url) as conn, conn.transaction():
            registry(conn, args.residents)
            result["night_summaries"] = nights(conn, args.residents, rng)
            result["alerts"], result["notifications"] = alerts(
                conn, args.residents, args.alerts_per_day, rng
            )
            result["samples"] = one_night(conn, "r-0000", night)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ANALYZE")
        result["build_s"] = round(time.perf_counter() - t, 1)
        print(f"built in {result['build_s']} s: {json.dumps(result)}", flush=True)

        period = Period(
            datetime.combine(MONTH, datetime.min.time(), ZONE),
            datetime.combine(MONTH + timedelta(days=DAYS), datetime.min.time(), ZONE),
        )

        async def read() -> operations.OperationsReport:
            async with await psycopg.AsyncConnection.connect(url) as conn:
                return await operations.gather(conn, default_config(), ["*"], period, NOW)

        report = asyncio.run(read())
        result["gather_s"] = best_of(args.runs, lambda: asyncio.run(read()))
        result["render_s"] = best_of(args.runs, lambda: operations_pages.render(report, Lang.ZH))
        result["sleep_s"] = best_of(
            args.runs, lambda: sleep_report_pdf(url, "r-0000", night, Lang.ZH, now=NOW)
        )
        out = Path(tmp)
        result["operations_command_s"] = command(
            ["report", "operations", "--from", MONTH.isoformat(), "--to",
             (MONTH + timedelta(days=DAYS)).isoformat(), "-o", str(out / "o.pdf")], url
        )  # fmt: skip
        result["sleep_command_s"] = command(
            ["report", "sleep", "r-0000", "--night", night.isoformat(), "-o", str(out / "s.pdf")],
            url,
        )
        result["operations_pdf_kib"] = (out / "o.pdf").stat().st_size // 1024
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--residents", type=int, default=200)
    p.add_argument("--alerts-per-day", type=float, default=3.0, help="per resident (3)")
    p.add_argument("--runs", type=int, default=3, help="warm timings: best of this many")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    result = run(args)
    budget = 30.0

    def said(key: str) -> str:
        wall, cpu = result[key]
        return f"{wall} s ({cpu} s CPU)"

    print(
        f"operations report, {args.residents} residents, a month: command"
        f" {said('operations_command_s')}, budget {budget:.0f} s;"
        f" warm: gather {said('gather_s')} + render {said('render_s')}\n"
        f"sleep report: command {said('sleep_command_s')}, warm {said('sleep_s')}\n"
        f"load average {result['load_avg']:.1f} on {os.cpu_count()} cores at the start"
    )
    print("RESULT " + json.dumps(result))
    return 0 if result["operations_command_s"][0] < budget else 1


if __name__ == "__main__":
    sys.exit(main())
