"""Live updates: one poller notices alert changes in the database and wakes every open console."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from psycopg_pool import AsyncConnectionPool

from alerts.store import AsyncConn

log = logging.getLogger(__name__)

POLL_S = 1.0

# Every change a console shows moves one of these: a new audit row (opened, escalated, acked,
# resolved, cleared, by this process, the CLI or another instance) or a repeat joining an alert.
FINGERPRINT = (
    "SELECT (SELECT coalesce(max(id), 0) FROM alert_audit),"
    " (SELECT coalesce(sum(count), 0) FROM alerts WHERE state IN ('open', 'acknowledged'))"
)


class Changes:
    """A version number that moves when alerts change; consoles wait for it to move.

    Polling the database, rather than hooks in the engine, also sees changes made elsewhere
    (the CLI, a second service), and costs one small query a second while anyone watches.
    """

    def __init__(self, pool: AsyncConnectionPool[AsyncConn], *, poll_s: float = POLL_S) -> None:
        self._pool = pool
        self._poll_s = poll_s
        self.version = 0
        self._moved = asyncio.Event()
        self._watchers = 0
        self._seen: tuple[int, int] | None = None
        self.closed = False

    def poke(self) -> None:
        """Something changed here (an ack from the console): wake the consoles now."""
        self.version += 1
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()

    def close(self) -> None:
        """The server is stopping: every stream ends, so the server need not wait for them."""
        self.closed = True
        self.poke()

    async def wait(self, version: int, timeout_s: float) -> int:
        """The version once it differs from `version`, or after `timeout_s` at the latest."""
        self._watchers += 1
        try:
            if self.version == version and not self.closed:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout_s):
                        await self._moved.wait()
        finally:
            self._watchers -= 1
        return self.version

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            if self._watchers == 0:
                continue
            try:
                await self._check()
            except Exception as exc:
                # Consoles keep their last view and say so; the next poll tries again.
                log.warning("console change poll failed: %s", exc)

    async def _check(self) -> None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(FINGERPRINT)
            row = await cur.fetchone()
        assert row is not None
        seen = (int(row[0]), int(row[1]))
        if seen != self._seen:
            # Also on the first look: a stream may have rendered before this poll, and a
            # refresh too many costs nothing while one too few hides an alert.
            self._seen = seen
            self.poke()
