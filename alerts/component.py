"""The alerts component: findings in, engine, scheduler, sender, digests and web routes together."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from alerts import store
from alerts.api import DatabaseProbe, make_routes
from alerts.console import Changes, Console, Sessions
from alerts.delivery import Current, Sender
from alerts.digest import DigestLoop, ReportMaker
from alerts.directory import load_config, load_directory
from alerts.engine import Engine
from alerts.fallback import EmergencyFallback
from alerts.host import Host, Web
from alerts.intake import FindingIntake, Stored
from alerts.links import Links
from alerts.model import AlertId, ContactId, DirectPage
from alerts.notifier import AppriseNotifier, Notifier
from alerts.settings import AlertsSettings
from detectors.findings import Finding, Severity
from ingest.records import EpochMs, wall_ms

log = logging.getLogger(__name__)

SHARDS = 4  # findings of one resident stay in order; residents are handled side by side
REGISTRY_EVERY_S = 5.0
RESTART_MAX_S = 30.0
FALLBACK_CHECK_S = 0.25
TAKE_UP_BATCH = 1000
SENDER_DRAIN_S = 2.0
WEB_CONNECTIONS = 4  # the console, the ack API and links, /health and /metrics


class Alerts:
    """The alert engine with its resources: open with `async with`, then `run()` its loops."""

    def __init__(
        self,
        settings: AlertsSettings,
        *,
        database_url: str,
        clock: Callable[[], EpochMs],
        send_command: Callable[[str, bytes], None] | None = None,
        notifier: Notifier | None = None,
        reports: ReportMaker | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._send_command = send_command
        self.reports = reports
        a = settings
        self._own_notifier: AppriseNotifier | None = None
        if notifier is None:
            notifier = self._own_notifier = AppriseNotifier(
                timeout_s=a.delivery_timeout_s,
                max_parallel=a.max_parallel_deliveries,
                max_critical=a.max_parallel_critical,
            )
        self._notifier = notifier
        self.database_url = database_url
        self.pool: AsyncConnectionPool[store.AsyncConn] = AsyncConnectionPool(
            database_url, min_size=2, max_size=4 + SHARDS, open=False
        )
        self.current = Current()
        self.sender = Sender(
            self.pool,
            self._notifier,
            self.current,
            clock=clock,
            workers=a.max_parallel_deliveries,
            critical_workers=a.max_parallel_critical,
        )
        self.engine: Engine | None = None
        self.links: Links | None = None

    async def __aenter__(self) -> Engine:
        await self.pool.open(wait=True, timeout=30)
        async with self.pool.connection() as conn:
            self.current.config = await load_config(conn)
            self.current.directory = await load_directory(conn)
            secret = await self._link_secret(conn)
            resent = await store.interrupted(conn, self.clock())
        if resent:
            log.info("%d notifications cut off by the last stop are planned again", resent)
        a = self.settings
        self.links = Links(secret, public_url=a.public_url, ttl_s=a.link_ttl_s)
        self.engine = Engine(
            self.pool,
            self.sender,
            self.links,
            clock=self.clock,
            current=self.current,
            on_sos_ack=self._sos_ack,
        )
        return self.engine

    async def __aexit__(self, *exc: object) -> None:
        await self.pool.close()
        if self._own_notifier is not None:
            self._own_notifier.close()

    async def _link_secret(self, conn: store.AsyncConn) -> bytes:
        if self.settings.link_secret:
            return self.settings.link_secret.encode()
        await conn.execute(
            "INSERT INTO alert_keys (name, secret) VALUES ('links', %s) ON CONFLICT DO NOTHING",
            (secrets.token_bytes(32),),
        )
        cur = await conn.execute("SELECT secret FROM alert_keys WHERE name = 'links'")
        row = await cur.fetchone()
        assert row is not None
        return bytes(row[0])

    def _sos_ack(self, device_id: str, alert_id: AlertId) -> None:
        if self._send_command is None:
            return
        payload = {"type": "sos_ack", "alert": str(alert_id), "ts": self.clock()}
        self._send_command(device_id, json.dumps(payload).encode())
        log.info("sos_ack for alert %s sent to %s", alert_id, device_id)

    async def reload(self) -> None:
        async with self.pool.connection() as conn:
            config = await load_config(conn)
            changed = [s for s in Severity if config.ladder(s) != self.current.config.ladder(s)]
            self.current.config = config
            self.current.directory = await load_directory(conn)
            if changed:
                # Open alerts were scheduled by the ladder they were on: the escalation pass
                # looks at each again now, under the new one (a step gone, a step added,
                # reminders started or stopped).
                async with conn.transaction():
                    revisited = await store.revisit(conn, changed, self.clock())
                log.info(
                    "ladders changed (%s): %d open alerts looked at again",
                    ", ".join(s.value for s in changed),
                    revisited,
                )

    async def scheduler_loop(self) -> None:
        assert self.engine is not None
        away = False  # the database: said once, not every step
        while True:
            try:
                await self.engine.run_due()
            except (psycopg.OperationalError, PoolTimeout) as exc:
                if not away:
                    log.warning("alert scheduler waits for the database: %s", exc)
                away = True
            except Exception:
                log.exception("alert scheduler step failed")
            else:
                if away:
                    log.info("alert scheduler: database back")
                away = False
            await asyncio.sleep(self.settings.scheduler_interval_s)

    async def registry_loop(self) -> None:
        while True:
            await asyncio.sleep(REGISTRY_EVERY_S)
            try:
                await self.reload()
            except Exception as exc:
                log.warning("alert routing not reloaded: %s", exc)

    async def web_loop(self, host: Host) -> None:
        """The ack API, signed links and the console, served by the host until cancelled."""
        assert self.engine is not None
        assert self.links is not None
        async with self.pool.connection() as conn:
            secret = await self._link_secret(conn)
        # The web has connections of its own: a crowd of console sessions or scrapes cannot
        # take the ones the engine and the senders need to page.
        pool: AsyncConnectionPool[store.AsyncConn] = AsyncConnectionPool(
            self.database_url, min_size=1, max_size=WEB_CONNECTIONS, open=False
        )
        await pool.open(wait=False)
        changes = Changes(pool)
        https = self.settings.public_url.startswith("https:")
        console = Console(
            self.engine, pool, Sessions(secret), changes, secure_cookies=https,
            reports=self.reports,
        )  # fmt: skip
        probe = DatabaseProbe(pool)
        web = Web(
            routes=make_routes(self.engine, self.links, pool, console=console),
            database_up=probe.up,
            before_scrape=probe.refresh_counts,
            closing=changes.close,  # open event streams end, so stopping does not wait on them
        )
        poller = asyncio.create_task(changes.run(), name="console_changes_loop")
        try:
            await host.serve_http(web)
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
            await pool.close()


class AlertsComponent:
    """A component of the service: findings in, people told, acks handled."""

    name = "alerts"

    def __init__(
        self,
        settings: AlertsSettings,
        *,
        database_url: str,
        notifier: Notifier | None = None,
        reports: ReportMaker | None = None,
    ) -> None:
        self.settings = settings
        self.database_url = database_url
        self.serves_http = settings.serve_http
        self._notifier = notifier
        self._reports = reports
        self.intake = FindingIntake(SHARDS)
        self._catching_up: list[Stored] | None = None
        self.alerts: Alerts | None = None
        self.ready = asyncio.Event()
        self._clock: Callable[[], EpochMs] = wall_ms
        direct = notifier or AppriseNotifier(timeout_s=settings.delivery_timeout_s, max_parallel=4)
        self.fallback = EmergencyFallback(
            direct,
            lambda: self.alerts.current if self.alerts is not None else None,
            settings.public_url.rstrip("/") + "/console/",
            self._now,
        )

    async def drain(self) -> None:
        """Until the findings given so far are handled (or parked: the engine failed) and the
        notifications they led to have been tried (what is cut off is sent after a restart)."""
        await self.intake.idle()
        if self.alerts is not None:
            # Pages under way get a moment; the rest (retries, channels that hang) are in the
            # outbox, planned again at the next start.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SENDER_DRAIN_S):
                    await self.alerts.sender.idle()

    def _now(self) -> EpochMs:
        return self._clock()  # the host's clock, known once run() has started

    def on_finding(self, finding: Finding) -> None:
        """Decided, not yet stored: the direct fallback pages if the engine has not taken an
        emergency in time (the database away, the engine down)."""
        if finding.late:
            return  # about the past: stored and in the digest; the live data pages for now
        self.fallback.watch(finding)

    def on_stored(self, findings: Sequence[tuple[int, Finding]]) -> None:
        """Committed: to the engine, in order. While the engine takes up what it missed, these
        wait behind that (they are in the database too; the second copy is a no-op)."""
        if self._catching_up is not None:
            self._catching_up.extend(findings)
            return
        for item in findings:
            self.intake.put(item)

    async def run(self, host: Host) -> None:
        self._clock = host.clock
        self.fallback.urgent = host.database_away
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._fallback_loop(), name="alert_fallback_loop")
            tasks.create_task(self._restarting(host), name="alert_engine_loop")

    async def _restarting(self, host: Host) -> None:
        delay = 1.0
        while True:
            try:
                await self._run(host)
            except Exception:
                log.exception("alerts stopped; starting again in %.0f s", delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESTART_MAX_S)

    async def _fallback_loop(self) -> None:
        # Outside the engine's task group: it must keep working when the engine cannot start.
        try:
            while True:
                await asyncio.sleep(FALLBACK_CHECK_S)
                try:
                    await self.fallback.check()
                except Exception:
                    log.exception("direct paging failed")
        finally:
            await self.fallback.close()

    async def _run(self, host: Host) -> None:
        alerts = self.alerts = Alerts(
            self.settings,
            database_url=self.database_url,
            clock=host.clock,
            send_command=host.send_command,
            notifier=self._notifier,
            reports=self._reports,
        )
        async with alerts as engine, asyncio.TaskGroup() as tasks:
            taken = await self._take_up(alerts.pool)
            if taken:
                log.warning("%d findings stored but not handled yet: handling them now", taken)
            tasks.create_task(alerts.sender.run(), name="send_loops")
            tasks.create_task(self.intake.run(self._handle_with(engine)), name="alert_intake")
            tasks.create_task(alerts.scheduler_loop(), name="alert_scheduler_loop")
            tasks.create_task(alerts.registry_loop(), name="alert_registry_loop")
            digests = DigestLoop(
                alerts.pool, alerts.sender, alerts.current, clock=alerts.clock,
                reports=self._reports,
                console_url=self.settings.public_url.rstrip("/") + "/console",
            )  # fmt: skip
            tasks.create_task(digests.run(), name="alert_digest_loop")
            if self.serves_http:
                tasks.create_task(alerts.web_loop(host), name="alert_web_loop")
            self.ready.set()
            log.info("alerts running: %d contacts", len(alerts.current.directory.contacts))

    def _handle_with(self, engine: Engine) -> Callable[[Stored], Awaitable[None]]:
        async def handle(item: Stored) -> None:
            finding_id, finding = item
            self.fallback.claim(finding)

            async def reached() -> Mapping[ContactId, DirectPage]:
                return await self.fallback.reached(finding, self.settings.delivery_timeout_s)

            try:
                await engine.handle(finding, finding_id, reached)
            except BaseException:
                self.fallback.release(finding)
                raise
            self.fallback.taken(finding)

        return handle

    async def _take_up(self, pool: AsyncConnectionPool[store.AsyncConn]) -> int:
        """Every stored finding the engine has not handled (cut off by a crash or a stop), in
        order, before the ones that arrive meanwhile."""
        self._catching_up = []
        self.intake.clear()  # all of it is in the database: read again, in order
        taken, last = 0, 0
        try:
            while True:
                async with pool.connection() as conn:
                    batch = await store.unhandled_findings(conn, last, TAKE_UP_BATCH)
                for found in batch:
                    self.intake.put(found)
                taken += len(batch)
                if len(batch) < TAKE_UP_BATCH:
                    break
                last = batch[-1][0]
        finally:
            for item in self._catching_up:
                self.intake.put(item)
            self._catching_up = None
        return taken
