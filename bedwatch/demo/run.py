"""`bedwatch demo`'s composition root: database, broker, receiver, service, ward; then reverse."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

from bedwatch.demo import ward
from bedwatch.demo.broker import EmbeddedBroker
from bedwatch.demo.console_out import Console, LocalReceiver, Timeline, alert_name, summary
from bedwatch.demo.database import (
    ROOT_RUNS_AS,
    EmbeddedPostgres,
    directories_opened_for_root,
    running_as_root,
)
from bedwatch.demo.staff import CareWorker
from bedwatch.service import Service
from bedwatch.settings import Settings
from simulators.runner import Progress, RunResult, run_fleet

log = logging.getLogger(__name__)

DEMO_DATABASE = "bedwatch"
POLL_S = 0.5
READY_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class DemoOptions:
    data_dir: Path
    duration_s: float | None = None  # None: until Ctrl-C (the night ends after 8 minutes)
    mqtt_url: str | None = None  # None: the embedded broker
    database_url: str | None = None  # None: the embedded PostgreSQL
    notify: tuple[str, ...] = ()  # extra apprise URLs, first in every demo contact's channels
    http_addr: str = "127.0.0.1:8080"


class DemoError(Exception):
    """Something the user can fix (a port in use, a bad URL); the message says what."""


class Demo:
    def __init__(self, base: Settings, options: DemoOptions, out: TextIO = sys.stdout) -> None:
        self.base = base
        self.options = options
        self.console = Console(out, night_clock=self.night_clock)
        people = (*ward.CONTACTS, ward.SUPERVISOR)
        self.names = {c.id: c.name for c in people} | {"system": "the system"}
        self._progress: tuple[Progress, float] | None = None
        self._playing = False

    # The night's clock, from the simulator's progress reports (every second).

    def night_clock(self) -> str:
        if self._progress is None or self._progress[0].phase == "connect":
            return ""
        p, at = self._progress
        sim_ms = p.sim_ms
        if p.phase == "play":
            sim_ms += int((time.monotonic() - at) * 1000 * ward.SPEED)
        return ward.local_clock(sim_ms)

    def _on_progress(self, p: Progress) -> None:
        self._progress = (p, time.monotonic())
        if p.phase == "play" and not self._playing:
            self._playing = True
            self.console.event(f"▶ {p.connected} of {p.devices} devices online; the night begins")

    # The run

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        try:
            with contextlib.ExitStack() as stack:
                return await self._run(stack, stopping)
        except DemoError as exc:
            print(f"bedwatch demo: {exc}", file=sys.stderr)
            return 2
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    async def _run(self, stack: contextlib.ExitStack, stopping: asyncio.Event) -> int:
        from bedwatch.service import alerts_component

        options = self.options
        check_free(options.http_addr)
        options.data_dir.mkdir(parents=True, exist_ok=True)
        say = self.console.say
        say("BedWatch demo: a ward of 20 residents, one night played at 60x (1 s = 1 min)")
        # Open in order: database, broker, receiver, service, then the ward's devices.
        db_url = await self._database(stack)
        device_url, service_url, protocol = self._broker(stack)
        receiver = LocalReceiver(self.console, self.names)
        receiver.start()
        stack.callback(receiver.stop)
        channels = {c.id: [*options.notify, receiver.url(c.id)] for c in ward.CONTACTS}
        settings = self._settings(db_url, service_url, protocol)
        tokens = await asyncio.to_thread(prepare_database, settings, ward.site_toml(channels))
        alerts = alerts_component(settings)
        service = Service(settings, components=[alerts])
        service_task = asyncio.create_task(service.run(), name="service")
        if not await _ready(service_task, service.ready, alerts.ready):
            return await _failed(service_task)
        self._header(settings, tokens, device_url, protocol)
        return await self._play(
            settings, service, service_task, receiver, device_url, tokens.nurse, stopping
        )

    async def _database(self, stack: contextlib.ExitStack) -> str:
        if self.options.database_url is not None:
            self.console.say(f"  database    {_redact(self.options.database_url)} (yours)")
            return self.options.database_url
        pgdata = self.options.data_dir / "postgres"
        if running_as_root():
            opened = directories_opened_for_root(pgdata)
            self.console.say(
                f"  note        PostgreSQL does not run as root: it runs as the system user "
                f"{ROOT_RUNS_AS!r} (created once)"
                + (f"; now readable by all: {', '.join(map(str, opened))}" if opened else "")
            )
        pg = EmbeddedPostgres(pgdata)
        await asyncio.to_thread(pg.start)
        stack.callback(pg.stop)
        await asyncio.to_thread(fresh_database, pg.url("postgres"), DEMO_DATABASE)
        self.console.say(f"  database    embedded PostgreSQL, data in {pgdata}")
        return pg.url(DEMO_DATABASE)

    def _broker(self, stack: contextlib.ExitStack) -> tuple[str, str, int]:
        if self.options.mqtt_url is not None:
            url = self.options.mqtt_url
            if urlsplit(url).scheme != "mqtt" or not urlsplit(url).hostname:
                raise DemoError(f"--mqtt-url: expected mqtt://host[:port], got {url!r}")
            self.console.say(f"  broker      {_redact(url)} (yours)")
            return url, url, self.base.mqtt.protocol
        broker = EmbeddedBroker(
            self.options.data_dir / "broker", max_payload=self.base.ingest.max_payload_bytes
        )
        # Ctrl-C at a terminal reaches the whole process group: the broker must outlive it
        # until the service has drained, so its process starts with SIGINT ignored.
        with _sigint_ignored():
            address = broker.start()
        stack.callback(broker.stop)
        self.console.say(
            f"  broker      embedded rumqttd: devices {address.device_url} (MQTT 3.1.1), "
            f"service {address.service_url} (MQTT 5)"
        )
        return address.device_url, address.service_url, 5

    def _settings(self, db_url: str, mqtt_url: str, protocol: int) -> Settings:
        addr = self.options.http_addr
        return (
            self.base.replace("database", url=db_url)
            .replace(
                "mqtt",
                url=mqtt_url,
                protocol=protocol,
                client_id="bedwatch-demo",
                session_expiry_s=300,  # on a shared broker, nothing piles up after the demo
            )
            .replace("http", addr=addr)
            .replace("alerts", enabled=True, serve_http=True, public_url=f"http://{addr}")
        )

    def _header(self, settings: Settings, tokens: Tokens, device_url: str, protocol: int) -> None:
        say = self.console.say
        web = f"http://{settings.http.addr}"
        say(f"  web console {web}/console/")
        say(f"  log in as   contact {ward.NURSE.id}, token {tokens.nurse}  ({ward.NURSE.name})")
        say(
            f"  operations  {web}/console/operations as contact {ward.SUPERVISOR.id},"
            f" token {tokens.supervisor}  ({ward.SUPERVISOR.name})"
        )
        say(
            f"  API         curl -X POST -H 'Authorization: Bearer {tokens.nurse}' "
            f"{web}/api/v1/alerts/ID/ack"
        )
        for url in self.options.notify:
            say(f"  notify      {_redact(url)} (first channel of every demo contact)")
        say(f"  data        {self.options.data_dir}  (delete it when you are done)")
        say(
            "  contacts    "
            + ", ".join(f"{c.name} ({c.role_text}, {c.language})" for c in ward.CONTACTS)
        )
        say("  tonight")
        for s in sorted(ward.SCRIPT, key=ward.Scripted.order):
            name = ward.resident_name(int(s.resident_id[2:]))
            say(f"    {s.at}  {name} ({s.resident_id}) {s.text}")
        limit = f"for {self.options.duration_s:g} s" if self.options.duration_s else "until Ctrl-C"
        say(f"Running {limit}. Ctrl-C stops everything.")
        say()
        say(" wall  night")

    async def _play(
        self,
        settings: Settings,
        service: Service,
        service_task: asyncio.Task[None],
        receiver: LocalReceiver,
        device_url: str,
        token: str,
        stopping: asyncio.Event,
    ) -> int:
        parts = urlsplit(device_url)
        config = ward.run_config(
            ward.night_start_ms(datetime.now(UTC)),
            (parts.hostname or "127.0.0.1", parts.port or 1883),
            settings.mqtt.topic_prefix,
        )
        sim_stop = threading.Event()
        sim_task = asyncio.create_task(
            asyncio.to_thread(run_fleet, config, self._on_progress, 1.0, sim_stop), name="ward"
        )
        worker = CareWorker(f"http://{settings.http.addr}", token, self.console, ward.NURSE_PLAN)
        timeline = Timeline(
            settings.database.url,
            self.console,
            names=self.names,
            local_prefix="json://127.0.0.1:",
            on_event=worker.on_event,
        )
        async with asyncio.TaskGroup() as tasks:
            watch = tasks.create_task(self._timeline_loop(timeline, receiver), name="timeline_loop")
            answer = tasks.create_task(worker.run(), name="care_worker_loop")
            why = await self._until_stop(stopping, sim_task, service_task)
            # Stop in reverse: the devices, then the service (it drains and stores what it
            # holds), then our own loops; broker and database close after we return.
            self.console.event(f"■ stopping ({why}): devices off, the service drains")
            sim_stop.set()
            result = await _quietly(sim_task)
            service.stop()
            ok = await _finished(service_task)
            answer.cancel()
            watch.cancel()
        with contextlib.suppress(psycopg.Error):
            await asyncio.to_thread(timeline.poll)
        receiver.show()
        timeline.close()
        await asyncio.to_thread(self._summary, settings.database.url, result, service)
        return 0 if ok else 1

    async def _until_stop(
        self,
        stopping: asyncio.Event,
        sim_task: asyncio.Task[RunResult],
        service: asyncio.Task[None],
    ) -> str:
        deadline = None
        if self.options.duration_s is not None:
            deadline = self.console.started + self.options.duration_s
        stop_wait = asyncio.ensure_future(stopping.wait())
        watching: set[asyncio.Future[Any]] = {stop_wait, sim_task, service}
        try:
            while True:
                timeout = None if deadline is None else max(deadline - time.monotonic(), 0)
                done, _ = await asyncio.wait(
                    watching, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if stop_wait in done:
                    return "Ctrl-C"
                if service in done:
                    return "the service stopped"
                if sim_task in done:
                    watching.discard(sim_task)
                    self.console.event(
                        "☾ the night is over; the web console stays up until Ctrl-C"
                        if deadline is None
                        else "☾ the night is over"
                    )
                if not done:
                    return f"{self.options.duration_s:g} s are up"
        finally:
            stop_wait.cancel()

    async def _timeline_loop(self, timeline: Timeline, receiver: LocalReceiver) -> None:
        while True:
            try:
                await asyncio.to_thread(timeline.poll)
            except psycopg.Error as exc:
                log.warning("timeline: %s", exc)
            receiver.show()
            await asyncio.sleep(POLL_S)

    def _summary(self, db_url: str, result: RunResult | None, service: Service) -> None:
        say = self.console.say
        say()
        say("Summary")
        try:
            s = summary(db_url)
        except psycopg.Error as exc:
            say(f"  (no summary: {exc})")
            return
        for alert_id, kind, resident_id, state, by in s.alerts:
            closed = f" by {self.names.get(by, by)}" if by else ""
            say(f"  #{alert_id:<3} {alert_name(kind):22s} {resident_id}  {state}{closed}")
        say(f"  notifications: {s.delivered} delivered, {s.failed} failed, {s.pending} not sent")
        say(
            f"  service: {service.stats.acked} messages stored and acknowledged, "
            f"{service.stats.written.mattress} mattress samples"
        )
        if result is not None:
            acks = sum(1 for _, body in result.stats.commands if body.get("type") == "sos_ack")
            say(f"  devices: {result.stats.published} messages sent; {acks} sos_ack(s) received")
        say(f"  data in {self.options.data_dir} (delete it at will)")


@dataclass(frozen=True, slots=True)
class Tokens:
    """Console and API tokens: the care worker's, and the street supervisor's."""

    nurse: str
    supervisor: str


def prepare_database(settings: Settings, site_text: str) -> Tokens:
    """Schema, the ward's registry, and tokens for the demo's care worker and supervisor."""
    from alerts.tokens import issue_token
    from bedwatch.migrate import migrate
    from bedwatch.site import parse_site
    from ingest.db import connect, ensure_database
    from ingest.registry import store_site

    ensure_database(settings.database)
    migrate(settings)
    site = parse_site(site_text)
    with connect(settings.database.url) as conn, conn.transaction():
        store_site(conn, site)
        return Tokens(
            issue_token(conn, ward.NURSE.id, "bedwatch demo"),
            issue_token(conn, ward.SUPERVISOR.id, "bedwatch demo"),
        )


def fresh_database(admin_url: str, name: str) -> None:
    """Each run of the demo starts from an empty database (in the demo's own server only)."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def check_free(addr: str) -> None:
    host, _, port = addr.rpartition(":")
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, int(port)))
        except OSError as exc:
            raise DemoError(
                f"cannot serve HTTP on {addr} ({exc.strerror}); choose another: --http-addr"
            ) from None


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


async def _ready(task: asyncio.Task[None], *events: asyncio.Event) -> bool:
    """True once every event is set; False if the task ends first or it takes too long."""
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            while not all(e.is_set() for e in events):
                await asyncio.wait([task, *waits], return_when=asyncio.FIRST_COMPLETED)
                if task.done():
                    return False
    except TimeoutError:
        return False
    finally:
        for w in waits:
            w.cancel()
    return True


async def _failed(task: asyncio.Task[None]) -> int:
    if not task.done():
        task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        print("bedwatch demo: the service did not get ready in time", file=sys.stderr)
    except Exception as exc:
        print(f"bedwatch demo: the service failed to start: {exc}", file=sys.stderr)
    else:
        print("bedwatch demo: the service stopped before it was ready", file=sys.stderr)
    return 1


async def _finished(task: asyncio.Task[None]) -> bool:
    try:
        await task
    except Exception:
        log.exception("the service stopped with an error")
        return False
    return True


async def _quietly(task: asyncio.Task[RunResult]) -> RunResult | None:
    try:
        return await task
    except Exception:
        log.exception("the simulated ward stopped with an error")
        return None


def _redact(url: str) -> str:
    from ingest.db import redact

    return redact(url)
