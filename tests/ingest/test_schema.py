"""Migrations: re-runnable, plain PostgreSQL here, TimescaleDB where the server has it."""

from __future__ import annotations

import pytest

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
