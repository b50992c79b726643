"""SQL of the alert engine: alert rows, the outbox, acks and the audit trail."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from alerts.model import (
    Alert,
    AlertId,
    AlertState,
    Attachment,
    ContactId,
    DirectPage,
    FeedDelivery,
    FeedId,
    NotificationId,
    Outgoing,
    Reason,
    Result,
    Via,
)
from detectors.findings import Finding, FindingKind, Severity
from ingest.records import DeviceId, ResidentId

AsyncConn = psycopg.AsyncConnection[tuple[Any, ...]]

ALERT_COLUMNS = (
    "id, resident_id, kind, severity, state, opened_at, started_at, count, device_id,"
    " evidence, tier"
)


def ts(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def alert_of(row: Sequence[Any]) -> Alert:
    i, rid, kind, sev, state, opened, started, count, device, evidence, tier = row
    return Alert(
        AlertId(i),
        ResidentId(rid),
        FindingKind(kind),
        Severity(sev),
        AlertState(state),
        ms(opened),
        ms(started),
        count,
        device,
        dict(evidence),
        tier,
    )


@dataclass(frozen=True, slots=True)
class Upserted:
    alert: Alert
    inserted: bool
    previous_severity: Severity


async def reopen(
    conn: AsyncConn, alert_id: AlertId, now_ms: int, started_ms: int | None = None
) -> Alert:
    """Open again (a new emergency, a graver severity), its ladder from the start, now.

    `started_ms`: when the condition began, if it is a new one; else the alert keeps its own.
    """
    cur = await conn.execute(
        "UPDATE alerts SET state = 'open', acked_at = NULL, acked_by = NULL, opened_at = %s,"
        " started_at = coalesce(%s, started_at), tier = 0, next_action_at = NULL"
        f" WHERE id = %s RETURNING {ALERT_COLUMNS}",
        (ts(now_ms), None if started_ms is None else ts(started_ms), alert_id),
    )
    row = await cur.fetchone()
    assert row is not None
    return alert_of(row)


async def upsert_alert(conn: AsyncConn, f: Finding, now_ms: int) -> Upserted:
    """Open an alert, or join the open one (count, last seen, evidence, the graver severity)."""
    cur = await conn.execute(
        "WITH before AS MATERIALIZED (SELECT severity FROM alerts"
        "   WHERE resident_id = %(r)s AND kind = %(k)s"
        "   AND state IN ('open', 'acknowledged'))"
        " INSERT INTO alerts AS a (resident_id, kind, severity, state, opened_at, device_id,"
        "   started_at, last_seen_at, evidence)"
        " VALUES (%(r)s, %(k)s, %(s)s, 'open', %(now)s, %(d)s, %(started)s, %(at)s, %(ev)s)"
        " ON CONFLICT (resident_id, kind) WHERE state IN ('open', 'acknowledged') DO UPDATE SET"
        "   count = a.count + 1, last_seen_at = greatest(a.last_seen_at, excluded.last_seen_at),"
        "   evidence = excluded.evidence, device_id = coalesce(excluded.device_id, a.device_id),"
        "   severity = CASE WHEN %(rank)s < array_position(%(order)s, a.severity)"
        "     THEN excluded.severity ELSE a.severity END"
        f" RETURNING {ALERT_COLUMNS}, (xmax = 0), (SELECT severity FROM before)",
        {
            "r": f.resident_id,
            "k": f.kind.value,
            "s": f.severity.value,
            "now": ts(now_ms),
            "d": f.device_id,
            "started": ts(f.started_ms),
            "at": ts(f.at_ms),
            "ev": Jsonb(dict(f.evidence)),
            "rank": f.severity.rank + 1,
            "order": [s.value for s in Severity],
        },
    )
    row = await cur.fetchone()
    assert row is not None
    alert = alert_of(row[:11])
    previous = Severity(row[12]) if row[12] else alert.severity
    return Upserted(alert, bool(row[11]), previous)


async def schedule(
    conn: AsyncConn,
    alert_id: AlertId,
    *,
    tier: int,
    notice_ms: int | None,
    next_ms: int | None,
    held_until_ms: int | None = None,
) -> None:
    await conn.execute(
        "UPDATE alerts SET tier = %s, last_notice_at = coalesce(%s, last_notice_at),"
        " next_action_at = %s, held_until = %s WHERE id = %s",
        (
            tier,
            None if notice_ms is None else ts(notice_ms),
            None if next_ms is None else ts(next_ms),
            None if held_until_ms is None else ts(held_until_ms),
            alert_id,
        ),
    )


async def open_alert_kinds(
    conn: AsyncConn, resident_id: ResidentId, kinds: Sequence[str], device_id: str | None
) -> bool:
    """Is an alert of one of these kinds open or acknowledged (for that device, if given)?"""
    cur = await conn.execute(
        "SELECT 1 FROM alerts WHERE resident_id = %s AND kind = ANY(%s)"
        " AND state IN ('open', 'acknowledged') AND (%s::text IS NULL OR device_id = %s) LIMIT 1",
        (resident_id, list(kinds), device_id, device_id),
    )
    return await cur.fetchone() is not None


@dataclass(frozen=True, slots=True)
class Planned:
    """A message to put in the outbox for one contact on one channel."""

    alert_id: AlertId | None
    digest_id: int | None
    contact_id: ContactId
    tier: int
    channel_index: int
    channel: str  # redacted
    attempt: int
    reason: Reason
    title: str
    body: str
    critical: bool


async def enqueue(
    conn: AsyncConn, planned: Sequence[Planned], now_ms: int, due_ms: int, *, claim: bool
) -> list[Outgoing]:
    """Outbox rows; with claim they are 'sending' at once (the caller sends them now)."""
    out: list[Outgoing] = []
    state = Result.SENDING if claim else Result.PENDING
    for p in planned:
        cur = await conn.execute(
            "INSERT INTO notifications (alert_id, digest_id, contact_id, tier, channel_index,"
            " channel, attempt, reason, result, title, body, created_at, due_at, sent_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (
                p.alert_id,
                p.digest_id,
                p.contact_id,
                p.tier,
                p.channel_index,
                p.channel,
                p.attempt,
                p.reason.value,
                state.value,
                p.title,
                p.body,
                ts(now_ms),
                ts(due_ms),
                ts(now_ms) if claim else None,
            ),
        )
        row = await cur.fetchone()
        assert row is not None
        out.append(
            Outgoing(
                NotificationId(row[0]),
                p.alert_id,
                p.contact_id,
                p.channel_index,
                p.attempt,
                p.title,
                p.body,
                p.critical,
                p.digest_id,
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class FeedPlanned:
    """An alert's lifecycle event to put in the outbox for one webhook of one feed."""

    alert_id: AlertId
    audit_id: int  # the event: its id, and its place among the alert's events
    feed_id: FeedId
    webhook_index: int
    channel: str  # redacted
    title: str  # the event's type
    body: str  # the CloudEvent


async def enqueue_feed(conn: AsyncConn, planned: Sequence[FeedPlanned], now_ms: int) -> None:
    """Outbox rows of feed events, due now; the scheduler claims them in each alert's order."""
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO notifications (alert_id, audit_id, feed_id, channel_index, channel,"
            " attempt, reason, result, title, body, created_at, due_at)"
            " VALUES (%s, %s, %s, %s, %s, 1, %s, 'pending', %s, %s, %s, %s)",
            [
                (
                    p.alert_id,
                    p.audit_id,
                    p.feed_id,
                    p.webhook_index,
                    p.channel,
                    Reason.FEED.value,
                    p.title,
                    p.body,
                    ts(now_ms),
                    ts(now_ms),
                )
                for p in planned
            ],
        )


async def claim_due(conn: AsyncConn, now_ms: int, limit: int) -> list[Outgoing | FeedDelivery]:
    """Pending rows that are due, now 'sending': pages of alerts still open, digests, and feed
    events whatever the alert's state, each only once the alert's events before it have gone to
    that webhook (delivered or given up), so a receiver that fails gets them in order later."""
    cur = await conn.execute(
        "UPDATE notifications n SET result = 'sending', sent_at = %(now)s"
        " WHERE n.id IN (SELECT p.id FROM notifications p LEFT JOIN alerts a ON a.id = p.alert_id"
        "   WHERE p.result = 'pending' AND p.due_at <= %(now)s"
        "     AND (p.alert_id IS NULL OR a.state = 'open' OR p.feed_id IS NOT NULL)"
        "     AND NOT EXISTS (SELECT 1 FROM notifications e WHERE p.feed_id IS NOT NULL"
        "       AND e.alert_id = p.alert_id AND e.feed_id = p.feed_id"
        "       AND e.channel_index = p.channel_index AND e.audit_id < p.audit_id"
        "       AND e.result IN ('pending', 'sending'))"
        "   ORDER BY p.due_at LIMIT %(limit)s FOR UPDATE OF p SKIP LOCKED)"
        " RETURNING n.id, n.alert_id, n.contact_id, n.channel_index, n.attempt, n.title, n.body,"
        "   coalesce((SELECT severity = 'critical' FROM alerts WHERE id = n.alert_id), false),"
        "   n.feed_id, n.digest_id",
        {"now": ts(now_ms), "limit": limit},
    )
    return [
        Outgoing(NotificationId(i), a, ContactId(c), ch, at, t, b, crit, digest)
        if feed is None
        else FeedDelivery(NotificationId(i), AlertId(a), FeedId(feed), ch, at, b)
        for i, a, c, ch, at, t, b, crit, feed, digest in await cur.fetchall()
    ]


async def record_result(
    conn: AsyncConn,
    notification_id: NotificationId,
    result: Result,
    *,
    error: str,
    retryable: bool | None,
    duration_ms: float,
) -> bool:
    """The result of an attempt in flight; False if it was recorded already (a retried write
    whose first commit went through after all), so that nothing is planned twice."""
    cur = await conn.execute(
        "UPDATE notifications SET result = %s, error = nullif(%s, ''), retryable = %s,"
        " duration_ms = %s WHERE id = %s AND result = 'sending'",
        (result.value, error, retryable, duration_ms, notification_id),
    )
    return cur.rowcount == 1


async def record_direct(
    conn: AsyncConn, notification_id: NotificationId, page: DirectPage, channel: str
) -> None:
    """A first notice that went out straight from memory: delivered then, on that channel."""
    await conn.execute(
        "UPDATE notifications SET result = 'delivered', channel_index = %s, channel = %s,"
        " sent_at = %s, duration_ms = %s, error = NULL, retryable = NULL"
        " WHERE id = %s AND result = 'sending'",
        (page.channel_index, channel, ts(page.sent_ms), page.duration_ms, notification_id),
    )


async def cancel_pending(conn: AsyncConn, alert_id: AlertId) -> int:
    cur = await conn.execute(
        "UPDATE notifications SET result = 'cancelled', error = 'alert no longer open'"
        " WHERE alert_id = %s AND result = 'pending' AND feed_id IS NULL",
        (alert_id,),
    )
    return cur.rowcount


async def take_finding(conn: AsyncConn, finding_id: int, now_ms: int) -> bool:
    """Mark a stored finding handled; False if it was already (a second hand-over of it)."""
    cur = await conn.execute(
        "UPDATE findings SET handled_at = %s WHERE id = %s AND handled_at IS NULL",
        (ts(now_ms), finding_id),
    )
    return cur.rowcount == 1


async def unhandled_findings(
    conn: AsyncConn, after_id: int, limit: int
) -> list[tuple[int, Finding]]:
    """Stored findings the engine has not handled, oldest first (it takes them up at start)."""
    cur = await conn.execute(
        "SELECT id, resident_id, kind, severity, at, started_at, cleared, device_id, evidence"
        " FROM findings WHERE handled_at IS NULL AND id > %s AND NOT late ORDER BY id LIMIT %s",
        (after_id, limit),
    )
    return [
        (
            int(r[0]),
            Finding(
                ResidentId(r[1]),
                FindingKind(r[2]),
                Severity(r[3]),
                ms(r[4]),
                ms(r[5]),
                cleared=bool(r[6]),
                device_id=DeviceId(r[7]) if r[7] is not None else None,
                evidence=dict(r[8] or {}),
            ),
        )
        for r in await cur.fetchall()
    ]


async def postpone(conn: AsyncConn, alert_id: AlertId, next_ms: int) -> None:
    await conn.execute(
        "UPDATE alerts SET next_action_at = %s WHERE id = %s", (ts(next_ms), alert_id)
    )


async def audit(
    conn: AsyncConn,
    alert_id: AlertId,
    now_ms: int,
    actor: str,
    action: str,
    via: Via,
    detail: Mapping[str, object] | None = None,
) -> int:
    """The audit row's id (a feed's event is known by it)."""
    cur = await conn.execute(
        "INSERT INTO alert_audit (alert_id, at, actor, action, via, detail)"
        " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
        (alert_id, ts(now_ms), actor, action, via.value, Jsonb(dict(detail or {}))),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def lock_alert(conn: AsyncConn, alert_id: AlertId) -> Alert | None:
    cur = await conn.execute(
        f"SELECT {ALERT_COLUMNS} FROM alerts WHERE id = %s FOR UPDATE", (alert_id,)
    )
    row = await cur.fetchone()
    return None if row is None else alert_of(row)


async def lock_due_alerts(conn: AsyncConn, now_ms: int, limit: int) -> list[tuple[Alert, int]]:
    """Open alerts whose next action is due, locked, each with its last notice time."""
    cur = await conn.execute(
        f"SELECT {ALERT_COLUMNS}, coalesce(last_notice_at, opened_at) FROM alerts"
        " WHERE state = 'open' AND next_action_at <= %s ORDER BY next_action_at"
        " LIMIT %s FOR UPDATE SKIP LOCKED",
        (ts(now_ms), limit),
    )
    return [(alert_of(r[:11]), ms(r[11])) for r in await cur.fetchall()]


async def revisit(conn: AsyncConn, severities: Sequence[Severity], now_ms: int) -> int:
    """Open alerts of these severities (not held for quiet hours) due for a look now."""
    cur = await conn.execute(
        "UPDATE alerts SET next_action_at = %s WHERE state = 'open' AND tier >= 0"
        " AND severity = ANY(%s)",
        (ts(now_ms), [s.value for s in severities]),
    )
    return cur.rowcount


async def unreached(conn: AsyncConn, alert_id: AlertId) -> bool:
    """Nobody has been reached and nothing is still on its way (to a person: feeds aside)."""
    cur = await conn.execute(
        "SELECT NOT EXISTS (SELECT 1 FROM notifications WHERE alert_id = %s"
        " AND result IN ('delivered', 'pending', 'sending') AND contact_id IS NOT NULL)",
        (alert_id,),
    )
    row = await cur.fetchone()
    return bool(row and row[0])


async def working_channels(conn: AsyncConn, alert_id: AlertId) -> dict[ContactId, int]:
    """For each contact, the channel that last delivered this alert (reminders use it)."""
    cur = await conn.execute(
        "SELECT DISTINCT ON (contact_id) contact_id, channel_index FROM notifications"
        " WHERE alert_id = %s AND result = 'delivered' AND contact_id IS NOT NULL"
        " ORDER BY contact_id, id DESC",
        (alert_id,),
    )
    return {ContactId(c): i for c, i in await cur.fetchall()}


async def interrupted(conn: AsyncConn, now_ms: int) -> int:
    """Attempts cut off by a stop: recorded as failed and planned again, due now."""
    cur = await conn.execute(
        "WITH cut AS (UPDATE notifications SET result = 'failed', retryable = true,"
        "   error = 'interrupted by a restart' WHERE result = 'sending' RETURNING *)"
        " INSERT INTO notifications (alert_id, digest_id, contact_id, feed_id, audit_id, tier,"
        "   channel_index, channel, attempt, reason, result, title, body, created_at, due_at)"
        " SELECT alert_id, digest_id, contact_id, feed_id, audit_id, tier, channel_index,"
        "   channel, attempt + 1, %s, 'pending', title, body, %s, %s FROM cut",
        (Reason.INTERRUPTED.value, ts(now_ms), ts(now_ms)),
    )
    return cur.rowcount


async def row_for_retry(conn: AsyncConn, notification_id: NotificationId) -> dict[str, Any]:
    cur = await conn.execute(
        "SELECT n.alert_id, n.digest_id, n.contact_id, n.tier, n.channel_index, n.attempt,"
        " n.title, n.body, coalesce(a.severity = 'critical', false), a.state"
        " FROM notifications n LEFT JOIN alerts a ON a.id = n.alert_id WHERE n.id = %s",
        (notification_id,),
    )
    row = await cur.fetchone()
    assert row is not None
    keys = ("alert_id", "digest_id", "contact_id", "tier", "channel_index", "attempt")
    values = dict(zip(keys, row[:6], strict=True))
    values |= {"title": row[6], "body": row[7], "critical": row[8], "state": row[9]}
    return values


async def retry_feed(
    conn: AsyncConn, notification_id: NotificationId, now_ms: int, due_ms: int, oldest_ms: int
) -> bool:
    """The feed event's next attempt, unless the event is older than `oldest_ms` (then False:
    it is given up, and the alert's next event may go)."""
    cur = await conn.execute(
        "INSERT INTO notifications (alert_id, audit_id, feed_id, tier, channel_index, channel,"
        "   attempt, reason, result, title, body, created_at, due_at)"
        " SELECT n.alert_id, n.audit_id, n.feed_id, n.tier, n.channel_index, n.channel,"
        "   n.attempt + 1, %s, 'pending', n.title, n.body, %s, %s"
        " FROM notifications n JOIN alert_audit au ON au.id = n.audit_id"
        " WHERE n.id = %s AND au.at >= %s",
        (Reason.RETRY.value, ts(now_ms), ts(due_ms), notification_id, ts(oldest_ms)),
    )
    return cur.rowcount == 1


def evidence_json(evidence: Mapping[str, object]) -> str:
    return json.dumps(dict(evidence), default=str)


async def digest_attachments(conn: AsyncConn, digest_id: int) -> list[Attachment]:
    cur = await conn.execute(
        "SELECT name, media_type, content FROM digest_attachments WHERE digest_id = %s"
        " ORDER BY name",
        (digest_id,),
    )
    return [Attachment(str(n), str(t), bytes(c)) for n, t, c in await cur.fetchall()]


async def add_digest_attachments(
    conn: AsyncConn, digest_id: int, attachments: Sequence[Attachment]
) -> None:
    for a in attachments:
        await conn.execute(
            "INSERT INTO digest_attachments (digest_id, name, media_type, content)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (digest_id, a.name, a.media_type, a.content),
        )


async def first_page(
    conn: AsyncConn, notification_id: NotificationId, alert_id: AlertId
) -> tuple[Severity, float] | None:
    """If this delivered attempt is the alert's first page to a person: its severity and the
    seconds from the condition's start to the end of the attempt (as alert_answer_times)."""
    cur = await conn.execute(
        "SELECT a.severity, extract(epoch FROM n.sent_at"
        "  + coalesce(n.duration_ms, 0) * interval '1 millisecond' - a.started_at)::float8"
        " FROM notifications n JOIN alerts a ON a.id = n.alert_id"
        " WHERE n.id = %s AND n.contact_id IS NOT NULL AND NOT EXISTS ("
        "  SELECT 1 FROM notifications e WHERE e.alert_id = %s AND e.id <> n.id"
        "  AND e.result = 'delivered' AND e.contact_id IS NOT NULL)",
        (notification_id, alert_id),
    )
    row = await cur.fetchone()
    return None if row is None else (Severity(row[0]), float(row[1]))
