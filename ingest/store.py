"""Batched, idempotent writes of decoded messages: binary COPY, into staging tables and one
INSERT … ON CONFLICT each, or for pad samples straight into their table when none is a copy."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import psycopg

from ingest.db import DatabaseUnavailable, connect
from ingest.protocol import Decoded
from ingest.records import (
    Channel,
    DeviceEvent,
    DeviceStatus,
    MattressSample,
    Reason,
    Record,
    Rejection,
    WaveBlock,
    WristbandSample,
    ms_to_datetime,
)

log = logging.getLogger(__name__)

# The database away, not refusing a row: the caller keeps the whole batch and retries later.
_CONNECTION_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError, DatabaseUnavailable)

# Rows of another component kept in the same transaction as a batch (the application's findings
# and night summaries, decided from it): called with the batch's cursor.
Cursor = psycopg.Cursor[tuple[object, ...]]
AlsoWrite = Callable[[Cursor], None]


class WriteAborted(Exception):
    """Raised by an `also` callback to abandon the whole write: nothing of the batch is stored
    and nothing is narrowed down (the caller decides what becomes of it)."""


# Errors that end a write as they are: the batch is kept by the caller, not narrowed down.
_NOT_NARROWED = (*_CONNECTION_ERRORS, WriteAborted)

_MS = "TIMESTAMPTZ 'epoch' + ts_ms * INTERVAL '1 millisecond'"

# Pad samples, the bulk of every batch, first go straight into their table by binary COPY (half
# the database's work of staging them). A batch holding a sample already stored (a redelivery)
# fails that COPY as a whole; it is rolled back to a savepoint and staged, and for the next
# DIRECT_PAUSE_FLUSHES flushes (a restart's redeliveries come in a run) samples are staged.
# Binary timestamptz is microseconds since 2000-01-01, written as int8.
DIRECT_MATTRESS = (
    "COPY mattress_samples (device_id, resident_id, time, hr, rr, move, occ, sq, source)"
    " FROM STDIN (FORMAT BINARY)"
)
PG_EPOCH_US = 946_684_800_000_000
DIRECT_PAUSE_FLUSHES = 50

# Staging tables live per connection and empty themselves at each commit. Binary COPY does
# no casts, so every column type is declared again in STAGING_TYPES; nor does it range-check
# (psycopg wraps an int too large for int2), so only records the decoder has validated may
# come here.
STAGING = {
    # Columns in MattressSample's field order: samples are copied as they are.
    "stage_mattress": "device_id text, resident_id text, ts_ms int8, hr float4, rr float4,"
    " move int2, occ int2, sq int2, source text",
    "stage_wristband": "ts_ms int8, device_id text, resident_id text, hr float4, spo2 float4,"
    " bat int2, worn int2, steps int4",
    "stage_health": "device_id text, last_ms int8, last_seq int8, messages int8, rejected int8,"
    " skew_ms int8",
}
STAGING_TYPES = {
    "stage_mattress": ["text", "text", "int8", "float4", "float4", "int2", "int2", "int2", "text"],
    "stage_wristband": ["int8", "text", "text", "float4", "float4", "int2", "int2", "int4"],
    "stage_health": ["text", "int8", "int8", "int8", "int8", "int8"],
}
QUARANTINE_TYPES = ["timestamptz", "text", "text", "text", "text", "bytea", "int4", "bytea"]
# What quarantine keeps of a payload: its first bytes, its whole size and its SHA-256 (a 5 MB
# payload is evidence enough at this length, and the digest tells copies apart).
QUARANTINE_KEEP_BYTES = 4096

INSERT_MATTRESS = f"""
INSERT INTO mattress_samples (time, device_id, resident_id, hr, rr, move, occ, sq, source)
SELECT {_MS}, device_id, resident_id, hr, rr, move, occ, sq, source FROM stage_mattress
ON CONFLICT DO NOTHING"""
INSERT_WRISTBAND = f"""
INSERT INTO wristband_samples (time, device_id, resident_id, hr, spo2, bat, worn, steps)
SELECT {_MS}, device_id, resident_id, hr, spo2, bat, worn, steps FROM stage_wristband
ON CONFLICT DO NOTHING"""
# An event is known by device, type and the device's own time: usually its stored time, but
# `device_time` when a clock far ahead had it stored at receive time (a copy delivered later has
# another receive time, and must still be recognised).
INSERT_EVENT = f"""
INSERT INTO device_events
    (time, device_id, type, resident_id, conf, bat, lat, lon, degraded, received_at, device_time)
SELECT {_MS}, %(device_id)s, %(type)s, %(resident_id)s, %(conf)s, %(bat)s, %(lat)s, %(lon)s,
       %(degraded)s, TIMESTAMPTZ 'epoch' + %(received_ms)s * INTERVAL '1 millisecond',
       TIMESTAMPTZ 'epoch' + %(device_ms)s::int8 * INTERVAL '1 millisecond'
FROM (SELECT %(ts_ms)s::int8 AS ts_ms) t
WHERE NOT EXISTS (
    SELECT 1 FROM device_events e
    WHERE e.device_id = %(device_id)s AND e.type = %(type)s AND e.device_time
        = TIMESTAMPTZ 'epoch' + coalesce(%(device_ms)s, %(ts_ms)s)::int8 * INTERVAL '1 millisecond'
    -- A copy comes within the broker's session expiry (7 days): recent chunks only.
    AND e.time >= TIMESTAMPTZ 'epoch' + (%(ts_ms)s::int8 - 8 * 86400000) * INTERVAL '1 millisecond')
ON CONFLICT DO NOTHING"""
# A status without device time (a Last Will) has the receive time, so a retained one delivered
# again after a restart would look new: it is stored only if it changes the device's state.
INSERT_STATUS = f"""
INSERT INTO device_status (time, device_id, state, from_device_clock, kind, model, fw, bat)
SELECT {_MS}, %(device_id)s, %(state)s, %(from_device_clock)s, %(kind)s, %(model)s, %(fw)s,
       %(bat)s
FROM (SELECT %(ts_ms)s::int8 AS ts_ms) t
WHERE %(from_device_clock)s OR %(state)s IS DISTINCT FROM (
    SELECT state FROM device_status WHERE device_id = %(device_id)s ORDER BY time DESC LIMIT 1)
ON CONFLICT DO NOTHING"""
INSERT_WAVE = f"""
INSERT INTO wave_blocks (time, device_id, fs, raw, resp, bcg)
SELECT {_MS}, %(device_id)s, %(fs)s, %(raw)s, %(resp)s, %(bcg)s
FROM (SELECT %(ts_ms)s::int8 AS ts_ms) t
ON CONFLICT DO NOTHING"""
UPSERT_HEALTH = """
INSERT INTO device_health AS h
    (device_id, last_seen_at, last_seq, messages, rejected, clock_skew_ms, skew_seen_at)
SELECT device_id, TIMESTAMPTZ 'epoch' + last_ms * INTERVAL '1 millisecond', last_seq, messages,
       rejected, skew_ms,
       CASE WHEN skew_ms IS NULL THEN NULL
            ELSE TIMESTAMPTZ 'epoch' + last_ms * INTERVAL '1 millisecond' END
FROM stage_health
ON CONFLICT (device_id) DO UPDATE SET
    last_seen_at = greatest(h.last_seen_at, excluded.last_seen_at),
    last_seq = coalesce(excluded.last_seq, h.last_seq),
    messages = h.messages + excluded.messages,
    rejected = h.rejected + excluded.rejected,
    clock_skew_ms = coalesce(excluded.clock_skew_ms, h.clock_skew_ms),
    skew_seen_at = coalesce(excluded.skew_seen_at, h.skew_seen_at)"""


@dataclass(slots=True)
class WriteResult:
    """Rows written by one flush; duplicates of rows already stored are not counted."""

    mattress: int = 0
    wristband: int = 0
    events: int = 0
    status: int = 0
    wave: int = 0
    quarantined: int = 0
    failed_messages: int = 0

    def add(self, other: WriteResult) -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(slots=True)
class _Rows:
    mattress: list[MattressSample] = field(default_factory=list)
    wristband: list[tuple[object, ...]] = field(default_factory=list)
    events: list[dict[str, object]] = field(default_factory=list)
    status: list[dict[str, object]] = field(default_factory=list)
    wave: list[dict[str, object]] = field(default_factory=list)
    quarantine: list[tuple[object, ...]] = field(default_factory=list)
    health: dict[str, list[object]] = field(default_factory=dict)


class Store:
    """Owns one connection; used by one thread at a time (the service's writer)."""

    def __init__(self, url: str, *, keep_wave: bool = False) -> None:
        self._url = url
        self._keep_wave = keep_wave
        self._staged_flushes = 0  # flushes left that stage pad samples instead of copying
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None

    def open(self) -> None:
        conn = connect(self._url)
        for table, columns in STAGING.items():
            conn.execute(f"CREATE TEMP TABLE {table} ({columns}) ON COMMIT DELETE ROWS")
        conn.commit()
        self._conn = conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def reopen(self) -> None:
        self.close()
        self.open()

    @property
    def connection(self) -> psycopg.Connection[tuple[object, ...]]:
        if self._conn is None or self._conn.closed:
            self.open()
        assert self._conn is not None
        return self._conn

    def write(
        self,
        messages: Sequence[Decoded],
        derived: Sequence[Record] = (),
        also: AlsoWrite | None = None,
    ) -> WriteResult:
        """Store a batch in one transaction; a message the database refuses is quarantined.

        Connection errors propagate (the caller retries the same batch later). Anything else
        (the database refusing a row, a value the binary format cannot carry) is narrowed
        down to the messages at fault, so one message can never stop the others.
        """
        try:
            return self._write(messages, derived, also)
        except _NOT_NARROWED:
            raise
        except Exception:
            log.exception("batch of %d messages refused; narrowing it down", len(messages))
            self._rollback()
        result = WriteResult()
        try:
            result = self._write((), derived, also)
        except _NOT_NARROWED:
            raise
        except Exception:
            # Computed here, not received: dropping them loses no device data.
            log.exception("%d derived rows and the rows beside them not stored", len(derived))
            self._rollback()
        result.add(self._narrowed(messages))
        return result

    def _narrowed(self, messages: Sequence[Decoded]) -> WriteResult:
        """Halves of a refused batch, each stored or halved again, in order: k messages at
        fault among n cost about k * log2(n) transactions, not n."""
        result = WriteResult()
        parts = [list(messages)]
        while parts:
            part = parts.pop()
            try:
                result.add(self._write(part))
                continue
            except _CONNECTION_ERRORS:
                raise
            except Exception as exc:
                self._rollback()
                if len(part) > 1:
                    half = len(part) // 2
                    parts += (part[half:], part[:half])  # the first half is written first
                    continue
                refused = exc
            result.add(self._write((_refused(part[0], refused),)))
            result.failed_messages += 1
        return result

    def _rollback(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.rollback()

    def _write(
        self,
        messages: Iterable[Decoded],
        derived: Sequence[Record] = (),
        also: AlsoWrite | None = None,
    ) -> WriteResult:
        rows = _collect(messages, derived, self._keep_wave)
        conn = self.connection
        result = WriteResult()
        with conn.transaction(), conn.cursor() as cur:
            result.mattress = self._mattress(conn, cur, rows.mattress)
            result.wristband = self._copy_insert(
                cur, "stage_wristband", rows.wristband, INSERT_WRISTBAND
            )
            result.events = _execute_many(cur, INSERT_EVENT, rows.events)
            result.status = _execute_many(cur, INSERT_STATUS, rows.status)
            result.wave = _execute_many(cur, INSERT_WAVE, rows.wave)
            if rows.quarantine:
                with cur.copy(
                    "COPY quarantine (received_at, topic, device_id, reason, detail, payload,"
                    " payload_bytes, payload_sha256) FROM STDIN (FORMAT BINARY)"
                ) as copy:
                    copy.set_types(QUARANTINE_TYPES)
                    for row in rows.quarantine:
                        copy.write_row(row)
                result.quarantined = len(rows.quarantine)
            health = [(d, *v) for d, v in rows.health.items()]
            self._copy_insert(cur, "stage_health", health, UPSERT_HEALTH)
            if also is not None:
                also(cur)
        return result

    def _mattress(
        self,
        conn: psycopg.Connection[tuple[object, ...]],
        cur: psycopg.Cursor[tuple[object, ...]],
        rows: Sequence[MattressSample],
    ) -> int:
        if not rows:
            return 0
        if self._staged_flushes:
            self._staged_flushes -= 1
        else:
            try:
                with conn.transaction(), cur.copy(DIRECT_MATTRESS) as copy:
                    copy.set_types(STAGING_TYPES["stage_mattress"])
                    for device, resident, ts, hr, rr, move, occ, sq, source in rows:
                        copy.write_row(
                            (
                                device,
                                resident,
                                ts * 1000 - PG_EPOCH_US,
                                hr,
                                rr,
                                move,
                                occ,
                                sq,
                                source,
                            )
                        )
                return len(rows)
            except psycopg.errors.UniqueViolation:
                self._staged_flushes = DIRECT_PAUSE_FLUSHES
        return self._copy_insert(cur, "stage_mattress", rows, INSERT_MATTRESS)

    @staticmethod
    def _copy_insert(
        cur: psycopg.Cursor[tuple[object, ...]],
        table: str,
        rows: Sequence[tuple[object, ...]],
        insert: str,
    ) -> int:
        if not rows:
            return 0
        with cur.copy(f"COPY {table} FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(STAGING_TYPES[table])
            for row in rows:
                copy.write_row(row)
        cur.execute(insert)
        return max(cur.rowcount, 0)


def _execute_many(
    cur: psycopg.Cursor[tuple[object, ...]], statement: str, rows: list[dict[str, object]]
) -> int:
    if not rows:
        return 0
    cur.executemany(statement, rows, returning=False)
    return max(cur.rowcount, 0)


def _collect(messages: Iterable[Decoded], derived: Sequence[Record], keep_wave: bool) -> _Rows:
    rows = _Rows()
    for message in messages:
        records = message.records
        if message.channel is Channel.TELEMETRY and records and type(records[0]) is MattressSample:
            rows.mattress.extend(records)  # type: ignore[arg-type]  # a pad's: all samples
        else:
            _add_records(rows, records, message.received_at_ms, keep_wave)
        for rejection in message.rejections:
            rows.quarantine.append(_quarantine_row(rejection))
        if message.device_id is not None and (message.records or message.rejections):
            _count_health(rows.health, message)
    _add_records(rows, derived, 0, keep_wave)
    return rows


def _add_records(rows: _Rows, records: Iterable[Record], received_ms: int, keep_wave: bool) -> None:
    for r in records:
        if type(r) is MattressSample:
            rows.mattress.append(r)
        elif type(r) is WristbandSample:
            rows.wristband.append(
                (r.ts_ms, r.device_id, r.resident_id, r.hr, r.spo2, r.bat, r.worn, r.steps)
            )
        elif type(r) is DeviceEvent:
            rows.events.append(_event_row(r, received_ms))
        elif type(r) is DeviceStatus:
            rows.status.append(_status_row(r))
        elif type(r) is WaveBlock and keep_wave:
            rows.wave.append(
                {
                    "ts_ms": r.t0_ms,
                    "device_id": r.device_id,
                    "fs": r.fs_hz,
                    "raw": _list(r.raw),
                    "resp": _list(r.resp),
                    "bcg": _list(r.bcg),
                }
            )


def _list(values: tuple[int, ...] | None) -> list[int] | None:
    return None if values is None else list(values)


def _event_row(e: DeviceEvent, received_ms: int) -> dict[str, object]:
    return {
        "ts_ms": e.ts_ms,
        "device_id": e.device_id,
        "type": e.type.value,
        "resident_id": e.resident_id,
        "conf": e.conf,
        "bat": e.bat,
        "lat": e.lat,
        "lon": e.lon,
        "degraded": e.degraded,
        "received_ms": received_ms or e.ts_ms,
        "device_ms": e.device_ts_ms,
    }


def _status_row(s: DeviceStatus) -> dict[str, object]:
    return {
        "ts_ms": s.ts_ms,
        "device_id": s.device_id,
        "state": s.state.value,
        "from_device_clock": s.from_device_clock,
        "kind": s.kind,
        "model": s.model,
        "fw": s.fw,
        "bat": s.bat,
    }


def _quarantine_row(r: Rejection) -> tuple[object, ...]:
    return (
        ms_to_datetime(r.received_at_ms),
        r.topic,
        r.device_id,
        r.reason.value,
        r.detail,
        r.payload[:QUARANTINE_KEEP_BYTES],
        len(r.payload),
        hashlib.sha256(r.payload).digest(),
    )


def _count_health(health: dict[str, list[object]], message: Decoded) -> None:
    assert message.device_id is not None
    entry = health.get(message.device_id)
    if entry is None:
        entry = health[message.device_id] = [message.received_at_ms, None, 0, 0, None]
    entry[0] = max(entry[0], message.received_at_ms)  # type: ignore[call-overload]
    if message.seq is not None:
        entry[1] = message.seq
    entry[2] += 1  # type: ignore[operator]
    if message.rejections and not message.records:
        entry[3] += 1  # type: ignore[operator]
    if message.skew_ms is not None:
        entry[4] = message.skew_ms


def _refused(message: Decoded, exc: Exception) -> Decoded:
    """The message as a quarantine entry: valid by the protocol, refused by the database."""
    rejection = Rejection(
        topic=message.topic,
        reason=Reason.STORE_FAILED,
        detail=f"{type(exc).__name__}: {exc}"[:500],
        payload=message.payload,
        received_at_ms=message.received_at_ms,
        device_id=message.device_id,
    )
    return Decoded(
        message.received_at_ms,
        message.topic,
        message.payload,
        message.device_id,
        message.channel,
        [],
        [rejection],
    )
