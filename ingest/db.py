"""Database set-up: create, migrate (versioned, re-runnable), TimescaleDB policies, retention."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from ingest.settings import DatabaseSettings, RetentionSettings, Settings

log = logging.getLogger(__name__)

MIGRATIONS_PACKAGE = "ingest.migrations"
# Held while migrating, so two processes starting at once do not both apply a migration.
_MIGRATION_LOCK = 0x0BED_3A7C


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached or refused us; the message says which and where."""


@dataclass(frozen=True, slots=True)
class Migration:
    name: str  # file name: NNNN_what[.timescale|.plain].sql
    sql: str

    @property
    def flavour(self) -> str:
        parts = self.name.split(".")
        return parts[-2] if len(parts) == 3 else "any"


def connect(url: str, *, autocommit: bool = False) -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(url, autocommit=autocommit, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"cannot connect to {redact(url)}: {exc}".strip()) from exc


def redact(url: str) -> str:
    """The URL without its password, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def ensure_database(settings: DatabaseSettings) -> bool:
    """Create the database named in the URL if it is missing and allowed; True if created."""
    parts = urlsplit(settings.url)
    name = parts.path.lstrip("/")
    if not settings.create_database or not name:
        return False
    try:
        with psycopg.connect(settings.url, connect_timeout=10):
            return False
    except psycopg.OperationalError as exc:
        if "does not exist" not in str(exc):
            raise DatabaseUnavailable(f"cannot connect to {redact(settings.url)}: {exc}") from exc
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with connect(admin_url, autocommit=True) as conn:
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.errors.DuplicateDatabase:
            return False  # another process created it meanwhile
    log.info("created database %s", name)
    return True


def load_migrations() -> list[Migration]:
    files = resources.files(MIGRATIONS_PACKAGE)
    found = [
        Migration(entry.name, entry.read_text(encoding="utf-8"))
        for entry in files.iterdir()
        if entry.name.endswith(".sql")
    ]
    return sorted(found, key=lambda m: m.name)


def has_timescaledb(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    return bool(row and row[0])


def migrate(settings: Settings) -> list[str]:
    """Apply the migrations not yet applied, each in its own transaction; return their names."""
    applied: list[str] = []
    with connect(settings.database.url) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        try:
            timescale = settings.database.use_timescaledb and has_timescaledb(conn)
            if timescale:
                conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            conn.commit()
            done = {r[0] for r in conn.execute("SELECT name FROM schema_migrations")}
            for migration in load_migrations():
                wanted = migration.flavour in ("any", "timescale" if timescale else "plain")
                if wanted and migration.name not in done:
                    _apply(conn, migration)
                    applied.append(migration.name)
            if timescale:
                apply_timescale_policies(conn, settings.retention)
                conn.commit()
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
            conn.commit()
    if applied:
        log.info("applied migrations: %s", ", ".join(applied))
    return applied


def _apply(conn: psycopg.Connection[tuple[object, ...]], migration: Migration) -> None:
    with conn.transaction():
        conn.execute(migration.sql.encode())
        conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (migration.name,))


_POLICY_TABLES = ("mattress_samples", "wristband_samples", "device_events", "device_status")


def apply_timescale_policies(
    conn: psycopg.Connection[tuple[object, ...]], retention: RetentionSettings
) -> None:
    """Compression and retention policies, replaced so that changed settings take effect."""
    for table in (*_POLICY_TABLES, "wave_blocks"):
        days = retention.wave_days if table == "wave_blocks" else retention.samples_days
        conn.execute("SELECT remove_retention_policy(%s, if_exists => true)", (table,))
        conn.execute("SELECT add_retention_policy(%s, make_interval(days => %s))", (table, days))
    for table in _POLICY_TABLES:
        conn.execute("SELECT remove_compression_policy(%s, if_exists => true)", (table,))
        conn.execute(
            "SELECT add_compression_policy(%s, make_interval(days => %s))",
            (table, retention.compress_after_days),
        )


def uses_timescaledb(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    row = conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    return bool(row and row[0])


def prune(conn: psycopg.Connection[tuple[object, ...]], retention: RetentionSettings) -> int:
    """Retention where no TimescaleDB policy does it (quarantine always); returns rows deleted."""
    ages = {
        "mattress_samples": ("time", retention.samples_days),
        "wristband_samples": ("time", retention.samples_days),
        "device_events": ("time", retention.samples_days),
        "device_status": ("time", retention.samples_days),
        "wave_blocks": ("time", retention.wave_days),
        "quarantine": ("received_at", retention.quarantine_days),
    }
    if uses_timescaledb(conn):
        ages = {"quarantine": ages["quarantine"]}
    deleted = 0
    for table, (column, days) in ages.items():
        cur = conn.execute(
            sql.SQL("DELETE FROM {} WHERE {} < now() - make_interval(days => %s)").format(
                sql.Identifier(table), sql.Identifier(column)
            ),
            (days,),
        )
        deleted += cur.rowcount
    conn.commit()
    return deleted
