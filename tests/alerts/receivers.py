"""Real receivers for alert delivery tests: an SMTP server (aiosmtpd) and an HTTP server."""

from __future__ import annotations

import email
import email.policy
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

from tests.support import free_port


@dataclass(frozen=True, slots=True)
class Mail:
    to: tuple[str, ...]
    subject: str
    body: str
    attachments: tuple[tuple[str, str, bytes], ...] = ()  # file name, media type, content


class SmtpReceiver:
    """aiosmtpd on a free port; keeps every message it is handed."""

    def __init__(self) -> None:
        self.port = free_port()
        self.mails: list[Mail] = []
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        part = message.get_body(preferencelist=("plain", "html"))
        body = part.get_content() if part is not None else ""
        files = tuple(
            (str(a.get_filename()), a.get_content_type(), bytes(a.get_payload(decode=True)))
            for a in message.iter_attachments()
        )
        self.mails.append(Mail(tuple(envelope.rcpt_tos), str(message["subject"]), body, files))
        return "250 OK"

    def url(self, to: str) -> str:
        return f"mailto://127.0.0.1:{self.port}?from=bedwatch@example.org&to={to}&mode=insecure"

    def to(self, address: str) -> list[Mail]:
        return [m for m in self.mails if address in m.to]

    def __enter__(self) -> SmtpReceiver:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()


SLOW_S = 1.5


@dataclass
class HttpReceiver:
    """A JSON webhook: /ok/<name> answers 200, /fail/<name> 500, /hang/<name> never answers,
    /slowfail/<name> answers 500 after SLOW_S."""

    port: int = field(default_factory=free_port)
    received: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    arrival_s: dict[str, list[float]] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, mode: str, name: str) -> str:
        return f"json://127.0.0.1:{self.port}/{mode}/{name}"

    def got(self, name: str) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.received.get(name, []))

    def __enter__(self) -> HttpReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                data = self.rfile.read(length)
                _, mode, name = self.path.split("/", 2)
                if mode == "hang":
                    receiver.stopping.wait(30)
                    return
                if mode == "slowfail":
                    receiver.stopping.wait(SLOW_S)
                    mode = "fail"
                with receiver.lock:
                    if mode == "fail":
                        receiver.failures[name] = receiver.failures.get(name, 0) + 1
                    else:
                        receiver.received.setdefault(name, []).append(json.loads(data))
                        receiver.arrival_s.setdefault(name, []).append(time.perf_counter())
                self.send_response(500 if mode == "fail" else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
