"""The feeds' read-only API: what a feed's areas hold now, and the operations figures for them."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from alerts import store
from alerts.console.auth import token_digest
from alerts.engine import Engine
from alerts.feed import ALERT_COLUMNS, ALERT_FIELDS, Feed, load_feeds, rfc3339
from alerts.model import OFFLINE_AFTER_S, FeedId
from alerts.operations import AreaFigures, Operations, Period, snapshot

DEFAULT_PERIOD = timedelta(days=1)
LONGEST_PERIOD = timedelta(days=400)
DEPTH_MAX = 5
# Fields of the operations figures a feed does not get: residents' names and rooms stay here.
_PRIVATE = frozenset({"name", "room"})

_RESIDENTS = (
    "SELECT id, area FROM residents WHERE active AND area_within(area, %(areas)s) ORDER BY id"
)
# Online as the fleet figures count it: heard within the kind's offline threshold, and its latest
# status not 'offline'.
_DEVICES = (
    "SELECT d.resident_id, d.id, d.kind, h.last_seen_at,"
    " coalesce(h.last_seen_at > %(now)s - CASE d.kind WHEN 'mattress' THEN %(pad_s)s"
    "   ELSE %(band_s)s END * interval '1 second' AND st.state IS DISTINCT FROM 'offline', false)"
    " FROM devices d JOIN residents r ON r.id = d.resident_id"
    " LEFT JOIN device_health h ON h.device_id = d.id"
    " LEFT JOIN LATERAL (SELECT state FROM device_status WHERE device_id = d.id"
    "   AND time <= %(now)s ORDER BY time DESC LIMIT 1) st ON true"
    " WHERE d.active AND r.active AND area_within(r.area, %(areas)s) ORDER BY d.id"
)
_ALERTS = (
    f"SELECT {ALERT_COLUMNS} FROM alerts a JOIN residents r ON r.id = a.resident_id"
    " WHERE a.state IN ('open', 'acknowledged') AND r.active AND area_within(r.area, %(areas)s)"
    " ORDER BY a.opened_at, a.id"
)


class _Refused(Exception):
    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.response = JSONResponse(
            {"error": error},
            status,
            headers={"WWW-Authenticate": "Bearer"} if status == 401 else {},
        )


def feed_routes(engine: Engine, pool: AsyncConnectionPool[store.AsyncConn]) -> list[BaseRoute]:
    """GET /api/v1/feed/state and /api/v1/feed/figures, for a feed's token (docs/openapi.yaml)."""

    async def state(request: Request) -> Response:
        now = store.ts(engine.clock())
        async with pool.connection() as conn:
            try:
                feed = await _feed_of(conn, request)
            except _Refused as refused:
                return refused.response
            params = {"now": now, "areas": list(feed.areas)}
            params |= {"pad_s": OFFLINE_AFTER_S["mattress"], "band_s": OFFLINE_AFTER_S["wristband"]}
            residents = await (await conn.execute(_RESIDENTS, params)).fetchall()
            devices = await (await conn.execute(_DEVICES, params)).fetchall()
            alerts = await (await conn.execute(_ALERTS, params)).fetchall()
        held: dict[str, list[dict[str, Any]]] = {}
        for resident, *device in devices:
            keys = ("id", "kind", "last_seen_at", "online")
            held.setdefault(resident, []).append(dict(zip(keys, device, strict=True)))
        body = {
            "feed": feed.id,
            "areas": list(feed.areas),
            "at": now,
            "residents": [{"id": i, "area": a, "devices": held.get(i, [])} for i, a in residents],
            "alerts": [dict(zip(ALERT_FIELDS, row, strict=True)) for row in alerts],
        }
        return JSONResponse(_plain(body))

    async def figures(request: Request) -> Response:
        now = store.ts(engine.clock())
        async with pool.connection() as conn:
            try:
                feed = await _feed_of(conn, request)
                period, depth = _asked(request.query_params, now)
            except _Refused as refused:
                return refused.response
            ops = await snapshot(conn, engine.config, feed.areas, period, now, depth=depth)
        return JSONResponse(_plain(figures_body(feed, ops)))

    return [
        Route("/api/v1/feed/state", state, methods=["GET"]),
        Route("/api/v1/feed/figures", figures, methods=["GET"]),
    ]


async def _feed_of(conn: store.AsyncConn, request: Request) -> Feed:
    """The feed whose token the request bears; a contact's token is refused, as is a feed no
    longer in the site file."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise _Refused(401, "a feed token is required (Authorization: Bearer ...)")
    digest = token_digest(token)
    cur = await conn.execute(
        "SELECT feed_id FROM feed_tokens WHERE token_sha256 = %s AND revoked_at IS NULL", (digest,)
    )
    row = await cur.fetchone()
    if row is None:
        cur = await conn.execute("SELECT 1 FROM contact_tokens WHERE token_sha256 = %s", (digest,))
        if await cur.fetchone() is not None:
            raise _Refused(403, "a contact's token does not read a feed")
        raise _Refused(401, "not a valid feed token (unknown or revoked)")
    feed = (await load_feeds(conn)).get(FeedId(row[0]))
    if feed is None:
        raise _Refused(403, f"feed {row[0]!r} is no longer in the site file")
    return feed


def _asked(query: Mapping[str, str], now: datetime) -> tuple[Period, int]:
    """The period [from, to) and the grouping depth of a figures request."""
    end = _time(query, "to") or now
    start = _time(query, "from") or end - DEFAULT_PERIOD
    if not start < end or end - start > LONGEST_PERIOD:
        raise _Refused(400, f"from must be before to, at most {LONGEST_PERIOD.days} days before")
    depth = query.get("depth", "1")
    if not depth.isdigit() or not 1 <= int(depth) <= DEPTH_MAX:
        raise _Refused(400, f"depth: a whole number from 1 to {DEPTH_MAX}")
    return Period(start, end), int(depth)


def _time(query: Mapping[str, str], key: str) -> datetime | None:
    text = query.get(key)
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise _Refused(
            400, f"{key}: an RFC 3339 time with its offset, e.g. 2026-11-01T00:00:00Z ('+' as %2B)"
        )
    return value


def figures_body(feed: Feed, ops: Operations) -> dict[str, Any]:
    """The operations figures as the feed gives them (alerts/operations.py defines each)."""
    return {
        "feed": feed.id,
        "areas": list(ops.areas),
        "depth": ops.depth,
        "at": ops.now,
        "from": ops.period.start,
        "to": ops.period.end,
        "overall": _area(ops.overall),
        "groups": [_area(g) for g in ops.groups],
        "workers": [_public(w) for w in ops.workers],
        "unanswered": [_public(u) for u in ops.unanswered],
        "out_of_bed": [_public(o) for o in ops.out_of_bed],
    }


def _area(figures: AreaFigures) -> dict[str, Any]:
    body = _public(figures)
    body["open_total"] = figures.open_total
    for severity, answers in figures.answers.items():
        body["answers"][severity] |= {
            "share_60s": answers.share_60s,
            "share_180s": answers.share_180s,
        }
    return body


def _public(value: Any) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(value).items() if k not in _PRIVATE}


def _plain(value: Any) -> Any:
    """JSON-ready: times as RFC 3339 in UTC."""
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
