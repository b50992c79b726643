"""The sender: outbox rows to the notifier, results recorded, retries, fallbacks, exhaustion."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from alerts import metrics as alert_metrics
from alerts import store
from alerts.config import AlertConfig, default_config
from alerts.directory import Directory
from alerts.feed import load_feeds
from alerts.model import AlertId, Attachment, FeedDelivery, Outgoing, Reason, Result, Via
from alerts.notifier import PER_CHANNEL, Delivery, Notifier, redact
from alerts.routing import backoff_s
from alerts.webhooks import Poster, WebhookPoster

log = logging.getLogger(__name__)

# Recording an attempt's result: each try waits this long for a connection, and the tries back
# off from the first to the longest pause while the database is away.
RECORD_TIMEOUT_S = 5.0
RECORD_RETRY_FIRST_S = 0.5
RECORD_RETRY_MAX_S = 30.0
# Feeds' webhooks: workers, slots and threads of their own, few, beside the pages to people.
FEED_WORKERS = 4
WEBHOOK_TIMEOUT_S = 10.0
# Backoff of a feed event's attempts grows to the policy's cap by this attempt, then stays.
_BACKOFF_ATTEMPTS_MAX = 30

Row = Outgoing | FeedDelivery
Channel = tuple[str, str, int]  # ("contact", id, channel index) or ("feed", id, webhook index)


@dataclass(slots=True)
class Current:
    """The routing facts in force; replaced whole when the registry changes."""

    config: AlertConfig = field(default_factory=default_config)
    directory: Directory = field(default_factory=Directory)


class Sender:
    """Fixed sets of workers (critical ones apart), and at most PER_CHANNEL attempts on one
    channel at once, so channels that hang hold a few workers, never all of them."""

    def __init__(
        self,
        pool: AsyncConnectionPool[store.AsyncConn],
        notifier: Notifier,
        current: Current,
        *,
        clock: Callable[[], int],
        workers: int,
        critical_workers: int = 8,
        rng: random.Random | None = None,
        webhooks: Poster | None = None,
    ) -> None:
        self._pool = pool
        self._notifier = notifier
        self._current = current
        self._clock = clock
        self._workers = workers
        self._critical_workers = critical_workers
        self._rng = rng or random.Random()
        # Critical sends have workers of their own: however many other messages are queued or
        # held by channels that do not answer, an SOS or a fall goes out at once.
        self._queue: asyncio.Queue[Row] = asyncio.Queue()
        self._critical: asyncio.Queue[Row] = asyncio.Queue()
        # Feed events are secondary: a lane of their own, so a platform's receiver that hangs or
        # a burst of events never stands before a page to a person.
        self._feed: asyncio.Queue[Row] = asyncio.Queue()
        self._own_webhooks: WebhookPoster | None = None
        if webhooks is None:
            webhooks = self._own_webhooks = WebhookPoster(
                timeout_s=WEBHOOK_TIMEOUT_S, max_parallel=FEED_WORKERS
            )
        self._webhooks = webhooks
        self._busy: dict[Channel, int] = {}  # sends in progress, by channel
        self._waiting: dict[Channel, deque[tuple[asyncio.Queue[Row], Row]]] = {}
        # Results the database could not take when they came: kept here, recorded by one task
        # that tries again, while the workers go on sending.
        self._unrecorded: asyncio.Queue[tuple[Row, Delivery]] = asyncio.Queue()
        self.delivered = 0
        self.failed = 0

    def submit(self, rows: Iterable[Row]) -> None:
        for row in rows:
            if isinstance(row, FeedDelivery):
                self._feed.put_nowait(row)
            else:
                (self._critical if row.critical else self._queue).put_nowait(row)

    async def idle(self) -> None:
        """Until every submitted row has been tried and recorded (for tests and draining)."""
        await self._critical.join()
        await self._queue.join()
        await self._feed.join()
        await self._unrecorded.join()

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tasks:
                for i in range(self._critical_workers):
                    tasks.create_task(
                        self._send_loop(self._critical), name=f"critical_send_loop_{i}"
                    )
                for i in range(self._workers):
                    tasks.create_task(self._send_loop(self._queue), name=f"send_loop_{i}")
                for i in range(FEED_WORKERS):
                    tasks.create_task(self._send_loop(self._feed), name=f"feed_send_loop_{i}")
                tasks.create_task(self._record_loop(), name="record_loop")
        finally:
            if self._own_webhooks is not None:
                self._own_webhooks.close()

    async def _send_loop(self, queue: asyncio.Queue[Row]) -> None:
        while True:
            row = await queue.get()
            channel = _channel(row)
            if self._busy.get(channel, 0) >= PER_CHANNEL:
                # Set aside without holding a worker: a channel that does not answer takes at
                # most PER_CHANNEL workers, and every other contact's page goes on.
                self._waiting.setdefault(channel, deque()).append((queue, row))
                continue  # its task_done comes when it goes back into its queue
            self._busy[channel] = self._busy.get(channel, 0) + 1
            try:
                await self._send(row)
            except Exception:
                # A fault of ours, not the database's: the row stays 'sending' until a restart
                # plans it again as interrupted.
                log.exception("notification %s: result not recorded", row.id)
            finally:
                self._channel_free(channel)
                queue.task_done()

    def _channel_free(self, channel: Channel) -> None:
        self._busy[channel] -= 1
        if not self._busy[channel]:
            del self._busy[channel]
        waiting = self._waiting.get(channel)
        if waiting:
            queue, row = waiting.popleft()
            if not waiting:
                del self._waiting[channel]
            queue.put_nowait(row)
            queue.task_done()  # for the take that set it aside

    async def _send(self, row: Row) -> None:
        if isinstance(row, FeedDelivery):
            delivery = await self._post(row)
        else:
            if row.alert_id is not None and not await self._still_open(row):
                return
            delivery = await self._page(row)
        if delivery.ok:
            self.delivered += 1
        else:
            self.failed += 1
            _, to, _ = _channel(row)
            log.warning("notification %s to %s failed: %s", row.id, to, delivery.error)
        try:
            await self._record(row, delivery)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            # A row left 'sending' would get no retry and no next channel: kept, and recorded
            # when the database is back, while this worker goes on to the next page.
            log.warning("notification %s: result not recorded yet (%s)", row.id, exc)
            self._unrecorded.put_nowait((row, delivery))

    async def _page(self, row: Outgoing) -> Delivery:
        contact = self._current.directory.contacts.get(row.contact_id)
        if contact is None or row.channel_index >= len(contact.channels):
            delivery = Delivery(False, 0.0, "contact or channel no longer in the registry", False)
        else:
            alert_metrics.handing_over(row.alert_id)
            attachments = await self._attachments(row)
            delivery = await self._notifier.send(
                contact.channels[row.channel_index],
                row.title,
                row.body,
                critical=row.critical,
                attachments=attachments,
            )
        alert_metrics.attempt_done(row.alert_id, delivery)
        return delivery

    async def _attachments(self, row: Outgoing) -> list[Attachment]:
        """A digest's reports; without them if the database cannot say now (its text has the
        links to the same reports in the console)."""
        if row.digest_id is None:
            return []
        try:
            async with self._pool.connection(timeout=RECORD_TIMEOUT_S) as conn:
                return await store.digest_attachments(conn, row.digest_id)
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
            log.warning("digest %s sent without its reports: %s", row.digest_id, exc)
            return []

    async def _post(self, row: FeedDelivery) -> Delivery:
        """A feed event to its webhook, the URL (secrets and all) read from the site settings now:
        the outbox keeps it redacted."""
        try:
            async with self._pool.connection(timeout=RECORD_TIMEOUT_S) as conn:
                feed = (await load_feeds(conn)).get(row.feed_id)
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
            return Delivery(False, 0.0, f"feed settings not readable: {exc}"[:500])
        if feed is None or row.webhook_index >= len(feed.webhooks):
            return Delivery(False, 0.0, "feed or webhook no longer in the site file", False)
        return await self._webhooks.post(feed.webhooks[row.webhook_index], row.body)

    async def _record(self, row: Row, delivery: Delivery) -> None:
        """The attempt's result, and after a failure what comes next, in one transaction."""
        async with self._pool.connection(timeout=RECORD_TIMEOUT_S) as conn, conn.transaction():
            recorded = await store.record_result(
                conn,
                row.id,
                Result.DELIVERED if delivery.ok else Result.FAILED,
                error=delivery.error,
                retryable=None if delivery.ok else delivery.retryable,
                duration_ms=delivery.duration_ms,
            )
            if recorded and not delivery.ok:
                if isinstance(row, FeedDelivery):
                    await self._feed_failed(conn, row, delivery)
                else:
                    await self._after_failure(conn, row, delivery)
            first = None
            if recorded and delivery.ok and isinstance(row, Outgoing) and row.alert_id:
                first = await store.first_page(conn, row.id, row.alert_id)
        if first is not None:
            alert_metrics.first_page(*first)

    async def _record_loop(self) -> None:
        delay = RECORD_RETRY_FIRST_S
        while True:
            row, delivery = await self._unrecorded.get()
            while True:
                try:
                    await self._record(row, delivery)
                    break
                except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                    log.warning(
                        "notification %s: result not recorded (%s); trying again in %.1f s",
                        row.id,
                        exc,
                        delay,
                    )
                except Exception:
                    log.exception("notification %s: result not recorded", row.id)
                    break
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECORD_RETRY_MAX_S)
            delay = RECORD_RETRY_FIRST_S
            self._unrecorded.task_done()

    async def _still_open(self, row: Outgoing) -> bool:
        """A row may wait in the queue: an ack or resolve meanwhile cancels it here.

        If the database cannot say, the row is sent: a page after an ack is a nuisance, a page
        held back during an outage may be an emergency nobody hears about.
        """
        try:
            async with self._pool.connection(timeout=2.0) as conn, conn.transaction():
                cur = await conn.execute("SELECT state FROM alerts WHERE id = %s", (row.alert_id,))
                found = await cur.fetchone()
                if found is not None and found[0] == "open":
                    return True
                await store.record_result(
                    conn,
                    row.id,
                    Result.CANCELLED,
                    error="alert no longer open",
                    retryable=False,
                    duration_ms=0.0,
                )
        except Exception as exc:
            log.warning("notification %s: alert state unknown (%s); sending", row.id, exc)
            return True
        return False

    async def _feed_failed(self, conn: store.AsyncConn, row: FeedDelivery, d: Delivery) -> None:
        """Tried again with the retry policy's backoff, for as long as the feed says; the alert's
        later events wait for it (claim_due), so a receiver back after an outage gets them in
        order. Given up, it is audited and the next event goes."""
        now = self._clock()
        feed = (await load_feeds(conn)).get(row.feed_id)
        if d.retryable and feed is not None:
            attempt = min(row.attempt, _BACKOFF_ATTEMPTS_MAX)
            due = now + int(backoff_s(self._current.config.retry, attempt, self._rng) * 1000)
            oldest = now - feed.give_up_after_s * 1000
            if await store.retry_feed(conn, row.id, now, due, oldest):
                return
        await store.audit(
            conn,
            row.alert_id,
            now,
            "system",
            "feed event given up",
            Via.SYSTEM,
            {"feed": row.feed_id, "webhook": row.webhook_index, "error": d.error[:300]},
        )

    async def _after_failure(self, conn: store.AsyncConn, row: Outgoing, d: Delivery) -> None:
        now = self._clock()
        facts = await store.row_for_retry(conn, row.id)
        if facts["alert_id"] is not None and facts["state"] != "open":
            return  # acknowledged or resolved meanwhile: nothing more to send
        policy = self._current.config.retry
        contact = self._current.directory.contacts.get(row.contact_id)
        channels = contact.channels if contact else ()
        if d.retryable and row.attempt < policy.attempts_per_channel and channels:
            due = now + int(backoff_s(policy, row.attempt, self._rng) * 1000)
            await self._again(
                conn, facts, row.channel_index, row.attempt + 1, Reason.RETRY, channels, now, due
            )
        elif row.channel_index + 1 < len(channels):
            await self._again(
                conn, facts, row.channel_index + 1, 1, Reason.FALLBACK, channels, now, now
            )
        elif row.alert_id is not None:
            await self._exhausted(conn, row.alert_id, row, now)

    async def _again(
        self,
        conn: store.AsyncConn,
        facts: dict[str, object],
        channel_index: int,
        attempt: int,
        reason: Reason,
        channels: tuple[str, ...],
        now: int,
        due: int,
    ) -> None:
        planned = store.Planned(
            facts["alert_id"],  # type: ignore[arg-type]
            facts["digest_id"],  # type: ignore[arg-type]
            facts["contact_id"],  # type: ignore[arg-type]
            int(facts["tier"]),  # type: ignore[call-overload]
            channel_index,
            redact(channels[channel_index]),
            attempt,
            reason,
            str(facts["title"]),
            str(facts["body"]),
            bool(facts["critical"]),
        )
        await store.enqueue(conn, [planned], now, due, claim=False)

    async def _exhausted(
        self, conn: store.AsyncConn, alert_id: AlertId, row: Outgoing, now: int
    ) -> None:
        await store.audit(
            conn,
            alert_id,
            now,
            "system",
            "contact unreachable",
            Via.SYSTEM,
            {"contact": row.contact_id},
        )
        if row.critical and await store.unreached(conn, alert_id):
            # A critical alert that reached nobody goes up the ladder now, not at the deadline.
            await conn.execute(
                "UPDATE alerts SET next_action_at = %s WHERE id = %s AND state = 'open'",
                (store.ts(now), alert_id),
            )


def _channel(row: Row) -> Channel:
    """Whose channel a row is for: a contact's, or a feed's webhook."""
    if isinstance(row, FeedDelivery):
        return "feed", row.feed_id, row.webhook_index
    return "contact", row.contact_id, row.channel_index
