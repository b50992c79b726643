"""`bedwatch demo`: an embedded broker and PostgreSQL, the service and a scripted ward at 60x."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

DEFAULT_DATA_DIR = Path("bedwatch-data/demo")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="everything in one command: broker, database, service and a ward of 20 at 60x",
        description="Start an embedded MQTT broker and PostgreSQL (or use yours), the service "
        "with its web console, and 20 simulated residents whose night plays at 60x: an SOS, "
        "a fall, a bed exit without return, breathing pauses and a device going offline.",
    )
    p.add_argument(
        "--duration",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="stop after this many seconds (default: run until Ctrl-C)",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help=f"where the embedded database and broker live (default {DEFAULT_DATA_DIR})",
    )
    p.add_argument(
        "--mqtt-url", help="use this broker (mqtt://host:port) instead of the embedded one"
    )
    p.add_argument(
        "--database-url",
        help="use this PostgreSQL (postgresql://...) instead of the embedded one; the ward's "
        "residents and contacts are added to it",
    )
    p.add_argument(
        "--notify",
        action="append",
        default=[],
        metavar="URL",
        help="also send the demo's alerts to this apprise URL (repeatable)",
    )
    p.add_argument(
        "--http-addr",
        default=None,
        metavar="HOST:PORT",
        help="where the web console and API listen (default: http.addr, 127.0.0.1:8080)",
    )
    p.set_defaults(handler=run)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value <= 7 * 86_400:
        raise argparse.ArgumentTypeError(f"--duration: expected 0 < SECONDS <= 604800, got {text}")
    return value


def run(args: argparse.Namespace) -> int:
    from bedwatch.cli import settings_from
    from bedwatch.demo.run import Demo, DemoOptions

    if not args.verbose:
        # The timeline is the output; the service's and simulator's progress logs are noise here.
        logging.getLogger().setLevel(logging.WARNING)
        # Failed deliveries (a bad --notify URL) are on the timeline once, not on every retry.
        for name in ("apprise", "alerts.delivery"):
            logging.getLogger(name).setLevel(logging.ERROR)
    base = settings_from(args)
    options = DemoOptions(
        data_dir=args.data_dir,
        duration_s=args.duration,
        mqtt_url=args.mqtt_url,
        database_url=args.database_url,
        notify=tuple(args.notify),
        http_addr=args.http_addr or base.http.addr,
    )
    return asyncio.run(Demo(base, options).run())
