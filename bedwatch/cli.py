"""The `bedwatch` command: one entry point, a subcommand per job."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from bedwatch.settings import Settings, SettingsError, load_settings

log = logging.getLogger(__name__)

# Subcommands in modules of their own: each has `register(subparsers)`, which adds parsers whose
# `handler` default is a function taking the parsed arguments and returning an exit code.
# Keeping them apart lets `simulators/` stay free of any import of the others. A module is
# imported only when its command is asked for: numpy and scipy would otherwise add a second or
# more to every start of the service and to `bedwatch --help`, which lists them by name.
PLUGINS = {
    "sim": ("simulators.cli", "simulated beds and wristbands over MQTT, with ground truth"),
    "eval": ("bedwatch.cli_eval", "score detector findings against ground truth"),
    "alerts": ("bedwatch.cli_alerts", "API tokens of care contacts, digest previews"),
    "demo": ("bedwatch.demo.cli", "everything, embedded, with a simulated ward"),
    "report": ("bedwatch.reports.cli", "operations and sleep reports as PDF"),
    "bridge": ("bedwatch.cli_cluster", "past one machine: MQTT into NATS JetStream"),
    "worker": ("bedwatch.cli_cluster", "past one machine: partitions of residents, by lease"),
    "engine": ("bedwatch.cli_cluster", "past one machine: alerts on the workers' findings"),
    "cluster": ("bedwatch.cli_cluster", "past one machine: workers, partitions, lag"),
}
CORE_COMMANDS = ("run", "db", "registry")

Handler = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    configure_logging(verbose=args.verbose, json_logs=args.log_json)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    from bedwatch.http import HttpUnavailable
    from bedwatch.site import SiteError
    from ingest.db import DatabaseUnavailable

    try:
        return handler(args)
    except SettingsError as exc:
        print(f"bedwatch: bad settings: {exc}", file=sys.stderr)
        return 2
    except SiteError as exc:
        print(f"bedwatch: bad site file: {exc}", file=sys.stderr)
        return 2
    except HttpUnavailable as exc:
        print(f"bedwatch: http: {exc}", file=sys.stderr)
        return 2
    except DatabaseUnavailable as exc:
        print(f"bedwatch: database: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bedwatch", description=__doc__)
    parser.add_argument("-c", "--config", type=Path, help="settings file (TOML)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--log-json", action="store_true", help="one JSON object per log line")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run the service: ingest, detectors, alerts",
        description="Run the service: ingest, detectors, alerts and the web console, until"
        " SIGTERM or Ctrl-C (then it stores and acknowledges what it has taken, and exits 0).",
        epilog=run_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.set_defaults(handler=_run)

    db = sub.add_parser("db", help="database administration")
    db_sub = db.add_subparsers(title="db commands", metavar="DB_COMMAND")
    migrate = db_sub.add_parser("migrate", help="create or upgrade the schema (re-runnable)")
    migrate.set_defaults(handler=_db_migrate)

    registry = sub.add_parser("registry", help="residents, devices and contacts")
    reg_sub = registry.add_subparsers(title="registry commands", metavar="REGISTRY_COMMAND")
    load = reg_sub.add_parser("load", help="load a site file into the database")
    load.add_argument("site", type=Path, help="site file (TOML)")
    load.set_defaults(handler=_registry_load)

    command = next((a for a in argv if a in CORE_COMMANDS or a in PLUGINS), None)
    for name, (module_name, summary) in PLUGINS.items():
        if command is None:
            sub.add_parser(name, help=summary)  # listed by name; its own --help imports it
        elif command == name:
            importlib.import_module(module_name).register(sub)
    return parser


def run_epilog() -> str:
    """Where settings come from, with the usual variables and their defaults (from the code)."""
    d = Settings()
    rows = [
        ("BEDWATCH_MQTT_URL", "the broker", d.mqtt.url),
        ("BEDWATCH_DATABASE_URL", "PostgreSQL", d.database.url),
        ("BEDWATCH_HTTP_ADDR", "console, API, /metrics, /health", d.http.addr),
        ("BEDWATCH_TOPIC_PREFIX", "MQTT topic prefix", d.mqtt.topic_prefix),
    ]
    usual = "\n".join(
        f"    {name:<23} {what}\n    {'':<23} default {value}" for name, what, value in rows
    )
    return (
        "settings:\n"
        "  Built-in defaults, then a settings file (-c FILE or BEDWATCH_CONFIG=FILE; TOML with\n"
        "  the sections [mqtt] [database] [ingest] [retention] [alerts] [http]), then BEDWATCH_*\n"
        "  environment variables; all checked at start. The usual ones:\n\n"
        f"{usual}\n\n"
        "  Any other setting as BEDWATCH_<SECTION>__<KEY>, e.g. BEDWATCH_MQTT__CLIENT_ID=ward-2\n"
        "  or BEDWATCH_ALERTS__PUBLIC_URL=https://care.example.org. Every setting with its\n"
        '  default: README.md, "Configuration".\n\n'
        "first time:\n"
        "  bedwatch db migrate && bedwatch registry load site.toml && bedwatch run\n"
    )


def settings_from(args: argparse.Namespace) -> Settings:
    return load_settings(args.config)


def configure_logging(*, verbose: bool, json_logs: bool) -> None:
    from bedwatch.logs import JsonFormatter

    handler = logging.StreamHandler()
    if json_logs:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


def _run(args: argparse.Namespace) -> int:
    from bedwatch.service import run_service

    code = asyncio.run(run_service(settings_from(args)))
    # Stopped: everything taken is stored and acknowledged, the detector worker has ended. A
    # page cut off at the stop (it is in the outbox, sent again at the next start) may still
    # hold a notifier thread until its channel's timeout; the exit does not wait for it.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _db_migrate(args: argparse.Namespace) -> int:
    from bedwatch.migrate import migrate
    from ingest.db import ensure_database

    settings = settings_from(args)
    ensure_database(settings.database)
    applied = migrate(settings)
    print(f"schema up to date ({len(applied)} migration(s) applied)")
    return 0


def _registry_load(args: argparse.Namespace) -> int:
    from bedwatch.site import load_site_into_db

    settings = settings_from(args)
    summary = load_site_into_db(settings.database.url, args.site)
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
