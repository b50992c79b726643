"""The alert pipeline: inhibit → hold (quiet hours) → dedupe → route → escalate, in the database."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

from psycopg_pool import AsyncConnectionPool

from alerts import feed, store
from alerts import metrics as alert_metrics
from alerts.config import NEVER_MUTED, AlertConfig
from alerts.delivery import Current, Sender
from alerts.directory import Directory, load_directory
from alerts.links import Links
from alerts.messages import render
from alerts.model import (
    Alert,
    AlertId,
    AlertState,
    Contact,
    ContactId,
    DirectPage,
    Event,
    Outgoing,
    Reason,
    Via,
)
from alerts.notifier import redact
from alerts.routing import (
    escalation_due,
    inhibiting_rules,
    next_action_ms,
    on_ladder,
    quiet_until_ms,
    reached_contacts,
    reminder_due,
    step_contacts,
)
from detectors.findings import Finding, FindingKind, Severity

log = logging.getLogger(__name__)

# Whom a direct page already reached for a finding, and how.
Reached = Callable[[], Awaitable[Mapping[ContactId, DirectPage]]]

SYSTEM = "system"
DUE_BATCH = 100
ACT_RETRY_MS = 30_000  # an alert whose escalation step failed is looked at again after this


class Outcome(StrEnum):
    DONE = "done"
    ALREADY = "already"
    RESOLVED = "resolved"  # too late: the alert is closed
    UNKNOWN = "unknown"
    FORBIDDEN = "forbidden"


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    alert: Alert | None = None


# Called with (wristband id, alert id) when an SOS is taken by a person.
SosAck = Callable[[str, AlertId], None]


class Engine:
    """Turns findings into alert rows and outbox rows; acts on acks; runs what is due."""

    def __init__(
        self,
        pool: AsyncConnectionPool[store.AsyncConn],
        sender: Sender,
        links: Links,
        *,
        clock: Callable[[], int],
        current: Current,
        on_sos_ack: SosAck | None = None,
    ) -> None:
        self._pool = pool
        self._sender = sender
        self._links = links
        self.clock = clock
        self.current = current
        self._on_sos_ack = on_sos_ack

    @property
    def config(self) -> AlertConfig:
        return self.current.config

    @property
    def directory(self) -> Directory:
        return self.current.directory

    async def handle(
        self,
        finding: Finding,
        finding_id: int | None = None,
        reached: Reached | None = None,
    ) -> AlertId | None:
        """One finding through the pipeline; the id of the alert it opened or joined.

        `finding_id`: its row in `findings`, marked handled in the same transaction, so a finding
        handed over twice (taken up again after a crash) is acted on once. `reached`: asked just
        before a first notice is planned, the contacts already paged for it directly (it was not
        recorded in time); their first notice is recorded as delivered, not sent again.
        """
        if finding.resident_id not in self.directory.residents:
            # Registered since the routing was last loaded (it reloads every few seconds).
            async with self._pool.connection() as conn:
                self.current.directory = await load_directory(conn)
            if finding.resident_id not in self.directory.residents:
                if finding.kind in NEVER_MUTED and not finding.cleared:
                    # Raised, so the caller keeps it and tries again: never dropped silently.
                    raise LookupError(f"{finding.kind} for unknown resident {finding.resident_id}")
                log.warning("%s for unknown resident %s", finding.kind, finding.resident_id)
                if finding_id is not None:
                    async with self._pool.connection() as conn:
                        await store.take_finding(conn, finding_id, self.clock())
                return None
        received = time.perf_counter()
        now = self.clock()
        async with self._pool.connection() as conn, conn.transaction():
            if finding_id is not None and not await store.take_finding(conn, finding_id, now):
                return None  # handled before
            if finding.cleared:
                await self._cleared(conn, finding, now)
                return None
            if await self._inhibited(conn, finding):
                log.info("%s for %s inhibited", finding.kind, finding.resident_id)
                return None
            up = await store.upsert_alert(conn, finding, now)
            alert = up.alert
            outgoing = []
            if up.inserted:
                event = await store.audit(conn, alert.id, now, SYSTEM, "opened", Via.SYSTEM)
                await feed.publish(conn, event, Event.OPENED, now)
                outgoing = await self._first_notice(conn, alert, now, Reason.OPENED)
                outgoing = await self._paged_directly(conn, alert, outgoing, reached, now)
            elif _new_emergency(alert, finding):
                # Acknowledged but not resolved, and this is another press or fall, not a repeat
                # of the one acknowledged: somebody must hear about it, so the ladder starts again.
                alert = await store.reopen(conn, alert.id, now, finding.started_ms)
                event = await store.audit(conn, alert.id, now, SYSTEM, "re-opened", Via.SYSTEM)
                await feed.publish(conn, event, Event.OPENED, now)
                outgoing = await self._first_notice(conn, alert, now, Reason.OPENED)
                outgoing = await self._paged_directly(conn, alert, outgoing, reached, now)
            elif alert.severity.rank < up.previous_severity.rank:
                # Graver than before: an ack of the milder condition does not cover it (IEC
                # 60601-1-8 annunciates an escalated alarm again), and the graver ladder's
                # deadlines run from now, not from when the milder alert opened.
                alert = await store.reopen(conn, alert.id, now)
                event = await store.audit(
                    conn,
                    alert.id,
                    now,
                    SYSTEM,
                    "severity raised",
                    Via.SYSTEM,
                    {"from": up.previous_severity.value, "to": alert.severity.value},
                )
                await feed.publish(conn, event, Event.OPENED, now)
                outgoing = await self._first_notice(conn, alert, now, Reason.SEVERITY_RAISED)
        alert_metrics.alert_upserted(up, received)
        # Sent only once committed: a row the database does not have is never sent.
        self._sender.submit(outgoing)
        return alert.id

    async def _paged_directly(
        self,
        conn: store.AsyncConn,
        alert: Alert,
        outgoing: list[Outgoing],
        reached_by: Reached | None,
        now: int,
    ) -> list[Outgoing]:
        """The first notices whose contact was paged directly are recorded as delivered (one
        press, one page); the rest are to be sent."""
        reached = await reached_by() if reached_by is not None and outgoing else {}
        if not reached:
            return outgoing
        left, done = [], []
        for row in outgoing:
            page = reached.get(row.contact_id)
            contact = self.directory.contacts.get(row.contact_id)
            if page is None or contact is None or page.channel_index >= len(contact.channels):
                left.append(row)
                continue
            channel = redact(contact.channels[page.channel_index])
            await store.record_direct(conn, row.id, page, channel)
            done.append(row.contact_id)
        if done:
            await store.audit(
                conn,
                alert.id,
                now,
                SYSTEM,
                "paged directly",
                Via.SYSTEM,
                {"contacts": sorted(done)},
            )
        return left

    async def _cleared(self, conn: store.AsyncConn, finding: Finding, now: int) -> None:
        cur = await conn.execute(
            "SELECT id, severity FROM alerts WHERE resident_id = %s AND kind = %s"
            " AND state IN ('open', 'acknowledged') FOR UPDATE",
            (finding.resident_id, finding.kind.value),
        )
        row = await cur.fetchone()
        if row is None:
            return
        alert_id = AlertId(row[0])
        if Severity(row[1]) is Severity.CRITICAL:
            # Critical alerts latch: the condition ending is noted, a person must resolve it.
            await conn.execute(
                "UPDATE alerts SET cleared_at = %s WHERE id = %s", (store.ts(now), alert_id)
            )
            await store.audit(conn, alert_id, now, SYSTEM, "condition cleared", Via.SYSTEM)
            return
        await self._close(conn, alert_id, now, SYSTEM, Via.SYSTEM)
        alert_metrics.alert_moved(finding.kind, AlertState.RESOLVED)

    async def _inhibited(self, conn: store.AsyncConn, finding: Finding) -> bool:
        for rule in inhibiting_rules(self.config.inhibit, finding.kind):
            device = finding.device_id if rule.same_device else None
            if rule.same_device and device is None:
                continue
            kinds = [k.value for k in rule.source if k is not finding.kind]
            if kinds and await store.open_alert_kinds(conn, finding.resident_id, kinds, device):
                return True
        return False

    async def _first_notice(
        self, conn: store.AsyncConn, alert: Alert, now: int, reason: Reason
    ) -> list[Outgoing]:
        resident = self.directory.residents[alert.resident_id]
        held = quiet_until_ms(self.config, alert.severity, resident.timezone, now)
        if held is not None:
            await store.schedule(
                conn, alert.id, tier=-1, notice_ms=None, next_ms=held, held_until_ms=held
            )
            await store.audit(
                conn,
                alert.id,
                now,
                SYSTEM,
                "held for quiet hours",
                Via.SYSTEM,
                {"until": store.ts(held).isoformat()},
            )
            return []
        return await self._notify_tier(conn, alert, 0, now, reason, claim=True)

    async def _notify_tier(
        self,
        conn: store.AsyncConn,
        alert: Alert,
        tier: int,
        now: int,
        reason: Reason,
        *,
        claim: bool,
    ) -> list[Outgoing]:
        ladder = self.config.ladder(alert.severity)
        resident = self.directory.residents[alert.resident_id]
        contacts = step_contacts(ladder, tier, resident, self.directory.contacts)
        planned = self._plan(alert, contacts, tier, now, reason, {})
        nxt = next_action_ms(ladder, alert.opened_ms, tier, now)
        if not planned and alert.severity is Severity.CRITICAL and tier + 1 < len(ladder.steps):
            nxt = now  # nobody to tell on this step: the next step at once
        await store.schedule(conn, alert.id, tier=tier, notice_ms=now, next_ms=nxt)
        if tier > 0 or reason is not Reason.OPENED:
            event = await store.audit(
                conn,
                alert.id,
                now,
                SYSTEM,
                reason.value,
                Via.SYSTEM,
                {"tier": tier, "contacts": [c.id for c in contacts]},
            )
            if tier > 0:
                await feed.publish(conn, event, Event.ESCALATED, now)
                alert_metrics.escalated(alert.severity, last_step=tier + 1 == len(ladder.steps))
        return await store.enqueue(conn, planned, now, now, claim=claim)

    def _plan(
        self,
        alert: Alert,
        contacts: list[Contact],
        tier: int,
        now: int,
        reason: Reason,
        channels: dict[ContactId, int],
    ) -> list[store.Planned]:
        resident = self.directory.residents[alert.resident_id]
        planned = []
        for contact in contacts:
            if not contact.channels:
                continue
            index = min(channels.get(contact.id, 0), len(contact.channels) - 1)
            link = self._links.url(alert.id, contact.id, now)
            message = render(
                alert, resident, contact, link, now, reminder=reason is Reason.REMINDER
            )
            planned.append(
                store.Planned(
                    alert.id,
                    None,
                    contact.id,
                    tier,
                    index,
                    redact(contact.channels[index]),
                    1,
                    reason,
                    message.title,
                    message.body,
                    alert.severity is Severity.CRITICAL,
                )
            )
        return planned

    async def run_due(self) -> int:
        """Escalations, reminders and releases that are due, then outbox rows that are due."""
        now = self.clock()
        acted = 0
        async with self._pool.connection() as conn, conn.transaction():
            for alert, last_notice in await store.lock_due_alerts(conn, now, DUE_BATCH):
                try:
                    async with conn.transaction():  # a savepoint: one alert's failure is its own
                        await self._act(conn, alert, last_notice, now)
                    acted += 1
                except Exception as exc:
                    await self._act_failed(conn, alert, now, exc)
        async with self._pool.connection() as conn, conn.transaction():
            due = await store.claim_due(conn, now, DUE_BATCH)
        self._sender.submit(due)
        return acted + len(due)

    async def _act_failed(
        self, conn: store.AsyncConn, alert: Alert, now: int, exc: Exception
    ) -> None:
        """Record it and look again later; the other due alerts go on meanwhile."""
        log.error(
            "alert %s: escalation step failed; trying again in %d s",
            alert.id,
            ACT_RETRY_MS // 1000,
            exc_info=exc,
        )
        await store.postpone(conn, alert.id, now + ACT_RETRY_MS)
        detail = {"error": f"{type(exc).__name__}: {exc}"[:300], "retry_in_s": ACT_RETRY_MS // 1000}
        await store.audit(conn, alert.id, now, SYSTEM, "step_failed", Via.SYSTEM, detail)

    async def _act(self, conn: store.AsyncConn, alert: Alert, last_notice: int, now: int) -> None:
        ladder = self.config.ladder(alert.severity)
        if alert.tier < 0:
            await self._notify_tier(conn, alert, 0, now, Reason.RELEASED, claim=False)
            return
        # A site reload may have shortened the ladder under an alert: past its new end, the
        # alert stands on the last step (reminders to everyone on the ladder; no escalation).
        alert = replace(alert, tier=on_ladder(ladder, alert.tier))
        critical_unreached = alert.severity is Severity.CRITICAL and await store.unreached(
            conn, alert.id
        )
        if alert.tier + 1 < len(ladder.steps) and (
            critical_unreached or escalation_due(ladder, alert.opened_ms, alert.tier, now)
        ):
            why = (
                Reason.ESCALATED_UNREACHED
                if critical_unreached
                and not escalation_due(ladder, alert.opened_ms, alert.tier, now)
                else Reason.ESCALATED
            )
            await self._notify_tier(conn, alert, alert.tier + 1, now, why, claim=False)
            return
        if reminder_due(ladder, last_notice, now):
            await self._remind(conn, alert, now)
            return
        nxt = next_action_ms(ladder, alert.opened_ms, alert.tier, last_notice)
        await store.schedule(conn, alert.id, tier=alert.tier, notice_ms=None, next_ms=nxt)

    async def _remind(self, conn: store.AsyncConn, alert: Alert, now: int) -> None:
        ladder = self.config.ladder(alert.severity)
        resident = self.directory.residents[alert.resident_id]
        contacts = reached_contacts(ladder, alert.tier, resident, self.directory.contacts)
        channels = await store.working_channels(conn, alert.id)
        planned = self._plan(alert, contacts, alert.tier, now, Reason.REMINDER, channels)
        await store.enqueue(conn, planned, now, now, claim=False)
        nxt = next_action_ms(ladder, alert.opened_ms, alert.tier, now)
        await store.schedule(conn, alert.id, tier=alert.tier, notice_ms=now, next_ms=nxt)
        await store.audit(
            conn,
            alert.id,
            now,
            SYSTEM,
            "reminded",
            Via.SYSTEM,
            {"contacts": [c.id for c in contacts]},
        )

    async def acknowledge(self, alert_id: AlertId, actor: ContactId, via: Via) -> Decision:
        """Stop the chain: no escalation, no reminder, no retry after this commits."""
        now = self.clock()
        async with self._pool.connection() as conn, conn.transaction():
            alert = await store.lock_alert(conn, alert_id)
            refused = self._refuse(alert, actor)
            if refused is not None:
                return refused
            assert alert is not None
            if alert.state is not AlertState.OPEN:
                out = (
                    Outcome.ALREADY if alert.state is AlertState.ACKNOWLEDGED else Outcome.RESOLVED
                )
                return Decision(out, alert)
            await conn.execute(
                "UPDATE alerts SET state = 'acknowledged', acked_at = %s, acked_by = %s,"
                " next_action_at = NULL WHERE id = %s",
                (store.ts(now), actor, alert_id),
            )
            cancelled = await store.cancel_pending(conn, alert_id)
            event = await store.audit(
                conn, alert_id, now, actor, "acknowledged", via, {"cancelled": cancelled}
            )
            await feed.publish(conn, event, Event.ACKNOWLEDGED, now)
        alert_metrics.alert_moved(alert.kind, AlertState.ACKNOWLEDGED)
        alert_metrics.alert_answered(alert.severity, (now - alert.opened_ms) / 1000)
        self._taken(alert)
        return Decision(Outcome.DONE, alert)

    async def resolve(self, alert_id: AlertId, actor: ContactId, via: Via) -> Decision:
        now = self.clock()
        async with self._pool.connection() as conn, conn.transaction():
            alert = await store.lock_alert(conn, alert_id)
            refused = self._refuse(alert, actor)
            if refused is not None:
                return refused
            assert alert is not None
            if alert.state is AlertState.RESOLVED:
                return Decision(Outcome.ALREADY, alert)
            await self._close(conn, alert_id, now, actor, via)
        alert_metrics.alert_moved(alert.kind, AlertState.RESOLVED)
        if alert.state is AlertState.OPEN:
            self._taken(alert)
        return Decision(Outcome.DONE, alert)

    def _refuse(self, alert: Alert | None, actor: ContactId) -> Decision | None:
        if alert is None:
            return Decision(Outcome.UNKNOWN)
        if not self.directory.may_act(alert.resident_id, actor):
            return Decision(Outcome.FORBIDDEN, alert)
        return None

    async def _close(
        self, conn: store.AsyncConn, alert_id: AlertId, now: int, actor: str, via: Via
    ) -> None:
        await conn.execute(
            "UPDATE alerts SET state = 'resolved', resolved_at = %s, resolved_by = %s,"
            " next_action_at = NULL WHERE id = %s",
            (store.ts(now), actor, alert_id),
        )
        cancelled = await store.cancel_pending(conn, alert_id)
        event = await store.audit(
            conn, alert_id, now, actor, "resolved", via, {"cancelled": cancelled}
        )
        await feed.publish(conn, event, Event.RESOLVED, now)

    def _taken(self, alert: Alert) -> None:
        """A person has the SOS: tell the wristband (it vibrates and shows it)."""
        if alert.kind is not FindingKind.SOS or self._on_sos_ack is None:
            return
        device = alert.device_id or self.directory.wristbands.get(alert.resident_id)
        if device is None:
            return
        try:
            self._on_sos_ack(device, alert.id)
        except Exception:
            log.exception("sos_ack for alert %s not published", alert.id)


def _new_emergency(alert: Alert, finding: Finding) -> bool:
    return (
        alert.state is AlertState.ACKNOWLEDGED
        and finding.kind in NEVER_MUTED
        and finding.started_ms > alert.started_ms
    )
