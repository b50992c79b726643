"""`bedwatch report operations|sleep`: the reports as PDF files."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo

from bedwatch.cli_alerts import _day as day_arg
from bedwatch.settings import load_settings

T = TypeVar("T")
LANGS = ("zh", "en")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("report", help="operations and sleep reports as PDF")
    cmds = p.add_subparsers(dest="report_command", required=True)

    ops = cmds.add_parser(
        "operations",
        help="a period's answer times, alerts and fleet, per area, for the street office",
        description="Answer times, alerts per day by kind and fleet availability over a period"
        " (e.g. a month: --from 2026-11-01 --to 2026-12-01), for the whole scope and per area.",
    )
    ops.add_argument("--from", dest="first", type=day_arg, required=True, help="first local day")
    ops.add_argument(
        "--to", dest="until", type=day_arg, required=True, help="the day after the last (excluded)"
    )
    ops.add_argument(
        "--area", action="append", help="an area path, repeatable (default: every area)"
    )
    ops.add_argument("--depth", type=int, default=1, help="area path segments per group (1)")
    ops.add_argument("--tz", default="Asia/Shanghai", help="time zone of the days (Asia/Shanghai)")
    ops.add_argument("--lang", choices=LANGS, default="zh")
    ops.add_argument("-o", "--output", type=Path, required=True, help="the PDF to write")
    ops.set_defaults(handler=run_operations)

    sleep = cmds.add_parser(
        "sleep",
        help="a resident's night and the 13 before it",
        description="A resident's night (time in bed, onset, exits, heart and breathing rate,"
        " pauses, findings) and the trend of the 14 nights up to it.",
    )
    sleep.add_argument("resident_id")
    sleep.add_argument("--night", type=day_arg, help="the local date the night began (latest)")
    lang = sleep.add_mutually_exclusive_group()
    lang.add_argument("--lang", choices=LANGS, help="the report's language (zh)")
    lang.add_argument("--for", dest="contact", metavar="CONTACT_ID", help="in their language")
    sleep.add_argument("-o", "--output", type=Path, required=True, help="the PDF to write")
    sleep.set_defaults(handler=run_sleep)


def run_operations(args: argparse.Namespace) -> int:
    from alerts.directory import load_config
    from alerts.store import AsyncConn
    from bedwatch.reports.operations import OperationsReport, Period, gather
    from bedwatch.reports.operations_pages import render
    from bedwatch.reports.text import Lang

    if args.until <= args.first:
        print("bedwatch: --to must be after --from", file=sys.stderr)
        return 2
    zone = ZoneInfo(args.tz)
    period = Period(_midnight(args.first, zone), _midnight(args.until, zone))
    areas = args.area or ["*"]

    async def read(conn: AsyncConn) -> OperationsReport:
        config = await load_config(conn)
        now = datetime.now(UTC)
        return await gather(conn, config, areas, period, now, depth=args.depth, tz=args.tz)

    report = _with_database(args, read)
    if report is None:
        return 1
    return _write(args.output, render(report, Lang(args.lang)))


def run_sleep(args: argparse.Namespace) -> int:
    from bedwatch.reports.sleep import language_of, sleep_report_pdf

    lang = args.lang or "zh"
    if args.contact is not None:
        found = _with_database(args, lambda conn: language_of(conn, args.contact))
        if found is None:
            return 1
        lang = found
    url = load_settings(args.config).database.url
    try:
        pdf = sleep_report_pdf(url, args.resident_id, args.night, lang)
    except LookupError as exc:
        print(f"bedwatch: {exc}", file=sys.stderr)
        return 1
    return _write(args.output, pdf)


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), zone)


def _with_database(args: argparse.Namespace, read: Callable[..., Awaitable[T]]) -> T | None:
    """`read(conn)` on a connection of its own; None (said on stderr) when it cannot be done."""
    import psycopg

    url = load_settings(args.config).database.url

    async def run() -> T:
        async with await psycopg.AsyncConnection.connect(url, connect_timeout=10) as conn:
            return await read(conn)

    try:
        return asyncio.run(run())
    except (LookupError, psycopg.OperationalError) as exc:
        print(f"bedwatch: {exc}", file=sys.stderr)
        return None


def _write(path: Path, pdf: bytes) -> int:
    path.write_bytes(pdf)
    print(f"{path}: {len(pdf) // 1024} KiB")
    return 0
