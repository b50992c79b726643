"""The HTTP app: /metrics and /health of the whole service, with the alerts' routes mounted."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable, Generator

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from alerts.host import Web
from bedwatch.metrics import REGISTRY


class HttpUnavailable(RuntimeError):
    """The HTTP address cannot be listened on (in use, not this host's, not allowed)."""


def listen(addr: str) -> socket.socket:
    """The listening socket for http.addr, taken before the service takes any message, so a
    busy port is a clear error at start rather than a server dying later."""
    host, _, port = addr.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, int(port)), family=family, backlog=2048)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise HttpUnavailable(f"http.addr {addr}: {reason}") from exc


def make_app(web: Web, *, broker_up: Callable[[], bool]) -> Starlette:
    """The app; `broker_up` tells /health whether the service's MQTT session is connected."""

    async def metrics(request: Request) -> Response:
        await web.before_scrape()
        return Response(generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def health(request: Request) -> Response:
        broker = broker_up()
        database = await web.database_up()
        body = {"status": "ok" if broker and database else "down"}
        body |= {"broker": _up(broker), "database": _up(database)}
        return JSONResponse(body, 200 if broker and database else 503)

    own = [Route("/metrics", metrics), Route("/health", health)]
    return Starlette(routes=[*web.routes, *own])


def _up(value: bool) -> str:
    return "up" if value else "down"


async def serve(app: Starlette, sock: socket.socket, *, closing: Callable[[], None]) -> None:
    """Serve on a listening socket until cancelled; then finish open requests and return."""
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    server = _QuietServer(config)
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        closing()
        server.should_exit = True  # close the sockets and finish open requests
        await task
        raise
    except SystemExit as exc:
        # uvicorn exits the process on some start-up failures: here that would stop ingest too.
        raise HttpUnavailable(f"the HTTP server stopped (exit {exc.code})") from None


class _QuietServer(uvicorn.Server):
    """uvicorn without its signal handlers: the service owns SIGTERM and SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield
