"""When an SOS or a fall cannot be recorded in time, page tier 1 straight from memory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from alerts.config import NEVER_MUTED
from alerts.delivery import Current
from alerts.messages import render
from alerts.model import Alert, AlertId, AlertState, Contact, ContactId, DirectPage, Resident
from alerts.notifier import Notifier
from alerts.routing import step_contacts
from detectors.findings import Finding, FindingKind
from ingest.records import ResidentId

log = logging.getLogger(__name__)

# How long an SOS or fall may wait for the normal path (alert row, outbox, sender) before it
# is paged from memory: well inside the 1 s target when the database answers, short enough
# that an outage costs seconds, not the length of the outage.
GRACE_S = 2.0
# How long the engine may take over one it has taken in hand (the database just back and slow)
# before it is paged directly all the same: a page twice rather than none.
HANDLING_S = 5.0

Key = tuple[ResidentId, FindingKind, int]


@dataclass(slots=True)
class _Waiting:
    finding: Finding
    since: float
    paged: bool = False
    page: asyncio.Task[None] | None = None
    handling: float | None = None  # when the engine took it in hand (monotonic)
    reached: dict[ContactId, DirectPage] = field(default_factory=dict)


class EmergencyFallback:
    """Watches SOS and fall findings until the alert engine has taken them.

    The normal path writes the alert and its outbox rows first and sends only what is
    committed, so with the database down nothing would be sent. An emergency that the engine
    has not taken within GRACE_S goes to its tier-1 contacts here, once, from the routing last
    loaded. The engine still opens the alert when the database is back; the contacts reached
    here are recorded as paged there (`reached`), not paged a second time for the same press.
    """

    def __init__(
        self,
        notifier: Notifier,
        current: Callable[[], Current | None],
        console_url: str,
        clock: Callable[[], int],
        *,
        grace_s: float = GRACE_S,
    ) -> None:
        self._notifier = notifier
        self._current = current
        self._console_url = console_url
        self._clock = clock
        self._grace_s = grace_s
        self._waiting: dict[Key, _Waiting] = {}
        self._pages: set[asyncio.Task[None]] = set()
        self.paged = 0
        # True while the database is known to be away: nothing can be recorded, so no grace.
        self.urgent: Callable[[], bool] = lambda: False

    def watch(self, finding: Finding) -> None:
        if finding.kind in NEVER_MUTED and not finding.cleared:
            key = _key(finding)
            self._waiting.setdefault(key, _Waiting(finding, time.monotonic()))

    def taken(self, finding: Finding) -> None:
        """The engine has recorded it: nothing more to do here."""
        self._waiting.pop(_key(finding), None)

    def claim(self, finding: Finding) -> None:
        """The engine takes this finding in hand: no direct page starts for it meanwhile, for
        HANDLING_S at most (then it is paged directly all the same: twice rather than none)."""
        waiting = self._waiting.get(_key(finding))
        if waiting is not None:
            waiting.handling = time.monotonic()

    async def reached(self, finding: Finding, wait_s: float) -> dict[ContactId, DirectPage]:
        """Whom a direct page reached for this finding (on which channel, when), once a page
        under way has ended or `wait_s` has passed: the engine records them as paged."""
        waiting = self._waiting.get(_key(finding))
        if waiting is None:
            return {}
        if waiting.page is not None and not waiting.page.done():
            # It goes out to the same tier-1 contacts: waiting for it delays no first page.
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                async with asyncio.timeout(wait_s):
                    await asyncio.shield(waiting.page)
        return dict(waiting.reached)

    def release(self, finding: Finding) -> None:
        """The engine could not handle it: paged directly when its grace is over, as before."""
        waiting = self._waiting.get(_key(finding))
        if waiting is not None:
            waiting.handling = None

    async def check(self) -> None:
        """Page whatever has waited past the grace period and was not paged yet."""
        now = time.monotonic()
        grace = 0.0 if self._waiting and self.urgent() else self._grace_s
        for waiting in self._waiting.values():
            if waiting.handling is not None and now - waiting.handling < HANDLING_S:
                continue  # the engine is recording it and will page
            if not waiting.paged and now - waiting.since >= grace:
                waiting.paged = True
                # A task of its own, so a hanging channel holds back no later emergency.
                task = asyncio.create_task(self._page(waiting))
                waiting.page = task
                self._pages.add(task)
                task.add_done_callback(self._pages.discard)

    async def idle(self) -> None:
        """Until the direct pages under way have ended."""
        await asyncio.gather(*self._pages, return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._pages):
            task.cancel()
        await asyncio.gather(*self._pages, return_exceptions=True)

    async def _page(self, waiting: _Waiting) -> None:
        finding = waiting.finding
        try:
            await self._page_tier_one(waiting)
        except Exception:
            log.exception("direct page for %s of %s failed", finding.kind, finding.resident_id)

    async def _page_tier_one(self, waiting: _Waiting) -> None:
        finding = waiting.finding
        current = self._current()
        resident = current.directory.residents.get(finding.resident_id) if current else None
        if current is None or resident is None:
            log.error(
                "%s for %s: no routing in memory to page from", finding.kind, finding.resident_id
            )
            return
        ladder = current.config.ladder(finding.severity)
        contacts = step_contacts(ladder, 0, resident, current.directory.contacts)
        log.error(
            "%s for %s not recorded (%s); paging %d contact(s) directly",
            finding.kind,
            finding.resident_id,
            "the database is away" if self.urgent() else f"not within {self._grace_s:.0f} s",
            len(contacts),
        )
        sent = await asyncio.gather(*(self._send(waiting, resident, c) for c in contacts))
        self.paged += sum(sent)

    async def _send(self, waiting: _Waiting, resident: Resident, contact: Contact) -> bool:
        finding = waiting.finding
        alert = Alert(
            id=AlertId(0),
            resident_id=finding.resident_id,
            kind=finding.kind,
            severity=finding.severity,
            state=AlertState.OPEN,
            opened_ms=self._clock(),
            started_ms=finding.started_ms,
            count=1,
            device_id=finding.device_id,
            evidence=dict(finding.evidence),
            tier=0,
        )
        message = render(alert, resident, contact, self._console_url, self._clock(), reminder=False)
        for index, url in enumerate(contact.channels):
            sent_ms = self._clock()
            delivery = await self._notifier.send(url, message.title, message.body, critical=True)
            if delivery.ok:
                waiting.reached[contact.id] = DirectPage(index, sent_ms, delivery.duration_ms)
                return True
            log.warning("direct page to %s failed: %s", contact.id, delivery.error)
        return False


def _key(finding: Finding) -> Key:
    return (finding.resident_id, finding.kind, finding.started_ms)
