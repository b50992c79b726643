"""The migration runner: every component's versioned SQL, applied once each, in version order."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources

import psycopg

from bedwatch.settings import Settings
from ingest.db import connect
from ingest.retention import apply_timescale_policies

log = logging.getLogger(__name__)

# Each component keeps its own migrations; versions are one sequence across them (ingest 00xx,
# detector host 001x and 0023, alerts 002x), so a database upgrades in the order they were made.
MIGRATION_PACKAGES = ("ingest.migrations", "bedwatch.migrations", "alerts.migrations")
# Held while migrating, so two processes starting at once do not both apply a migration.
_MIGRATION_LOCK = 0x0BED_3A7C

Conn = psycopg.Connection[tuple[object, ...]]


@dataclass(frozen=True, slots=True)
class Migration:
    name: str  # file name: NNNN_what[.timescale|.plain].sql
    sql: str
    package: str

    @property
    def flavour(self) -> str:
        parts = self.name.split(".")
        return parts[-2] if len(parts) == 3 else "any"


def load_migrations() -> list[Migration]:
    found = [
        Migration(entry.name, entry.read_text(encoding="utf-8"), package)
        for package in MIGRATION_PACKAGES
        for entry in resources.files(package).iterdir()
        if entry.name.endswith(".sql")
    ]
    return sorted(found, key=lambda m: m.name)


@dataclass(frozen=True, slots=True)
class Timescale:
    """What the server offers: the extension may be installed without being loadable."""

    installed: bool
    preloaded: bool

    @property
    def usable(self) -> bool:
        return self.installed and self.preloaded


def timescaledb_on(conn: Conn) -> Timescale:
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'),"
        " current_setting('shared_preload_libraries')"
    ).fetchone()
    assert row is not None
    return Timescale(installed=bool(row[0]), preloaded=preloaded(str(row[1])))


def preloaded(shared_preload_libraries: str) -> bool:
    return "timescaledb" in {lib.strip() for lib in shared_preload_libraries.split(",")}


def has_timescaledb(conn: Conn) -> bool:
    """The extension is installed and preloaded, so the schema can use it."""
    return timescaledb_on(conn).usable


def migrate(settings: Settings) -> list[str]:
    """Apply the migrations not yet applied, each in its own transaction; return their names."""
    applied: list[str] = []
    with connect(settings.database.url) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            conn.commit()
            done = {str(r[0]) for r in conn.execute("SELECT name FROM schema_migrations")}
            timescale = flavour_is_timescale(conn, settings, done)
            if timescale:
                conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
                conn.commit()
            for migration in load_migrations():
                wanted = migration.flavour in ("any", "timescale" if timescale else "plain")
                if wanted and migration.name not in done:
                    _apply(conn, migration)
                    applied.append(migration.name)
            if timescale:
                changed = apply_timescale_policies(conn, settings.retention)
                conn.commit()
                if changed:
                    log.info("TimescaleDB policies set: %s", ", ".join(changed))
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
            conn.commit()
    if applied:
        log.info("applied migrations: %s", ", ".join(applied))
    return applied


def flavour_is_timescale(conn: Conn, settings: Settings, done: set[str]) -> bool:
    """A database keeps the flavour it was first migrated with (`done`: the applied names): the
    other flavour's migrations would meet tables and views made for this one."""
    if any(".timescale." in name for name in done):
        return True
    if any(".plain." in name for name in done):
        return False
    if not settings.database.use_timescaledb:
        return False
    found = timescaledb_on(conn)
    if found.installed and not found.preloaded:
        log.warning(
            "the timescaledb extension is installed but not in shared_preload_libraries:"
            " using plain PostgreSQL tables (add timescaledb to shared_preload_libraries and"
            " restart the server before the first migrate to use it)"
        )
    return found.usable


def _apply(conn: Conn, migration: Migration) -> None:
    with conn.transaction():
        conn.execute(migration.sql.encode())
        conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (migration.name,))
