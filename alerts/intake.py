"""Stored findings into the alert engine: residents side by side, each one's findings in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from detectors.findings import Finding
from ingest.records import ResidentId

log = logging.getLogger(__name__)

# A finding with the id of its row in `findings` (None: not stored, e.g. in a test).
Stored = tuple[int | None, Finding]
Handle = Callable[[Stored], Awaitable[object]]


class _Lane:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[Stored] = asyncio.Queue()
        # Residents whose oldest finding failed, with everything of theirs that came since.
        self.parked: dict[ResidentId, deque[Stored]] = {}


class FindingIntake:
    """Lanes by resident: one resident's raise and clear, or sos and sos_cancel, are handled in
    the order they were found, and a finding the engine could not take is tried again before
    anything later of that resident, while the other residents go on."""

    def __init__(self, lanes: int = 4, *, retry_s: float = 1.0) -> None:
        self._lanes = [_Lane() for _ in range(lanes)]
        self._retry_s = retry_s
        self._in_hand = 0  # findings being handled now
        self._idle = asyncio.Event()
        self._idle.set()

    def put(self, item: Stored) -> None:
        self._lanes[hash(item[1].resident_id) % len(self._lanes)].queue.put_nowait(item)
        self._idle.clear()

    def clear(self) -> None:
        """Forget what waits (it is all in the database, to be read again in order)."""
        for lane in self._lanes:
            while not lane.queue.empty():
                lane.queue.get_nowait()
            lane.parked.clear()
        self._check_idle()

    @property
    def waiting(self) -> int:
        return sum(
            lane.queue.qsize() + sum(len(q) for q in lane.parked.values()) for lane in self._lanes
        )

    def idle_now(self) -> bool:
        return self._idle.is_set()

    async def idle(self) -> None:
        """Until every finding put here has been handled or parked for a retry."""
        await self._idle.wait()

    def _check_idle(self) -> None:
        if not self._in_hand and all(lane.queue.empty() for lane in self._lanes):
            self._idle.set()

    async def run(self, handle: Handle) -> None:
        """Hand findings to `handle` until cancelled (what is not handled stays here)."""
        async with asyncio.TaskGroup() as tasks:
            for i, lane in enumerate(self._lanes):
                tasks.create_task(self._lane_loop(lane, handle), name=f"alert_intake_{i}")

    async def _lane_loop(self, lane: _Lane, handle: Handle) -> None:
        retry_at = time.monotonic() + self._retry_s
        while True:
            item: Stored | None = None
            wait = max(0.0, retry_at - time.monotonic()) if lane.parked else None
            with contextlib.suppress(TimeoutError):
                item = await asyncio.wait_for(lane.queue.get(), wait)
            if item is not None:
                resident = item[1].resident_id
                waiting = lane.parked.get(resident)
                if waiting is not None:
                    waiting.append(item)
                elif not await self._handled(handle, item):
                    lane.parked[resident] = deque([item])
                    retry_at = time.monotonic() + self._retry_s
                self._check_idle()
            if lane.parked and time.monotonic() >= retry_at:
                await self._retry(lane, handle)
                retry_at = time.monotonic() + self._retry_s

    async def _retry(self, lane: _Lane, handle: Handle) -> None:
        for resident in list(lane.parked):
            waiting = lane.parked[resident]
            while waiting and await self._handled(handle, waiting[0]):
                waiting.popleft()
            if not waiting:
                del lane.parked[resident]

    async def _handled(self, handle: Handle, item: Stored) -> bool:
        self._in_hand += 1
        finding = item[1]
        try:
            await handle(item)
        except Exception:
            # Kept for the next attempt: a lost SOS is the failure that matters most.
            log.exception("finding %s for %s not handled", finding.kind, finding.resident_id)
            return False
        finally:
            self._in_hand -= 1
        return True
