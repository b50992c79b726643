"""Grafana provisioning and the dashboard: every panel's SQL on a migrated database, read-only."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import yaml

from bedwatch.migrate import migrate
from tests.deploy.files import DASHBOARD, DEPLOY, READER_SQL, compose, site_env
from tests.support import ADMIN_URL, fresh_database, settings_for

Rows = list[tuple[Any, ...]]
NOW = datetime.now(UTC).replace(microsecond=0)
FROM, TO = NOW - timedelta(hours=1), NOW + timedelta(minutes=1)
PROVISIONING = DEPLOY / "grafana" / "provisioning"


def load_dashboard() -> dict[str, Any]:
    document = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def panels() -> list[dict[str, Any]]:
    """The panels that query (rows only group them)."""
    found = load_dashboard()["panels"]
    assert isinstance(found, list)
    return [panel for panel in found if panel["type"] != "row"]


def test_the_service_levels_have_a_row_of_their_own() -> None:
    found = load_dashboard()["panels"]
    [row] = [panel for panel in found if panel["type"] == "row"]
    assert row["title"] == "Service levels"
    below = [p["title"] for p in found if p["gridPos"]["y"] > row["gridPos"]["y"]]
    assert below == [
        "Answer times by severity (time range)",
        "Critical alerts answered within 60 s and 180 s, per day",
        "Alerts and answers by area (time range)",
    ]


def datasource() -> dict[str, Any]:
    document = yaml.safe_load((PROVISIONING / "datasources" / "bedwatch.yaml").read_text())
    [source] = document["datasources"]
    assert isinstance(source, dict)
    return source


def grafana_sql(raw: str, residents: list[str]) -> str:
    """What Grafana sends for a panel's SQL, for a one-hour range with the given residents."""
    sql = raw
    sql = sql.replace("$__timeFrom()", f"'{FROM.isoformat()}'")
    sql = sql.replace("$__timeTo()", f"'{TO.isoformat()}'")
    sql = re.sub(
        r"\$__timeFilter\(([\w.]+)\)",
        rf"\1 BETWEEN '{FROM.isoformat()}' AND '{TO.isoformat()}'",
        sql,
    )
    sql = sql.replace("$__interval_ms", "60000")
    sql = sql.replace("$resident", ", ".join(f"'{r}'" for r in residents))
    assert "$" not in sql, f"a Grafana macro or variable the test does not know: {sql}"
    return sql


def test_provisioning_points_at_the_database_and_the_dashboard() -> None:
    source = datasource()
    grafana = compose(site_env())["services"]["grafana"]
    assert source["type"] == "grafana-postgresql-datasource"
    assert source["url"] == "timescaledb:5432"
    assert source["user"] == "grafana"  # the role deploy/timescaledb/ creates
    assert source["secureJsonData"]["password"] == "${GRAFANA_DB_PASSWORD}"
    assert source["jsonData"]["database"] == "${BEDWATCH_DB_NAME}"
    assert grafana["environment"]["BEDWATCH_DB_NAME"] == "bedwatch"
    assert grafana["environment"]["GRAFANA_DB_PASSWORD"] == site_env()["GRAFANA_DB_PASSWORD"]
    [provider] = yaml.safe_load((PROVISIONING / "dashboards" / "bedwatch.yaml").read_text())[
        "providers"
    ]
    mounts = dict(v.split(":")[:2][::-1] for v in grafana["volumes"] if v.startswith("./"))
    assert mounts[provider["options"]["path"]] == "./deploy/grafana/dashboards"
    assert mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/{DASHBOARD.name}"


def test_dashboard_is_well_formed() -> None:
    dashboard = load_dashboard()
    uid = datasource()["uid"]
    assert dashboard["uid"] == "bedwatch-overview"
    ids = [panel["id"] for panel in panels()]
    assert len(ids) == len(set(ids))
    for panel in panels():
        assert panel["datasource"]["uid"] == uid, panel["title"]
        [target] = panel["targets"]
        assert target["datasource"]["uid"] == uid
        assert target["rawQuery"]
        assert target["format"] in ("time_series", "table")
        assert panel["gridPos"]["x"] >= 0
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
    [variable] = dashboard["templating"]["list"]
    assert variable["datasource"]["uid"] == uid


@pytest.fixture(scope="module")
def reader_url() -> Iterator[tuple[str, str]]:
    """A migrated database with a little data, and the URL of the read-only Grafana role."""
    psql = shutil.which("psql")
    if psql is None:
        pytest.skip("psql is needed to run deploy/timescaledb/grafana-reader.psql")
    reader = f"bw_test_grafana_{uuid.uuid4().hex[:8]}"
    with fresh_database() as url:
        owner = urlsplit(url).username or "postgres"
        # As in the container: the role exists before the service creates its tables.
        subprocess.run(
            [psql, url, "-q", "-v", "ON_ERROR_STOP=1", "-v", f"reader={reader}",
             "-v", "reader_password=readerSecret5", "-v", f"owner={owner}",
             "-v", f"dbname={urlsplit(url).path.lstrip('/')}", "-f", str(READER_SQL)],
            check=True, capture_output=True,
        )  # fmt: skip
        migrate(settings_for(url, "mqtt://127.0.0.1:1", "bedwatch/v1"))
        seed(url)
        parts = urlsplit(url)
        netloc = f"{reader}:readerSecret5@{parts.hostname}:{parts.port or 5432}"
        try:
            yield url, urlunsplit(parts._replace(netloc=netloc))
        finally:
            with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{parts.path.lstrip("/")}" WITH (FORCE)')
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP ROLE IF EXISTS "{reader}"')


def has_alerts(url: str) -> bool:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT to_regclass('public.alerts') IS NOT NULL").fetchone()
        return bool(row and row[0])


def seed(url: str) -> None:
    # One whole minute of samples, so that each per-minute bucket holds all of them.
    t = NOW.replace(second=0) - timedelta(minutes=5)
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO residents (id, name) VALUES ('r-1', 'Wang'), ('r-2', 'Chen');"
            "INSERT INTO devices (id, kind, resident_id) VALUES"
            " ('mat-1', 'mattress', 'r-1'), ('band-1', 'wristband', 'r-1'),"
            " ('mat-2', 'mattress', 'r-2');"
            "UPDATE residents SET area = 'kangjian/kangle/1' WHERE id = 'r-1'"
        )
        conn.cursor().executemany(
            "INSERT INTO mattress_samples (time, device_id, resident_id, hr, rr, move, occ, sq)"
            " VALUES (%s, 'mat-1', 'r-1', %s, 14, %s, 1, 90)",
            [(t + timedelta(seconds=i), 60 + i % 3, i % 5) for i in range(60)],
        )
        conn.execute(
            "INSERT INTO quarantine (received_at, topic, device_id, reason, detail, payload)"
            " VALUES (%s, 'bedwatch/v1/x/telemetry', 'x', 'unknown_device', '', 'a'),"
            " (%s, 'bedwatch/v1/mat-1/telemetry', 'mat-1', 'not_json', '', 'b'),"
            " (%s, 'bedwatch/v1/mat-1/telemetry', 'mat-1', 'not_json', '', 'c')",
            (t, t, t),
        )
        conn.execute(
            "INSERT INTO device_health (device_id, last_seen_at, messages) VALUES"
            " ('mat-1', %s, 60), ('band-1', %s, 3)",
            (t, NOW - timedelta(hours=2)),
        )
        conn.execute(
            "INSERT INTO device_status (time, received_at, device_id, state, from_device_clock,"
            " bat) VALUES (%(on)s, %(on)s, 'band-1', 'online', true, 80),"
            " (%(off)s, %(off)s, 'band-1', 'offline', false, NULL)",
            {"on": NOW - timedelta(hours=3), "off": NOW - timedelta(hours=2)},
        )
        if has_alerts(url):
            # The columns docs/design.md names, plus whatever else the table demands as times.
            extra = [
                r[0]
                for r in conn.execute(
                    "SELECT column_name FROM information_schema.columns"
                    " WHERE table_name = 'alerts' AND is_nullable = 'NO'"
                    " AND column_default IS NULL AND data_type LIKE 'timestamp%%'"
                    " AND column_name <> 'opened_at'"
                )
            ]
            columns = ", ".join(["resident_id", "kind", "severity", "state", "opened_at", *extra])
            times = ", ".join(["%(at)s"] * (1 + len(extra)))
            for resident, kind, severity, state in (
                ("r-1", "sos", "critical", "open"),
                ("r-2", "immobile", "medium", "acknowledged"),
                ("r-2", "heart_rate", "high", "resolved"),
            ):
                conn.execute(
                    f"INSERT INTO alerts ({columns}) VALUES ('{resident}', '{kind}',"
                    f" '{severity}', '{state}', {times})",
                    {"at": t},
                )


def series(rows: Rows) -> dict[str, float]:
    """metric -> mean of a time series' values."""
    values: dict[str, list[float]] = {}
    for _, metric, value in rows:
        values.setdefault(metric, []).append(float(value))
    return {metric: sum(v) / len(v) for metric, v in values.items()}


# What each panel must show for the seeded data: r-1 in bed with heart rate ~61, r-2 empty.
EXPECTED: dict[str, Callable[[Rows], bool]] = {
    # (severity, alerts, unanswered): none of the three was acknowledged by anybody.
    "Answer times by severity (time range)": lambda rows: (
        [(r[0], r[1], r[8]) for r in rows] == [("critical", 1, 1), ("high", 1, 1), ("medium", 1, 1)]
    ),
    # (area, alerts, critical): r-1 lives in kangjian, r-2 in no area.
    "Alerts and answers by area (time range)": lambda rows: (
        [(r[0], r[1], r[2]) for r in rows] == [("(none)", 2, 0), ("kangjian", 1, 1)]
    ),
    "Critical alerts answered within 60 s and 180 s, per day": lambda rows: (
        [(r[1], r[2]) for r in rows] == [(0, 0)]
    ),
    "Open alerts by severity": lambda rows: (
        rows == [("critical", 1), ("high", 0), ("medium", 1), ("low", 0)]
    ),
    "Open alerts": lambda rows: (
        [(r[1], r[4]) for r in rows] == [("critical", "open"), ("medium", "acknowledged")]
    ),
    "Heart rate": lambda rows: series(rows) == pytest.approx({"Wang · r-1": 61.0}, abs=0.1),
    "Breathing rate": lambda rows: series(rows) == {"Wang · r-1": 14.0},
    "In bed": lambda rows: series(rows) == {"Wang · r-1": 1.0},
    "Movement": lambda rows: series(rows) == {"Wang · r-1": 4.0},
    "Latest vitals (last 10 minutes)": lambda rows: (
        [(r[0], r[1]) for r in rows] == [("Wang · r-1", "mat-1")]
    ),
    "Quarantined messages by reason": lambda rows: (
        sorted((r[1], r[2]) for r in rows) == [("not_json", 2), ("unknown_device", 1)]
    ),
    "Quarantine by reason (time range)": lambda rows: (
        [(r[0], r[1], r[2]) for r in rows] == [("not_json", 2, 1), ("unknown_device", 1, 1)]
    ),
    "Devices: last seen": lambda rows: (
        [(r[0], r[5]) for r in rows] == [("mat-2", None), ("band-1", "offline"), ("mat-1", None)]
        # Silent for 2 h from NOW, which was taken when this module was imported.
        and abs(float(rows[1][4]) - 7200 - (datetime.now(UTC) - NOW).total_seconds()) < 60
    ),
}


def test_every_panel_has_an_expectation() -> None:
    assert sorted(EXPECTED) == sorted(panel["title"] for panel in panels())


@pytest.mark.parametrize("title", sorted(EXPECTED))
def test_panel_query_runs_read_only(title: str, reader_url: tuple[str, str]) -> None:
    owner_url, url = reader_url
    [panel] = [p for p in panels() if p["title"] == title]
    raw = panel["targets"][0]["rawSql"]
    if "alerts" in raw.split() and not has_alerts(owner_url):
        pytest.skip("no alerts table yet: it comes with migration ingest/migrations/0020_*.sql")
    with psycopg.connect(url) as conn:
        cursor = conn.execute(grafana_sql(raw, ["r-1", "r-2"]).encode())
        rows = cursor.fetchall()
        names = [column.name for column in cursor.description or []]
    if panel["targets"][0]["format"] == "time_series":
        assert names[:2] == ["time", "metric"]
        assert len(names) == 3
    assert EXPECTED[title](rows), rows


def test_resident_variable(reader_url: tuple[str, str]) -> None:
    [variable] = load_dashboard()["templating"]["list"]
    with psycopg.connect(reader_url[1]) as conn:
        rows = conn.execute(variable["query"]).fetchall()
    assert rows == [("r-1", "Wang · r-1"), ("r-2", "Chen · r-2")]


def test_grafanas_role_cannot_change_anything(reader_url: tuple[str, str]) -> None:
    with (
        psycopg.connect(reader_url[1]) as conn,
        pytest.raises(psycopg.errors.ReadOnlySqlTransaction),
    ):
        conn.execute("DELETE FROM quarantine")
    with psycopg.connect(reader_url[1]) as conn:
        conn.execute("SET default_transaction_read_only = off; SET transaction_read_only = off")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM quarantine")
