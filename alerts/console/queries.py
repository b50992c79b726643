"""What the console reads: a contact's alerts, residents' status and a night of vitals."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from alerts.model import OFFLINE_AFTER_S, AlertId, AlertState, ContactId
from alerts.store import AsyncConn
from detectors.findings import FindingKind, Severity
from ingest.records import ResidentId

IN_BED_FRESH_S = 120  # a pad not heard from for this long says nothing about now
NIGHT_FROM = time(18, 0)  # a night view spans 18:00 local to 12:00 the next day
NIGHT_HOURS = 18


@dataclass(frozen=True, slots=True)
class AlertRow:
    id: AlertId
    resident_id: ResidentId
    resident_name: str
    room: str
    timezone: str
    kind: FindingKind
    severity: Severity
    state: AlertState
    opened_at: datetime
    started_at: datetime
    acked_at: datetime | None
    acked_by: str | None
    count: int
    evidence: dict[str, object]


async def token_valid(conn: AsyncConn, contact_id: ContactId, token_sha256: bytes) -> bool:
    """The token is the contact's, not revoked, and the contact is active."""
    cur = await conn.execute(
        "SELECT 1 FROM contact_tokens t JOIN contacts c ON c.id = t.contact_id"
        " WHERE t.token_sha256 = %s AND t.contact_id = %s AND t.revoked_at IS NULL AND c.active",
        (token_sha256, contact_id),
    )
    return await cur.fetchone() is not None


async def active_alerts(conn: AsyncConn, contact_id: ContactId) -> list[AlertRow]:
    """Open then acknowledged alerts of the contact's residents, gravest and oldest first."""
    cur = await conn.execute(
        "SELECT a.id, a.resident_id, r.name, r.room, r.timezone, a.kind, a.severity, a.state,"
        "  a.opened_at, a.started_at, a.acked_at, a.acked_by, a.count, a.evidence"
        " FROM alerts a JOIN contact_residents t"
        "  ON t.resident_id = a.resident_id AND t.contact_id = %s"
        " JOIN residents r ON r.id = a.resident_id"
        " WHERE a.state IN ('open', 'acknowledged')"
        " ORDER BY a.state = 'acknowledged', array_position(%s, a.severity), a.opened_at, a.id",
        (contact_id, [s.value for s in Severity]),
    )
    return [_alert_row(row) for row in await cur.fetchall()]


def _alert_row(row: tuple[Any, ...]) -> AlertRow:
    i, rid, name, room, tz, kind, sev, state, opened, started, acked, by, count, ev = row
    return AlertRow(
        AlertId(i),
        ResidentId(rid),
        name,
        room,
        tz,
        FindingKind(kind),
        Severity(sev),
        AlertState(state),
        opened,
        started,
        acked,
        by,
        count,
        dict(ev),
    )


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    id: str
    kind: str
    online: bool
    last_seen_at: datetime | None
    battery: int | None


@dataclass(frozen=True, slots=True)
class ResidentStatus:
    id: ResidentId
    name: str
    room: str
    timezone: str
    in_bed: bool | None  # None: no recent reading from the pad
    hr: float | None
    rr: float | None
    vitals_at: datetime | None
    devices: tuple[DeviceStatus, ...]


async def residents(
    conn: AsyncConn, contact_id: ContactId, now: datetime, resident_id: ResidentId | None = None
) -> list[ResidentStatus]:
    """The contact's residents (or one of them), with latest vitals and devices."""
    cur = await conn.execute(
        "SELECT r.id, r.name, r.room, r.timezone FROM residents r"
        " JOIN contact_residents t ON t.resident_id = r.id AND t.contact_id = %s"
        " WHERE r.active AND (%s::text IS NULL OR r.id = %s) ORDER BY r.room, r.id",
        (contact_id, resident_id, resident_id),
    )
    people = await cur.fetchall()
    devices = await _devices(conn, [p[0] for p in people])
    out = []
    for rid, name, room, tz in people:
        mine = [d for d in devices if d[0] == rid]
        out.append(_status(ResidentId(rid), name, room, tz, mine, now))
    return out


async def _devices(conn: AsyncConn, resident_ids: list[str]) -> list[tuple[Any, ...]]:
    # One index lookup per device for its latest row: cheap on hypertables and plain tables alike.
    cur = await conn.execute(
        "SELECT d.resident_id, d.id, d.kind, h.last_seen_at, s.state, s.bat,"
        "  m.time, m.hr, m.rr, m.occ, w.bat"
        " FROM devices d LEFT JOIN device_health h ON h.device_id = d.id"
        " LEFT JOIN LATERAL (SELECT state, bat FROM device_status"
        "   WHERE device_id = d.id ORDER BY time DESC LIMIT 1) s ON true"
        " LEFT JOIN LATERAL (SELECT time, hr, rr, occ FROM mattress_samples"
        "   WHERE device_id = d.id AND source = 'device' AND d.kind = 'mattress'"
        "   ORDER BY time DESC LIMIT 1) m ON true"
        " LEFT JOIN LATERAL (SELECT bat FROM wristband_samples"
        "   WHERE device_id = d.id AND d.kind = 'wristband' AND bat IS NOT NULL"
        "   ORDER BY time DESC LIMIT 1) w ON true"
        " WHERE d.active AND d.resident_id = ANY(%s) ORDER BY d.kind, d.id",
        (resident_ids,),
    )
    return list(await cur.fetchall())


def _status(
    rid: ResidentId, name: str, room: str, tz: str, rows: list[tuple[Any, ...]], now: datetime
) -> ResidentStatus:
    devices = []
    in_bed: bool | None = None
    hr = rr = None
    vitals_at = None
    for _, dev_id, kind, seen, state, status_bat, m_time, m_hr, m_rr, m_occ, w_bat in rows:
        fresh = seen is not None and (now - seen).total_seconds() < OFFLINE_AFTER_S[kind]
        battery = w_bat if w_bat is not None else status_bat
        devices.append(DeviceStatus(dev_id, kind, fresh and state != "offline", seen, battery))
        # What the pad says now: its latest reading, if the pad was heard from lately. Judged
        # by when the service received it, as "online" and "N min ago" are, not by the device's
        # own timestamp (a clock that is off, or a night uploaded late, must not make the
        # card say "no recent data" beside live readings, or show old readings as current).
        heard = seen is not None and (now - seen).total_seconds() < IN_BED_FRESH_S
        if m_time is not None and vitals_at is None and heard:
            vitals_at, hr, rr = m_time, m_hr, m_rr
            in_bed = None if m_occ is None else m_occ == 1
    return ResidentStatus(rid, name, room, tz, in_bed, hr, rr, vitals_at, tuple(devices))


@dataclass(frozen=True, slots=True)
class Night:
    """One resident's night: per-minute series from `start`, one slot per minute (None: no data)."""

    night: date
    start: datetime
    minutes: int
    hr: list[float | None]
    rr: list[float | None]
    occ: list[float | None]
    move: list[float | None]
    alerts: list[tuple[datetime, FindingKind, Severity]]
    late: list[tuple[datetime, FindingKind, Severity]]  # findings in data uploaded late


def night_start(night: date, timezone: str) -> datetime:
    return datetime.combine(night, NIGHT_FROM, ZoneInfo(timezone))


def latest_night(now: datetime, timezone: str) -> date:
    """The night that has begun most recently in the resident's time zone."""
    local = now.astimezone(ZoneInfo(timezone))
    return local.date() if local.time() >= NIGHT_FROM else local.date() - timedelta(days=1)


async def night_with_data(
    conn: AsyncConn, resident_id: ResidentId, now: datetime, timezone: str
) -> date:
    """The latest night with pad data for the resident, up to the one under way: where the
    night view opens (the calendar night is empty until the evening)."""
    cur = await conn.execute(
        "SELECT max(m.time) FROM devices d CROSS JOIN LATERAL ("
        "  SELECT time FROM mattress_samples WHERE device_id = d.id AND source = 'device'"
        "  AND time <= %s ORDER BY time DESC LIMIT 1) m"
        " WHERE d.resident_id = %s AND d.kind = 'mattress'",
        (now, resident_id),
    )
    row = await cur.fetchone()
    latest = row[0] if row is not None else None
    return latest_night(latest if latest is not None else now, timezone)


async def night(conn: AsyncConn, resident_id: ResidentId, day: date, timezone: str) -> Night:
    start = night_start(day, timezone)
    end = start + timedelta(hours=NIGHT_HOURS)
    minutes = NIGHT_HOURS * 60
    series: list[list[float | None]] = [[None] * minutes for _ in range(4)]
    cur = await conn.execute(
        "SELECT floor(extract(epoch FROM time - %(start)s) / 60)::int AS slot,"
        "  avg(hr) FILTER (WHERE occ = 1 AND hr > 0), avg(rr) FILTER (WHERE occ = 1),"
        "  avg(occ), max(move)"
        " FROM mattress_samples WHERE resident_id = %(r)s AND source = 'device'"
        "  AND time >= %(start)s AND time < %(end)s GROUP BY slot ORDER BY slot",
        {"r": resident_id, "start": start, "end": end},
    )
    for slot, *values in await cur.fetchall():
        for column, value in zip(series, values, strict=True):
            column[slot] = None if value is None else float(value)
    cur = await conn.execute(
        "SELECT started_at, kind, severity FROM alerts WHERE resident_id = %s"
        " AND started_at >= %s AND started_at < %s ORDER BY started_at",
        (resident_id, start, end),
    )
    marks = [(at, FindingKind(k), Severity(s)) for at, k, s in await cur.fetchall()]
    # Found in a backlog a device uploaded after its newer data: never paged, shown here.
    cur = await conn.execute(
        "SELECT started_at, kind, severity FROM findings WHERE resident_id = %s AND late"
        " AND NOT cleared AND started_at >= %s AND started_at < %s ORDER BY started_at",
        (resident_id, start, end),
    )
    late = [(at, FindingKind(k), Severity(s)) for at, k, s in await cur.fetchall()]
    hr, rr, occ, move = series
    return Night(day, start, minutes, hr, rr, occ, move, marks, late)
