"""The `bedwatch` command: one entry point, a subcommand per job."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ingest.settings import Settings, SettingsError, load_settings

log = logging.getLogger(__name__)

# Packages that add their own subcommands: each module has `register(subparsers)`, which adds
# parsers whose `handler` default is a function taking the parsed arguments and returning an
# exit code. Keeping them apart lets `simulators/` stay free of any import from `ingest/`.
# They are imported only when their command is asked for (or for help): numpy and scipy
# would otherwise add a second to every start of the service.
PLUGINS = {
    "sim": "simulators.cli",
    "eval": "detectors.cli",
    "alerts": "alerts.cli",
    "demo": "ingest.demo.cli",
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
    from ingest.db import DatabaseUnavailable
    from ingest.registry import SiteError

    try:
        return handler(args)
    except SettingsError as exc:
        print(f"bedwatch: bad settings: {exc}", file=sys.stderr)
        return 2
    except SiteError as exc:
        print(f"bedwatch: bad site file: {exc}", file=sys.stderr)
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

    run = sub.add_parser("run", help="run the service: ingest, detectors, alerts")
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

    for name in _plugins_for(argv):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            missing = exc.name or ""
            if name != missing and not name.startswith(missing + "."):
                raise
            continue
        module.register(sub)
    return parser


def _plugins_for(argv: Sequence[str]) -> list[str]:
    command = next((a for a in argv if a in CORE_COMMANDS or a in PLUGINS), None)
    if command in CORE_COMMANDS:
        return []
    if command is not None:
        return [PLUGINS[command]]
    return list(PLUGINS.values())


def settings_from(args: argparse.Namespace) -> Settings:
    return load_settings(args.config)


def configure_logging(*, verbose: bool, json_logs: bool) -> None:
    from ingest.logs import JsonFormatter

    handler = logging.StreamHandler()
    if json_logs:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


def _run(args: argparse.Namespace) -> int:
    from ingest.service import run_service

    return asyncio.run(run_service(settings_from(args)))


def _db_migrate(args: argparse.Namespace) -> int:
    from ingest.db import ensure_database, migrate

    settings = settings_from(args)
    ensure_database(settings.database)
    applied = migrate(settings)
    print(f"schema up to date ({len(applied)} migration(s) applied)")
    return 0


def _registry_load(args: argparse.Namespace) -> int:
    from ingest.registry import load_site_into_db

    settings = settings_from(args)
    summary = load_site_into_db(settings, args.site)
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
