"""The service's side of detection: resident settings from the registry, findings to storage."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import psycopg

from detectors.findings import Finding
from detectors.nights import NightSummary
from detectors.settings import ResidentConfig, parse_detector_settings
from ingest.records import DeviceId, DeviceKind, ResidentId, ms_to_datetime

log = logging.getLogger(__name__)

SNAPSHOT_ID = "service"
EMERGENCY_WRITE_S = 2.0

# A finding about the past (late) pages nobody: it is stored as handed over already.
INSERT_FINDING = """
INSERT INTO findings
    (resident_id, device_id, kind, severity, at, started_at, cleared, evidence, late, handled_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, CASE WHEN %s THEN now() END)
RETURNING id"""


def load_resident_configs(
    conn: psycopg.Connection[tuple[object, ...]],
) -> dict[ResidentId, ResidentConfig]:
    """Every active resident with devices, with their detector settings from the site file."""
    rows = conn.execute(
        "SELECT r.id, r.timezone, r.detector_settings, d.id, d.kind"
        " FROM residents r JOIN devices d ON d.resident_id = r.id AND d.active"
        " WHERE r.active ORDER BY r.id"
    ).fetchall()
    devices: dict[str, dict[DeviceId, DeviceKind]] = {}
    meta: dict[str, tuple[str, Mapping[str, Any]]] = {}
    for rid, tz, settings, device_id, kind in rows:
        devices.setdefault(str(rid), {})[DeviceId(str(device_id))] = DeviceKind(str(kind))
        meta[str(rid)] = (str(tz), settings if isinstance(settings, dict) else {})
    configs: dict[ResidentId, ResidentConfig] = {}
    for rid, (tz, settings) in meta.items():
        try:
            configs[ResidentId(rid)] = ResidentConfig(
                ResidentId(rid), tz, devices[rid], parse_detector_settings(settings)
            )
        except ValueError as exc:
            # The site loader checks these; a row edited by hand may still be wrong.
            log.error("resident %s not watched: %s", rid, exc)
    return configs


def finding_row(f: Finding) -> tuple[object, ...]:
    return (
        f.resident_id,
        f.device_id,
        f.kind.value,
        f.severity.value,
        ms_to_datetime(f.at_ms),
        ms_to_datetime(f.started_ms),
        f.cleared,
        json.dumps(dict(f.evidence), default=str),
        f.late,
        f.late,
    )


def store_findings(
    cur: psycopg.Cursor[tuple[object, ...]],
    findings: Sequence[Finding],
    summaries: Sequence[NightSummary],
    ids: list[int] | None = None,
) -> None:
    """Findings and night summaries, in the caller's transaction; `ids` gets the findings' row
    ids, in order (emptied first: a transaction tried again starts afresh)."""
    if ids is not None:
        ids.clear()
    if findings:
        cur.executemany(INSERT_FINDING, [finding_row(f) for f in findings], returning=True)
        while True:
            inserted = cur.fetchone()
            assert inserted is not None
            if ids is not None:
                ids.append(int(inserted[0]))  # type: ignore[call-overload]
            if not cur.nextset():
                break
    for summary in summaries:
        row = summary.to_row()
        columns = list(row)
        updates = ", ".join(
            f"{c} = excluded.{c}" for c in columns if c not in ("resident_id", "night")
        )
        cur.execute(
            f"INSERT INTO night_summaries ({', '.join(columns)})"
            f" VALUES ({', '.join(['%s'] * len(columns))})"
            f" ON CONFLICT (resident_id, night) DO UPDATE SET {updates}, computed_at = now()",
            list(row.values()),
        )


class EmergencyWriter:
    """A connection of its own for emergency findings: committed at once, not with the next
    batch of device data, within EMERGENCY_WRITE_S or not at all (the caller falls back)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None

    async def store(self, findings: Sequence[Finding]) -> list[int]:
        return await self.store_with(findings, None)

    async def store_with(
        self,
        findings: Sequence[Finding],
        also: Callable[[psycopg.AsyncConnection[tuple[object, ...]]], Awaitable[object]] | None,
    ) -> list[int]:
        """The findings, and `also` in the same transaction (a partition's lane position)."""
        try:
            async with asyncio.timeout(EMERGENCY_WRITE_S):
                if self._conn is None or self._conn.closed:
                    self._conn = await psycopg.AsyncConnection.connect(
                        self._url, connect_timeout=max(1, int(EMERGENCY_WRITE_S))
                    )
                ids = []
                async with self._conn.transaction():
                    for finding in findings:
                        cur = await self._conn.execute(INSERT_FINDING, finding_row(finding))
                        row = await cur.fetchone()
                        assert row is not None
                        ids.append(int(row[0]))  # type: ignore[call-overload]
                    if also is not None:
                        await also(self._conn)
                return ids
        except BaseException:
            await self.close()  # a connection cut off mid-transaction is not used again
            raise

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            with contextlib.suppress(Exception):
                await conn.close()


def load_snapshot(conn: psycopg.Connection[tuple[object, ...]]) -> bytes | None:
    row = conn.execute("SELECT state FROM detector_state WHERE id = %s", (SNAPSHOT_ID,)).fetchone()
    if row is None:
        return None
    state = row[0]
    assert isinstance(state, bytes | memoryview)
    return bytes(state)


def save_snapshot(conn: psycopg.Connection[tuple[object, ...]], blob: bytes) -> None:
    conn.execute(
        "INSERT INTO detector_state (id, state, updated_at) VALUES (%s, %s, now())"
        " ON CONFLICT (id) DO UPDATE SET state = excluded.state, updated_at = now()",
        (SNAPSHOT_ID, blob),
    )
    conn.commit()
