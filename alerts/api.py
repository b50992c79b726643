"""The alerts' HTTP routes: the ack API, signed links and the console (the host adds the rest)."""

from __future__ import annotations

import asyncio
import html
import logging
import math
import time
from typing import Any
from urllib.parse import parse_qs

import psycopg
from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from alerts.console import Console
from alerts.console.auth import token_digest
from alerts.engine import Decision, Engine, Outcome
from alerts.feed_api import feed_routes
from alerts.links import LinkError, Links
from alerts.metrics import ALERT_COUNTS
from alerts.model import AlertId, ContactId, Via
from ingest.records import ms_to_datetime

log = logging.getLogger(__name__)

AsyncConn = psycopg.AsyncConnection[tuple[Any, ...]]
STATUS = {
    Outcome.DONE: 200,
    Outcome.ALREADY: 200,
    Outcome.RESOLVED: 409,
    Outcome.UNKNOWN: 404,
    Outcome.FORBIDDEN: 403,
}
HEALTH_DB_TIMEOUT_S = 2.0
PROBE_EVERY_S = 2.0
# token_digest: tokens.py issues with it
__all__ = ["DatabaseProbe", "make_routes", "token_digest"]


async def contact_for_token(pool: AsyncConnectionPool[AsyncConn], token: str) -> ContactId | None:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT t.contact_id FROM contact_tokens t JOIN contacts c ON c.id = t.contact_id"
            " WHERE t.token_sha256 = %s AND t.revoked_at IS NULL AND c.active",
            (token_digest(token),),
        )
        row = await cur.fetchone()
    return None if row is None else ContactId(row[0])


async def link_honoured(
    pool: AsyncConnectionPool[AsyncConn], contact_id: ContactId, issued_ms: int
) -> bool:
    """The contact is active and has not had its tokens and links revoked since the link was
    made."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT c.active AND NOT EXISTS (SELECT 1 FROM link_revocations r"
            "  WHERE r.contact_id = c.id AND r.revoked_at >= %s)"
            " FROM contacts c WHERE c.id = %s",
            (ms_to_datetime(issued_ms), contact_id),
        )
        row = await cur.fetchone()
    return bool(row and row[0])


def make_routes(
    engine: Engine,
    links: Links,
    pool: AsyncConnectionPool[AsyncConn],
    *,
    console: Console | None = None,
) -> list[BaseRoute]:
    """The ack API for contacts' tokens, the pages behind signed links, the feeds' read-only API
    for feeds' tokens, and the console."""

    async def act(request: Request) -> Response:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        contact = await contact_for_token(pool, token) if scheme.lower() == "bearer" else None
        if contact is None:
            return JSONResponse({"error": "a valid contact token is required"}, 401)
        try:
            alert_id = AlertId(int(request.path_params["alert_id"]))
        except ValueError:
            return JSONResponse({"error": "alert id must be a number"}, 404)
        action = request.path_params["action"]
        decision = await _do(engine, action, alert_id, contact, Via.API)
        return _json(decision, alert_id, action, contact)

    async def link_page(request: Request) -> Response:
        try:
            claim = links.verify(request.path_params["token"], engine.clock())
        except LinkError as exc:
            return HTMLResponse(_page(str(exc), ""), 403)
        if not await link_honoured(pool, claim.contact_id, links.issued_ms(claim)):
            return HTMLResponse(_page("link no longer valid", ""), 403)
        if request.method == "GET":
            # A page with buttons rather than an ack on GET: link previews must not acknowledge.
            return HTMLResponse(_page(f"Alert {claim.alert_id}", _buttons()))
        form = parse_qs((await request.body()).decode(errors="replace"))
        action = form.get("action", ["ack"])[0]
        if action not in ("ack", "resolve"):
            return HTMLResponse(_page("unknown action", ""), 400)
        decision = await _do(engine, action, claim.alert_id, claim.contact_id, Via.LINK)
        text = f"{action}: {decision.outcome.value} / 已{_ZH[action]}"
        return HTMLResponse(_page(text, ""), STATUS[decision.outcome])

    routes: list[BaseRoute] = [
        Route("/api/v1/alerts/{alert_id}/{action:str}", act, methods=["POST"]),
        Route("/a/{token}", link_page, methods=["GET", "POST"]),
    ]
    return routes + feed_routes(engine, pool) + (console.routes() if console else [])


class DatabaseProbe:
    """What /health and /metrics ask of the database, asked at most every `every_s` however
    often they are scraped (they need no login), on the web's own pool."""

    def __init__(self, pool: AsyncConnectionPool[AsyncConn], *, every_s: float = PROBE_EVERY_S):
        self._pool = pool
        self._every_s = every_s
        self._lock = asyncio.Lock()
        self._up = False
        self._up_at = -math.inf
        self._counted_at = -math.inf

    async def up(self) -> bool:
        """The database answered within HEALTH_DB_TIMEOUT_S, at the last look."""
        async with self._lock:
            if time.monotonic() - self._up_at >= self._every_s:
                self._up = await self._select_one()
                self._up_at = time.monotonic()
            return self._up

    async def refresh_counts(self) -> None:
        """Count open alerts for /metrics. On failure the other series are still worth having;
        the alert counts keep their last value."""
        async with self._lock:
            if time.monotonic() - self._counted_at < self._every_s:
                return
            self._counted_at = time.monotonic()
            try:
                async with asyncio.timeout(HEALTH_DB_TIMEOUT_S), self._pool.connection() as conn:
                    await ALERT_COUNTS.refresh(conn)
            except Exception as exc:
                log.warning("alert counts not refreshed for /metrics: %s", exc)

    async def _select_one(self) -> bool:
        try:
            async with asyncio.timeout(HEALTH_DB_TIMEOUT_S), self._pool.connection() as conn:
                await conn.execute("SELECT 1")
        except Exception:
            return False
        return True


_ZH = {"ack": "确认", "resolve": "处理"}


async def _do(
    engine: Engine, action: str, alert_id: AlertId, contact: ContactId, via: Via
) -> Decision:
    if action == "ack":
        return await engine.acknowledge(alert_id, contact, via)
    if action == "resolve":
        return await engine.resolve(alert_id, contact, via)
    return Decision(Outcome.UNKNOWN)


def _json(decision: Decision, alert_id: AlertId, action: str, contact: ContactId) -> Response:
    body: dict[str, object] = {
        "alert": alert_id,
        "action": action,
        "outcome": decision.outcome.value,
        "by": contact,
    }
    if decision.alert is not None and decision.outcome is not Outcome.FORBIDDEN:
        body["state_before"] = decision.alert.state.value
    return JSONResponse(body, STATUS[decision.outcome])


def _buttons() -> str:
    return (
        '<form method="post"><button name="action" value="ack">确认 Acknowledge</button> '
        '<button name="action" value="resolve">已处理 Resolve</button></form>'
    )


def _page(text: str, extra: str) -> str:
    return (
        '<!doctype html><meta charset="utf-8"><meta name="viewport" '
        'content="width=device-width"><title>BedWatch</title>'
        f"<h1>{html.escape(text)}</h1>{extra}"
    )
