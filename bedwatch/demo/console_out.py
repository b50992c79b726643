"""The demo's terminal: a json:// receiver that shows what people get, and the alert timeline."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TextIO

import psycopg

from detectors.findings import FindingKind

log = logging.getLogger(__name__)

ALERT_NAMES = {
    FindingKind.SOS: "SOS",
    FindingKind.FALL: "fall",
    FindingKind.BED_EXIT_NO_RETURN: "out of bed, not back",
    FindingKind.BREATHING_PAUSE: "breathing pause",
    FindingKind.DEVICE_SILENT: "device offline",
    FindingKind.VITALS_ABSENT: "no vital signs",
    FindingKind.HEART_RATE: "heart rate",
    FindingKind.BREATHING_RATE: "breathing rate",
    FindingKind.SPO2: "low SpO2",
}


def alert_name(kind: str) -> str:
    try:
        return ALERT_NAMES.get(FindingKind(kind), kind)
    except ValueError:
        return kind


class Console:
    """Timeline lines, `wall night  text`, from any thread."""

    def __init__(self, out: TextIO = sys.stdout, *, night_clock: Callable[[], str]) -> None:
        self.out = out
        self.night_clock = night_clock
        self.started = time.monotonic()
        self._lock = threading.Lock()

    def say(self, text: str = "") -> None:
        with self._lock:
            self.out.write(text + "\n")
            self.out.flush()

    def event(self, text: str) -> None:
        elapsed = int(time.monotonic() - self.started)
        self.say(f"{elapsed // 60:2d}:{elapsed % 60:02d}  {self.night_clock():>5}  {text}")


@dataclass
class Received:
    contact_id: str
    title: str
    body: str


@dataclass
class LocalReceiver:
    """A json:// webhook on a free local port, one path per contact: the people's inboxes."""

    console: Console
    names: dict[str, str]
    host: str = "127.0.0.1"
    received: list[Received] = field(default_factory=list)
    _unshown: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def url(self, contact_id: str) -> str:
        assert self._server is not None
        return f"json://{self.host}:{self._server.server_address[1]}/{contact_id}"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                receiver.take(self.path.strip("/"), self.rfile.read(length))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="demo-receiver", daemon=True
        )
        self._thread.start()

    def take(self, contact_id: str, data: bytes) -> None:
        try:
            doc = json.loads(data)
            title, body = str(doc.get("title", "")), str(doc.get("message", ""))
        except (ValueError, AttributeError):
            title, body = "", data.decode(errors="replace")
        with self._lock:
            self.received.append(Received(contact_id, title, body))
            self._unshown.append(self.received[-1])

    def show(self) -> None:
        """Print what arrived since the last call (after the timeline, so alerts come first)."""
        with self._lock:
            unshown, self._unshown = self._unshown, []
        for r in unshown:
            headline = r.title or r.body.strip().split("\n", 1)[0]
            who = self.names.get(r.contact_id, r.contact_id)
            self.console.event(f"     → {who} receives: {headline}")

    def count(self) -> int:
        with self._lock:
            return len(self.received)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One line of the alert audit trail, with what is needed to print it."""

    alert_id: int
    action: str
    actor: str
    via: str
    kind: str
    severity: str
    resident_id: str
    resident: str
    room: str


class Timeline:
    """Polls the alert audit trail and the outbox; prints what changed since the last poll."""

    def __init__(
        self,
        url: str,
        console: Console,
        *,
        names: dict[str, str],
        local_prefix: str,
        on_event: Callable[[AlertEvent], None],
    ) -> None:
        self.url = url
        self.console = console
        self.names = names
        self.local_prefix = local_prefix  # deliveries there are printed by the receiver
        self.on_event = on_event
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        self._audit_seen = 0
        self._sent_floor = 0
        self._sent_seen: set[int] = set()
        self._failing: set[tuple[int, str, str]] = set()  # told once per alert, contact, channel

    def poll(self) -> None:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
        for event in self._audit(self._conn):
            self._print_event(event)
            self.on_event(event)
        self._deliveries(self._conn)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    def _audit(self, conn: psycopg.Connection[tuple[Any, ...]]) -> list[AlertEvent]:
        rows = conn.execute(
            "SELECT au.id, a.id, au.action, au.actor, au.via, a.kind, a.severity, a.resident_id,"
            " coalesce(r.name, ''), coalesce(r.room, '')"
            " FROM alert_audit au JOIN alerts a ON a.id = au.alert_id"
            " LEFT JOIN residents r ON r.id = a.resident_id"
            " WHERE au.id > %s ORDER BY au.id",
            (self._audit_seen,),
        ).fetchall()
        if rows:
            self._audit_seen = int(rows[-1][0])
        return [AlertEvent(*(r[1:])) for r in rows]

    def _print_event(self, e: AlertEvent) -> None:
        what = f"#{e.alert_id} {alert_name(e.kind)}"
        who = self.names.get(e.actor, e.actor)
        if e.action == "opened":
            self.console.event(
                f"▲ ALERT {what} ({e.severity}): {e.resident}, {e.resident_id}, room {e.room}"
            )
        elif e.action == "acknowledged":
            self.console.event(f"✓ {what} acknowledged by {who} (via {e.via})")
        elif e.action == "resolved":
            why = " (the condition ended)" if e.actor == "system" else ""
            self.console.event(f"■ {what} resolved by {who}{why}")
        elif e.action.startswith("escalated"):
            self.console.event(f"↑ {what} {e.action}")
        elif e.action.startswith("reminder"):
            self.console.event(f"… {what} reminder: still not acknowledged")
        elif e.action == "condition cleared":
            self.console.event(f"  {what}: condition over; stays open until a person resolves it")
        elif e.action == "held for quiet hours":
            self.console.event(f"  {what} held for quiet hours")

    def _deliveries(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        rows = conn.execute(
            "SELECT id, alert_id, contact_id, channel, result, coalesce(error, ''), reason"
            " FROM notifications WHERE id >= %s ORDER BY id",
            (self._sent_floor,),
        ).fetchall()
        floor = None
        for nid, alert_id, contact_id, channel, result, error, reason in rows:
            if result in ("pending", "sending"):
                floor = nid if floor is None else floor
                continue
            if nid in self._sent_seen:
                continue
            self._sent_seen.add(nid)
            who = self.names.get(contact_id, contact_id)
            if result == "failed" and (alert_id, contact_id, channel) not in self._failing:
                self._failing.add((alert_id, contact_id, channel))
                self.console.event(
                    f"  ✗ #{alert_id} to {who} via {channel} failed (retried, then the next "
                    f"channel): {error[:100]}"
                )
            elif result == "delivered" and not channel.startswith(self.local_prefix):
                self.console.event(f"     → {who} notified via {channel} ({reason})")
        if rows:
            self._sent_floor = floor if floor is not None else int(rows[-1][0]) + 1


@dataclass(frozen=True, slots=True)
class Summary:
    alerts: list[tuple[int, str, str, str, str]]  # id, kind, resident, state, closed by
    delivered: int
    failed: int
    pending: int


def summary(url: str) -> Summary:
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        alerts = conn.execute(
            "SELECT id, kind, resident_id, state, coalesce(resolved_by, acked_by, '')"
            " FROM alerts ORDER BY id"
        ).fetchall()
        counts: dict[str, int] = dict(
            conn.execute("SELECT result, count(*) FROM notifications GROUP BY result").fetchall()
        )
    return Summary(
        [(int(a[0]), str(a[1]), str(a[2]), str(a[3]), str(a[4])) for a in alerts],
        int(counts.get("delivered", 0)),
        int(counts.get("failed", 0)),
        int(counts.get("pending", 0)) + int(counts.get("sending", 0)),
    )
