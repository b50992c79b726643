"""How long device data is kept: TimescaleDB policies where it runs, hourly deletes elsewhere."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

import psycopg
from psycopg import sql

from ingest.settings import RetentionSettings

Conn = psycopg.Connection[tuple[object, ...]]

_SAMPLE_TABLES = ("mattress_samples", "wristband_samples", "device_events", "device_status")
RETENTION = "policy_retention"
COMPRESSION = "policy_compression"

# The policies in force, by (table or continuous aggregate, policy): the age they act at.
Policies = Mapping[tuple[str, str], timedelta]

EXISTING_POLICIES = """
SELECT coalesce(ca.view_name, j.hypertable_name), j.proc_name,
       coalesce(j.config->>'drop_after', j.config->>'compress_after')::interval
FROM timescaledb_information.jobs j
LEFT JOIN timescaledb_information.continuous_aggregates ca
  ON ca.materialization_hypertable_schema = j.hypertable_schema
 AND ca.materialization_hypertable_name = j.hypertable_name
WHERE j.proc_name IN ('policy_retention', 'policy_compression')
  AND j.hypertable_schema IN ('public', '_timescaledb_internal')"""


def wanted_policies(retention: RetentionSettings) -> dict[tuple[str, str], timedelta]:
    """The policies the settings ask for. The per-minute aggregate lives as long as the samples
    it summarises, so a dashboard never shows minutes whose samples are gone (or the reverse)."""
    samples = timedelta(days=retention.samples_days)
    wanted = {(t, RETENTION): samples for t in (*_SAMPLE_TABLES, "mattress_1m")}
    wanted["wave_blocks", RETENTION] = timedelta(days=retention.wave_days)
    compress = timedelta(days=retention.compress_after_days)
    wanted |= {(t, COMPRESSION): compress for t in _SAMPLE_TABLES}
    return wanted


def policy_changes(existing: Policies, wanted: Policies) -> list[tuple[str, str]]:
    """The policies to (re)create: missing, or set for another age. The others are left alone,
    since replacing one gives it a new job and cancels a run in progress."""
    return sorted(key for key, age in wanted.items() if existing.get(key) != age)


def apply_timescale_policies(conn: Conn, retention: RetentionSettings) -> list[str]:
    """Compression and retention policies as the settings say; returns those changed."""
    existing: dict[tuple[str, str], timedelta] = {}
    for table, proc, age in conn.execute(EXISTING_POLICIES).fetchall():
        if isinstance(age, timedelta):
            existing[str(table), str(proc)] = age
    wanted = wanted_policies(retention)
    changed = policy_changes(existing, wanted)
    for table, proc in changed:
        days = wanted[table, proc].days
        if proc == RETENTION:
            conn.execute("SELECT remove_retention_policy(%s, if_exists => true)", (table,))
            conn.execute(
                "SELECT add_retention_policy(%s, make_interval(days => %s))", (table, days)
            )
        else:
            conn.execute("SELECT remove_compression_policy(%s, if_exists => true)", (table,))
            conn.execute(
                "SELECT add_compression_policy(%s, make_interval(days => %s))", (table, days)
            )
    return [f"{table} {proc.removeprefix('policy_')}" for table, proc in changed]


def uses_timescaledb(conn: Conn) -> bool:
    row = conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    return bool(row and row[0])


def prune(conn: Conn, retention: RetentionSettings) -> int:
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
