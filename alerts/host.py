"""What the alerts component needs from its host: a clock, device commands, a web server."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from starlette.routing import BaseRoute

from ingest.records import EpochMs


@dataclass(frozen=True, slots=True)
class Web:
    """The alerts' part of the HTTP surface, and what the host's /health and /metrics ask of it."""

    routes: Sequence[BaseRoute]  # the ack API, signed links and the console
    database_up: Callable[[], Awaitable[bool]]  # for /health
    before_scrape: Callable[[], Awaitable[None]]  # refreshes gauges read from the database
    closing: Callable[[], None]  # called when the server stops: long-lived streams end


class Host(Protocol):
    def clock(self) -> EpochMs:
        """Now, in epoch milliseconds (the service's clock; tests move it by hand)."""
        ...

    def send_command(self, device_id: str, payload: bytes) -> None:
        """Publish a command to a device (e.g. `sos_ack`) on its `cmd` topic; must not block."""
        ...

    async def serve_http(self, web: Web) -> None:
        """Serve `web` with the host's own routes until cancelled."""
        ...

    def database_away(self) -> bool:
        """True while the host's own writes fail for want of the database (an emergency cannot
        be recorded now: it is paged straight away rather than after a grace period)."""
        ...
