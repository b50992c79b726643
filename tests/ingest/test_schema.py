"""Migrations: re-runnable, plain PostgreSQL here, TimescaleDB where the server has it."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import sql

from ingest.db import connect, has_timescaledb, load_migrations, migrate
from tests.support import query, settings_for


def test_migrations_apply_once_and_rerun_as_no_ops(database_url: str) -> None:
    settings = settings_for(database_url, "mqtt://127.0.0.1:1883", "x")
    first = migrate(settings)
    assert first
    assert all(m.endswith(".sql") for m in first)
    assert migrate(settings) == []
    tables = {
        t
        for (t,) in query(
            database_url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        )
    }
    for public in (
        "residents",
        "devices",
        "contacts",
        "mattress_samples",
        "wristband_samples",
        "device_events",
        "device_status",
        "quarantine",
        "findings",
        "alerts",
        "notifications",
    ):
        assert public in tables


def test_plain_postgresql_gets_the_plain_variants(database_url: str) -> None:
    settings = settings_for(database_url, "mqtt://127.0.0.1:1883", "x").replace(
        "database", use_timescaledb=False
    )
    applied = migrate(settings)
    assert not [m for m in applied if ".timescale." in m]
    assert [m for m in applied if ".plain." in m]
    views = query(database_url, "SELECT viewname FROM pg_views WHERE viewname = 'mattress_1m'")
    assert views == [("mattress_1m",)]


def test_every_migration_has_a_flavour_the_runner_knows() -> None:
    for migration in load_migrations():
        assert migration.flavour in ("any", "plain", "timescale"), migration.name


def test_hypertables_with_timescaledb(database_url: str) -> None:
    with connect(database_url) as conn:
        available = has_timescaledb(conn)
    if not available:
        pytest.skip("the timescaledb extension is not installed on this PostgreSQL server")
    settings = settings_for(database_url, "mqtt://127.0.0.1:1883", "x")
    applied = migrate(settings)
    assert [m for m in applied if ".timescale." in m]
    hypertables = {
        t
        for (t,) in query(
            database_url, "SELECT hypertable_name FROM timescaledb_information.hypertables"
        )
    }
    assert {
        "mattress_samples",
        "wristband_samples",
        "device_events",
        "device_status",
    } <= hypertables


def test_read_only_roles_cannot_read_secrets(database_url: str) -> None:
    reader = f"bw_reader_{uuid.uuid4().hex[:8]}"
    owner = query(database_url, "SELECT current_user")[0][0]
    with psycopg.connect(database_url, autocommit=True) as conn:
        # What deploy/timescaledb/grafana-reader.psql does before the service first starts.
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(reader)))
        conn.execute(
            sql.SQL(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public GRANT SELECT ON TABLES TO {}"
            ).format(sql.Identifier(owner), sql.Identifier(reader))
        )
    try:
        migrate(settings_for(database_url, "mqtt://127.0.0.1:1883", "x"))
        url = database_url.replace("postgres@", f"{reader}@", 1)
        with psycopg.connect(url) as conn:
            conn.execute("SELECT count(*) FROM alerts")
        for private in ("alert_keys", "contact_tokens", "notifications"):
            with psycopg.connect(url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(private)))
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(reader)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(reader)))
