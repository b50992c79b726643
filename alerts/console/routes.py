"""The console's HTTP routes: login, the live alert list, ack and resolve, a resident's night,
and the operations view for supervisors."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime
from importlib import resources
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import BaseRoute, Route

from alerts.console import ops, queries, views
from alerts.console.auth import COOKIE, SESSION_TTL_S, Session, Sessions, token_digest
from alerts.console.live import Changes
from alerts.console.text import LANG_COOKIE, Lang, Words, choose
from alerts.digest import ReportMaker
from alerts.engine import Engine, Outcome
from alerts.model import AlertId, Contact, ContactId, Via
from alerts.operations import Operations, Period, snapshot
from alerts.store import AsyncConn
from ingest.records import ResidentId
from ingest.registry import SUPERVISOR

log = logging.getLogger(__name__)

RESIDENTS_EVERY_S = 5.0  # the status cards and the fleet follow the telemetry at this pace
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
Refresh = Callable[[], Awaitable[str]]  # the events a stream sends next
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
OUTCOME_WORD = {
    Outcome.DONE: "done",
    Outcome.ALREADY: "already",
    Outcome.RESOLVED: "closed",
    Outcome.UNKNOWN: "not_found",
    Outcome.FORBIDDEN: "not_found",
}
OUTCOME_STATUS = {
    Outcome.DONE: 200,
    Outcome.ALREADY: 200,
    Outcome.RESOLVED: 409,
    Outcome.UNKNOWN: 404,
    Outcome.FORBIDDEN: 404,  # another team's alert is not confirmed to exist
}


class Console:
    """The routes with what they share: the engine, the pool, the session keys, the changes."""

    def __init__(
        self,
        engine: Engine,
        pool: AsyncConnectionPool[AsyncConn],
        sessions: Sessions,
        changes: Changes,
        *,
        secure_cookies: bool,
        reports: ReportMaker | None = None,
    ) -> None:
        self.engine = engine
        self.pool = pool
        self.sessions = sessions
        self.changes = changes
        self.secure_cookies = secure_cookies
        self.reports = reports  # draws sleep reports (the application's, in a process of its own)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", _to_console),
            Route("/console", _to_console),
            Route("/console/", self.home),
            Route("/console/login", self.login, methods=["GET", "POST"]),
            Route("/console/logout", self.logout, methods=["POST"]),
            Route("/console/events", self.events),
            Route("/console/alerts/{alert_id:int}/{action:str}", self.act, methods=["POST"]),
            Route("/console/residents/{resident_id:str}/night", self.night),
            Route("/console/residents/{resident_id:str}/report.pdf", self.report),
            Route("/console/operations", self.operations),
            Route("/console/operations/events", self.operations_events),
            Route("/console/static/{name:str}", self.static),
        ]

    # --- sessions and language

    async def session(self, request: Request) -> Session | None:
        """The logged-in contact, if the cookie is good and the login token still is."""
        found = self.sessions.verify(request.cookies.get(COOKIE), self.engine.clock())
        if found is None or found.contact_id not in self.engine.directory.contacts:
            return None
        async with self.pool.connection() as conn:
            if not await queries.token_valid(conn, found.contact_id, found.token_sha256):
                return None
        return found

    def words(self, request: Request, contact: ContactId | None) -> Words:
        known = self.engine.directory.contacts.get(contact) if contact else None
        lang = choose(
            request.cookies.get(LANG_COOKIE),
            request.query_params.get("lang"),
            known.language if known else None,
        )
        return Words(lang)

    def _html(self, request: Request, text: str, status: int = 200) -> Response:
        response = HTMLResponse(text, status, headers=HEADERS)
        toggled = request.query_params.get("lang")
        if toggled in (Lang.ZH, Lang.EN):
            response.set_cookie(
                LANG_COOKIE, toggled, max_age=365 * 86_400, path="/console",
                samesite="strict", secure=self.secure_cookies,
            )  # fmt: skip
        return response

    def _nav(self, w: Words, request: Request, session: Session | None) -> str:
        contact = self.engine.directory.contacts.get(session.contact_id) if session else None
        csrf = self.sessions.form_token(session) if session else None
        name = contact.name if contact else None
        supervisor = contact is not None and contact.role == SUPERVISOR
        return views.nav(w, name=name, csrf=csrf, here=request.url.path, supervisor=supervisor)

    # --- pages

    async def login(self, request: Request) -> Response:
        if request.method == "GET":
            return self._login_page(request, failed=False, contact_id="")
        if not _same_origin(request):
            return Response("cross-site request refused", 403)
        form = await _form(request)
        contact_id = ContactId(form.get("contact_id", "").strip())
        digest = token_digest(form.get("token", "").strip())
        async with self.pool.connection() as conn:
            ok = await queries.token_valid(conn, contact_id, digest)
        if not ok or contact_id not in self.engine.directory.contacts:
            return self._login_page(request, failed=True, contact_id=contact_id, status=401)
        session = self.sessions.issue(contact_id, digest, self.engine.clock())
        response = RedirectResponse("/console/", 303, headers=HEADERS)
        response.set_cookie(
            COOKIE, session.cookie, max_age=SESSION_TTL_S, path="/console", httponly=True,
            samesite="strict", secure=self.secure_cookies,
        )  # fmt: skip
        if form.get("lang") in (Lang.ZH, Lang.EN):
            response.set_cookie(
                LANG_COOKIE, form["lang"], max_age=365 * 86_400, path="/console",
                samesite="strict", secure=self.secure_cookies,
            )  # fmt: skip
        return response

    def _login_page(
        self, request: Request, *, failed: bool, contact_id: str, status: int = 200
    ) -> Response:
        w = self.words(request, None)
        body = views.login(w, failed=failed, contact_id=contact_id)
        nav = self._nav(w, request, None)
        return self._html(request, views.page(w, body=body, nav=nav, page_class="login"), status)

    async def logout(self, request: Request) -> Response:
        session = await self.session(request)
        form = await _form(request)
        if session is not None and not self.sessions.form_ok(session, form.get("csrf", "")):
            return Response("form token missing or wrong", 403)
        response = RedirectResponse("/console/login", 303, headers=HEADERS)
        response.delete_cookie(COOKIE, path="/console")
        return response

    async def home(self, request: Request) -> Response:
        session = await self.session(request)
        if session is None:
            return RedirectResponse("/console/login", 303)
        w = self.words(request, session.contact_id)
        alerts, residents = await self._fragments(w, session)
        body = views.console(w, alerts=alerts, residents=residents)
        nav = self._nav(w, request, session)
        return self._html(request, views.page(w, body=body, nav=nav, page_class="home"))

    async def _fragments(self, w: Words, session: Session) -> tuple[str, str]:
        return await self._alerts_html(w, session), await self._residents_html(w, session)

    async def _alerts_html(self, w: Words, session: Session) -> str:
        async with self.pool.connection() as conn:
            rows = await queries.active_alerts(conn, session.contact_id)
        names = {str(c.id): c.name for c in self.engine.directory.contacts.values()}
        return views.alert_list(w, rows, self.sessions.form_token(session), self._now(), names)

    async def _residents_html(self, w: Words, session: Session) -> str:
        now = self._now()
        async with self.pool.connection() as conn:
            people = await queries.residents(conn, session.contact_id, now)
        return views.resident_list(w, people, now)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.engine.clock() / 1000, UTC)

    async def night(self, request: Request) -> Response:
        session = await self.session(request)
        if session is None:
            return RedirectResponse("/console/login", 303)
        w = self.words(request, session.contact_id)
        rid = ResidentId(request.path_params["resident_id"])
        now = self._now()
        async with self.pool.connection() as conn:
            found = await queries.residents(conn, session.contact_id, now, rid)
            if not found:
                return self._html(request, views.page(w, body=w("not_found")), 404)
            tz = found[0].timezone
            today = queries.latest_night(now, tz)
            try:
                day = date.fromisoformat(request.query_params["night"])
            except (KeyError, ValueError):
                day = await queries.night_with_data(conn, rid, now, tz)
            data = await queries.night(conn, rid, day, found[0].timezone)
        body = views.night(w, found[0], data, today)
        nav = self._nav(w, request, session)
        return self._html(request, views.page(w, body=body, nav=nav, page_class="night-page"))

    # --- the operations view (supervisors)

    async def operations(self, request: Request) -> Response:
        session = await self.session(request)
        if session is None:
            return RedirectResponse("/console/login", 303)
        w = self.words(request, session.contact_id)
        contact = self._supervisor(session)
        try:
            view = self._ops_view(request, contact)
        except ops.Refused:
            return self._html(request, views.page(w, body=w("not_found")), 404)
        except ValueError:
            return self._html(request, views.page(w, body=w("bad_period")), 400)
        assert contact is not None
        figures = await self._ops_figures(view)
        now = ops.now_section(w, figures, view)
        period = ops.period_section(w, figures, view, self.engine.directory.residents)
        body = ops.body(w, view, contact.areas, now=now, period=period)
        nav = self._nav(w, request, session)
        return self._html(request, views.page(w, body=body, nav=nav, page_class="operations"))

    async def operations_events(self, request: Request) -> Response:
        session = await self.session(request)
        if session is None:
            return Response("log in first", 401)
        contact = self._supervisor(session)
        try:
            self._ops_view(request, contact)
        except (ops.Refused, ValueError):
            return Response("not found", 404)
        w = self.words(request, session.contact_id)

        async def changed() -> str:
            # Chosen again each time: "the last 30 days" moves on at midnight.
            view = self._ops_view(request, contact)
            figures = await self._ops_figures(view)
            period = ops.period_section(w, figures, view, self.engine.directory.residents)
            return _event("ops-period", period) + _event(
                "ops-now", ops.now_section(w, figures, view)
            )

        async def tick() -> str:
            view = self._ops_view(request, contact)
            now = self._now()
            # An empty period: its figures cost nothing, and only "now" is sent.
            figures = await self._ops_figures(view, Period(now, now))
            return _event("ops-now", ops.now_section(w, figures, view))

        return _streaming(self._stream(request, changed, tick))

    def _supervisor(self, session: Session) -> Contact | None:
        contact = self.engine.directory.contacts.get(session.contact_id)
        return contact if contact is not None and contact.role == SUPERVISOR else None

    def _ops_view(self, request: Request, contact: Contact | None) -> ops.View:
        """The view asked for; Refused for anyone but a supervisor or outside their areas."""
        if contact is None:
            raise ops.Refused(request.url.path)  # not found, as another team's resident is
        zone = ops.zone_of(self.engine.directory.residents.values(), contact.areas)
        today = self._now().astimezone(ZoneInfo(zone)).date()
        return ops.choose(request.query_params, contact.areas, zone, today)

    async def _ops_figures(self, view: ops.View, period: Period | None = None) -> Operations:
        async with self.pool.connection() as conn:
            return await snapshot(
                conn, self.engine.config, view.areas, period or view.period, self._now(),
                depth=view.depth,
            )  # fmt: skip

    async def report(self, request: Request) -> Response:
        """A resident's sleep report for a night, as PDF: what a digest links to."""
        session = await self.session(request)
        if session is None:
            return RedirectResponse("/console/login", 303)
        w = self.words(request, session.contact_id)
        rid = ResidentId(request.path_params["resident_id"])
        async with self.pool.connection() as conn:
            found = await queries.residents(conn, session.contact_id, self._now(), rid)
            if not found or self.reports is None:
                return self._html(request, views.page(w, body=w("not_found")), 404)
            try:
                night = date.fromisoformat(request.query_params["night"])
            except (KeyError, ValueError):
                night = await queries.night_with_data(conn, rid, self._now(), found[0].timezone)
        try:
            [pdf] = await self.reports([(rid, night, w.lang.value)])
        except Exception as exc:
            log.warning("sleep report of %s for %s not drawn: %s", rid, night, exc)
            return self._html(request, views.page(w, body=w("not_found")), 503)
        name = f"sleep-{rid}-{night.isoformat()}.pdf"
        headers = {**HEADERS, "Content-Disposition": f'inline; filename="{name}"'}
        return Response(pdf, media_type="application/pdf", headers=headers)

    # --- actions

    async def act(self, request: Request) -> Response:
        session = await self.session(request)
        if session is None:
            return JSONResponse({"error": "log in first"}, 401)
        form = await _form(request)
        if not _same_origin(request) or not self.sessions.form_ok(session, form.get("csrf", "")):
            return JSONResponse({"error": "form token missing or wrong"}, 403)
        action = request.path_params["action"]
        alert_id = AlertId(request.path_params["alert_id"])
        if action == "ack":
            decision = await self.engine.acknowledge(alert_id, session.contact_id, Via.CONSOLE)
        elif action == "resolve":
            decision = await self.engine.resolve(alert_id, session.contact_id, Via.CONSOLE)
        else:
            return JSONResponse({"error": "unknown action"}, 404)
        self.changes.poke()
        if "application/json" not in request.headers.get("accept", ""):
            return RedirectResponse("/console/", 303)
        w = self.words(request, session.contact_id)
        body = {"outcome": decision.outcome.value, "message": w(OUTCOME_WORD[decision.outcome])}
        return JSONResponse(body, OUTCOME_STATUS[decision.outcome])

    # --- live stream

    async def events(self, request: Request) -> Response:
        session = await self.session(request)
        if session is None:
            return Response("log in first", 401)
        w = self.words(request, session.contact_id)

        async def changed() -> str:
            alerts = _event("alerts", await self._alerts_html(w, session))
            return alerts + await tick()

        async def tick() -> str:
            return _event("residents", await self._residents_html(w, session))

        return _streaming(self._stream(request, changed, tick))

    async def _stream(
        self, request: Request, changed: Refresh, tick: Refresh
    ) -> AsyncIterator[str]:
        """`changed()` at once and on every alert change, `tick()` every few seconds between
        (what changed() sends includes what tick() does)."""
        version = self.changes.version
        yield "retry: 2000\n\n"
        yield await changed()
        shown = time.monotonic()
        while not self.changes.closed:
            latest = await self.changes.wait(version, RESIDENTS_EVERY_S)
            if self.changes.closed:
                return
            if await self.session(request) is None:
                yield _event("logout", "")
                return
            if latest != version:
                version = latest
                shown = time.monotonic()
                yield await changed()
            elif time.monotonic() - shown >= RESIDENTS_EVERY_S:
                shown = time.monotonic()
                yield await tick()

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        found = _static(name)
        if found is None:
            return Response("not found", 404)
        headers = {**HEADERS, "Cache-Control": "max-age=300"}
        return Response(found, media_type=STATIC_TYPES[name[name.rfind(".") :]], headers=headers)


async def _to_console(request: Request) -> Response:
    return RedirectResponse("/console/", 303)


def _static(name: str) -> bytes | None:
    return _static_files().get(name)


@functools.cache
def _static_files() -> dict[str, bytes]:
    """Every static file, read once: a name a client makes up is looked up, never cached."""
    folder = resources.files("alerts.console") / "static"
    return {
        entry.name: entry.read_bytes()
        for entry in folder.iterdir()
        if entry.is_file()
        and not entry.name.startswith(".")
        and entry.name[entry.name.rfind(".") :] in STATIC_TYPES
    }


def _streaming(events: AsyncIterator[str]) -> Response:
    headers = {**HEADERS, "X-Accel-Buffering": "no"}  # a proxy must not hold events back
    return StreamingResponse(events, media_type="text/event-stream", headers=headers)


def _event(name: str, data: str) -> str:
    lines = "".join(f"data: {line}\n" for line in (data.splitlines() or [""]))
    return f"event: {name}\n{lines}\n"


async def _form(request: Request) -> dict[str, str]:
    """A url-encoded form, first values only (no multipart: the console never uploads)."""
    body = await request.body()
    return {k: v[0] for k, v in parse_qs(body.decode(errors="replace")).items()}


def _same_origin(request: Request) -> bool:
    """No Origin (older browsers, curl) passes; one naming another host does not."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")
