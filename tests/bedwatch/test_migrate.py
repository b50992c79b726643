"""Migrations: re-runnable, plain PostgreSQL here, TimescaleDB where the server has it."""

from __future__ import annotations

import dataclasses
from typing import cast

import pytest

from bedwatch.migrate import (
    Conn,
    flavour_is_timescale,
    has_timescaledb,
    load_migrations,
    migrate,
    preloaded,
)
from bedwatch.settings import Settings
from ingest.db import connect
from ingest.retention import policy_changes, wanted_policies
from ingest.settings import RetentionSettings
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
        pytest.skip(
            "the timescaledb extension is not installed and preloaded on this PostgreSQL server"
        )
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
    jobs = "SELECT job_id, config FROM timescaledb_information.jobs ORDER BY job_id"
    before = query(database_url, jobs)
    assert migrate(settings) == []
    assert query(database_url, jobs) == before  # unchanged settings: the same jobs, not new ones
    [(realtime,)] = query(
        database_url,
        "SELECT NOT materialized_only FROM timescaledb_information.continuous_aggregates"
        " WHERE view_name = 'mattress_1m'",
    )
    assert realtime
    longer = settings.replace("retention", samples_days=400)
    migrate(longer)
    after = dict(query(database_url, jobs))
    assert len(after) == len(before)
    assert sum(1 for config in after.values() if "400 days" in str(config)) == 5


def test_policies_are_replaced_only_when_their_age_changes() -> None:
    retention = RetentionSettings()
    wanted = wanted_policies(retention)
    assert policy_changes(wanted, wanted) == []
    assert ("mattress_1m", "policy_retention") in wanted  # the aggregate ages with the samples
    assert policy_changes({}, wanted) == sorted(wanted)
    longer = wanted_policies(dataclasses.replace(retention, wave_days=5))
    assert policy_changes(wanted, longer) == [("wave_blocks", "policy_retention")]
    some = {k: v for k, v in wanted.items() if k[0] != "device_status"}
    assert policy_changes(some, wanted) == [
        ("device_status", "policy_compression"),
        ("device_status", "policy_retention"),
    ]


def test_each_migration_version_is_used_once_across_components() -> None:
    versions: dict[str, set[str]] = {}
    for migration in load_migrations():
        version = migration.name.split("_", 1)[0]
        versions.setdefault(version, set()).add(migration.package)
    assert all(len(packages) == 1 for packages in versions.values()), versions
    packages = {p for ps in versions.values() for p in ps}
    assert packages == {"ingest.migrations", "bedwatch.migrations", "alerts.migrations"}


def test_a_database_keeps_the_flavour_of_its_first_migrate() -> None:
    settings = Settings()
    unused = cast(Conn, object())  # the applied names decide: the server is not asked
    assert not flavour_is_timescale(unused, settings, {"0001_core.sql", "0002_minutely.plain.sql"})
    assert flavour_is_timescale(unused, settings, {"0002_hypertables.timescale.sql"})


def test_timescaledb_counts_only_when_preloaded() -> None:
    assert preloaded("pg_stat_statements, timescaledb")
    assert preloaded("timescaledb")
    assert not preloaded("")
    assert not preloaded("timescaledb_toolkit")
