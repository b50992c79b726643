"""The composition root: database, then broker, then workers; drained and closed in reverse."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

import psycopg

from alerts.component import AlertsComponent
from alerts.host import Host, Web
from alerts.notifier import Notifier
from bedwatch import detector_store, metrics
from bedwatch.detector_process import DetectorProcess
from bedwatch.detector_store import (
    EmergencyWriter,
    load_resident_configs,
    load_snapshot,
    save_snapshot,
)
from bedwatch.http import HttpUnavailable, listen, make_app, serve
from bedwatch.migrate import migrate
from bedwatch.reports.batch import draw_sleep_reports
from bedwatch.runtime import tune_collector
from bedwatch.settings import Settings
from detectors.events import Emergencies
from detectors.findings import Finding, FindingKind, Severity
from detectors.nights import NightSummary
from ingest.db import DatabaseUnavailable, connect, ensure_database, redact
from ingest.intake import Held, Intake
from ingest.mqtt import MqttSession
from ingest.protocol import Decoded, Decoder
from ingest.records import DeviceEvent, EpochMs, MattressSample, Record, wall_ms
from ingest.registry import load_devices, registry_version
from ingest.retention import prune
from ingest.store import Store, WriteResult

log = logging.getLogger(__name__)

# What a write meets when the database is away (refusing, restarting, the connection cut).
DATABASE_AWAY = (DatabaseUnavailable, psycopg.OperationalError, psycopg.InterfaceError)

REGISTRY_POLL_S = 5.0
SNAPSHOT_EVERY_S = 60.0
RETENTION_EVERY_S = 3600.0
TICK_S = 1.0
DETECT_GATHER_S = 0.02
DB_RETRY_MAX_S = 10.0
DETECT_RETRY_S = 0.5
EVENTS_SESSION = 1  # Held.session of messages from the event channel's own MQTT session
EMERGENCY_KINDS = frozenset({FindingKind.SOS, FindingKind.FALL})
COMPONENT_DRAIN_S = 10.0
COMPONENT_READY_S = 10.0
DERIVED_HELD_MAX = 500_000


class GaveUp(Exception):
    """Stopping, and the database stayed away past ingest.stop_wait_s: `messages` not stored."""

    def __init__(self, messages: int) -> None:
        super().__init__(f"{messages} messages not stored")
        self.messages = messages


@dataclass(slots=True)
class Stats:
    """Counters for tests, logs and metrics; touched only on the event loop thread."""

    flushes: int = 0
    written: WriteResult = field(default_factory=WriteResult)
    acked: int = 0
    write_errors: int = 0
    derived_dropped: int = 0  # rates computed from waveforms not stored: too many waiting


class Component(Protocol):
    """A part of the service beside ingest and detection (the alerts, with their web console).

    `run` is started once the database and broker are open and is cancelled at stop, after
    `drain`; `on_finding` is called on the event loop for every finding and must not block.
    """

    name: str
    serves_http: bool  # the service listens on http.addr before it takes a message
    ready: asyncio.Event  # set once it can take findings (the service is ready after it)

    def on_finding(self, finding: Finding) -> None:
        """As soon as it is decided, before it is stored (the emergency fallback watches)."""
        ...

    def on_stored(self, findings: Sequence[tuple[int, Finding]]) -> None:
        """Once committed, with the row ids of `findings`: the durable hand-off."""
        ...

    async def run(self, host: Host) -> None: ...

    async def drain(self) -> None:
        """Until what it was given is taken in (called at stop, before `run` is cancelled)."""
        ...


class ServiceHost:
    """What the service offers its components (`alerts.host.Host`): its clock, commands to
    devices on its MQTT session, and its HTTP server with /metrics and /health."""

    def __init__(self, service: Service) -> None:
        self._service = service

    def clock(self) -> EpochMs:
        return self._service.clock()

    def send_command(self, device_id: str, payload: bytes) -> None:
        prefix = self._service.settings.mqtt.topic_prefix
        self._service.publish(f"{prefix}/{device_id}/cmd", payload)

    def database_away(self) -> bool:
        return self._service.database_away

    async def serve_http(self, web: Web) -> None:
        service = self._service
        if service.http_socket is None:
            raise HttpUnavailable("no component asked for HTTP at start")
        app = make_app(web, broker_up=service.broker_up)
        await serve(app, service.http_socket, closing=web.closing)


class Service:
    """BedWatch's main job: ingest, detect, store, acknowledge, and hand findings on."""

    def __init__(
        self,
        settings: Settings,
        *,
        components: Sequence[Component] = (),
        clock: Callable[[], EpochMs] = wall_ms,
    ) -> None:
        self.settings = settings
        self.components = list(components)
        self.clock = clock
        self.stats = Stats()
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()
        # Set once the last detector output is in: the flush loop then drains and ends.
        self._drain = asyncio.Event()
        self._stop_deadline: float | None = None  # set by stop(): when to give up storing
        self.unstored = 0  # messages left unstored at stop (the database was away)
        self.database_away = False  # the last write failed for want of the database
        self._derived: list[Record] = []
        self._findings: list[Finding] = []
        self._summaries: list[NightSummary] = []
        self.detectors = DetectorProcess(
            on_finding=self._on_finding,
            on_derived=self.add_derived,
            on_summary=self._summaries.append,
            clock=clock,
        )
        self._store = Store(settings.database.url, keep_wave=settings.ingest.keep_wave)
        self._decoder = Decoder(
            devices={},
            prefix=settings.mqtt.topic_prefix,
            max_payload_bytes=settings.ingest.max_payload_bytes,
            max_batch_samples=settings.ingest.max_batch_samples,
            future_skew_limit_ms=settings.ingest.future_skew_limit_s * 1000,
            stale_after_ms=settings.ingest.stale_after_s * 1000,
        )
        self.intake: Intake | None = None
        self.mqtt: MqttSession | None = None
        # SOS presses and falls come on a session of their own: at the broker they never wait
        # behind telemetry queued for the service (after a restart, say).
        self.mqtt_events: MqttSession | None = None
        self._emergencies = Emergencies()
        self._emergency_writer = EmergencyWriter(settings.database.url)
        self.http_socket: socket.socket | None = None

    def stop(self) -> None:
        """Ask the service to drain and finish (also what SIGTERM does)."""
        if not self._stop.is_set():
            self._stop_deadline = time.monotonic() + self.settings.ingest.stop_wait_s
        self._stop.set()

    def add_derived(self, records: Sequence[MattressSample]) -> None:
        """Records computed here (heart and breathing rate from waveforms), stored next flush.

        While the database is away they wait, up to DERIVED_HELD_MAX rows; later ones are
        dropped (they were already analysed; only the stored copy is lost).
        """
        if len(self._derived) >= DERIVED_HELD_MAX:
            if not self.stats.derived_dropped:
                log.warning(
                    "%d rates from waveforms waiting to be stored: dropping more", DERIVED_HELD_MAX
                )
            self.stats.derived_dropped += len(records)
            return
        self._derived.extend(records)

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        """Publish to devices (commands such as `sos_ack`) on the service's own session."""
        if self.mqtt is None:
            raise RuntimeError("the service is not connected")
        self.mqtt.publish(topic, payload, qos)

    def broker_up(self) -> bool:
        return all(
            session is not None and session.connected.is_set()
            for session in (self.mqtt, self.mqtt_events)
        )

    def _on_finding(self, finding: Finding) -> None:
        if finding.kind in EMERGENCY_KINDS and not finding.late:
            return  # decided where it was decoded (_emergency_loop); the worker keeps its state
        self._findings.append(finding)
        if finding.severity is Severity.CRITICAL and not finding.late and self.intake is not None:
            self.intake.flush_wanted.set()  # stored, then handed over, without waiting
        self._announce(finding)

    def _announce(self, finding: Finding) -> None:
        """A finding just decided, not yet stored: counted, and shown to the components."""
        metrics.FINDINGS.labels(finding.kind, finding.severity, str(finding.cleared).lower()).inc()
        for component in self.components:
            try:
                component.on_finding(finding)
            except Exception:
                log.exception("%s failed on a %s finding", component.name, finding.kind)

    async def _emergency_loop(self) -> None:
        """Until the intake is closed and what it took before is decided."""
        assert self.intake is not None
        while True:
            await self.intake.emergency_ready.wait()
            self.intake.emergency_ready.clear()
            closed = self.intake.closed  # before the take: nothing comes after it
            await self._decide_emergencies(self.intake.take_emergencies())
            if closed:
                return

    async def _decide_emergencies(self, events: Sequence[DeviceEvent]) -> None:
        """Decided, stored and handed to the alert engine at once, before and apart from the
        rest of detection; if the database does not take them now, they go with the next batch
        (and the emergency fallback, watching from here, pages if that takes too long)."""
        findings = [f for event in events for f in self._emergencies.step(event)]
        if not findings:
            return
        for finding in findings:
            self._announce(finding)
        try:
            ids = await self._emergency_writer.store(findings)
        except BaseException as exc:
            if isinstance(exc, DATABASE_AWAY):
                self.database_away = True  # the direct page need not wait out its grace
            self._findings.extend(findings)
            if self.intake is not None:
                self.intake.flush_wanted.set()
            if not isinstance(exc, Exception):
                raise
            log.warning("emergency findings go with the next batch: %s", exc)
            return
        self._hand_over(list(zip(ids, findings, strict=True)))

    def _hand_over(self, stored: Sequence[tuple[int, Finding]]) -> None:
        if not stored:
            return
        for component in self.components:
            try:
                component.on_stored(stored)
            except Exception:
                log.exception("%s failed on %d stored findings", component.name, len(stored))

    async def run(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self.detectors.start(loop)
        try:
            await self._run(loop)
        finally:
            if self.http_socket is not None:
                self.http_socket.close()
            if self.intake is None:
                # The start failed before any input (the database refused, say): nothing to
                # finish, and a worker still importing need not be waited for.
                self.detectors.abandon()
            else:
                self.detectors.stop()
                await asyncio.to_thread(self.detectors.join)

    async def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        settings = self.settings
        if any(c.serves_http for c in self.components):
            self.http_socket = listen(settings.http.addr)
        # Open in order: database (schema, registry), then the broker session, then workers.
        await asyncio.to_thread(self._prepare_database)
        self.intake = Intake(
            self._decoder,
            loop,
            flush_max_rows=settings.ingest.flush_max_rows,
            max_held_qos0_bytes=settings.ingest.max_held_qos0_mb * 1_000_000,
            events_session=EVENTS_SESSION,
        )
        # Everything still comes on the main session, so a topic outside the protocol is seen
        # and quarantined; its copies of events are only acknowledged.
        self.mqtt = MqttSession(settings.mqtt, self.intake.on_message)
        self.mqtt_events = MqttSession(
            settings.mqtt,
            partial(self.intake.on_message, session=EVENTS_SESSION),
            client_id=f"{settings.mqtt.client_id}-events",
            channels=("+/event",),
            user_suffix="-events",
        )
        metrics.watch(
            written=self.stats.written,
            detect_batches=lambda: self.detectors.backlog,
            ingest=lambda: (self.intake, self.mqtt),
        )
        self.mqtt_events.start()
        self.mqtt.start()
        try:
            async with asyncio.TaskGroup() as tasks:
                flush = tasks.create_task(self._flush_loop(), name="flush_loop")
                # Not cancelled at the stop: an emergency cut off between decided and stored
                # would only go with the last batch, after all the rest of detection.
                emergencies = tasks.create_task(self._emergency_loop(), name="emergency_loop")
                workers = [
                    tasks.create_task(self._detect_loop(), name="detect_loop"),
                    tasks.create_task(self._tick_loop(), name="tick_loop"),
                    tasks.create_task(self._registry_loop(), name="registry_loop"),
                    tasks.create_task(self._retention_loop(), name="retention_loop"),
                    tasks.create_task(self._snapshot_loop(), name="snapshot_loop"),
                ]
                components = [
                    tasks.create_task(c.run(ServiceHost(self)), name=f"{c.name}_component")
                    for c in self.components
                ]
                # Ready once the components are: the alert path open and warm, or given up on
                # for now (it keeps starting in the background; the fallback pages meanwhile).
                await self._components_ready()
                self.ready.set()
                await self._stop.wait()
                log.info("stopping: no more intake; storing what is held")
                self.intake.close()
                for task in workers:
                    task.cancel()
                # The stop runs the path in order. Emergencies first: the loop finishes what it
                # is deciding, takes the rest and ends. Then detection: what was taken but not
                # yet detected is detected now, late data too (once stored and acknowledged it
                # would not come again); the findings come back before the answer to sync().
                self.intake.emergency_ready.set()
                await emergencies
                self._detect(self.intake.take_to_detect())
                self.detectors.analyse_late()
                await self._detected()
                # Then storage and acks, the findings with their messages. The flush loop is
                # not cancelled: a write cut off half-way would leave its messages stored but
                # never acknowledged. It drains and returns by itself.
                self._drain.set()
                self.intake.flush_wanted.set()
                await flush
                # Then the hand-off: the components take what was stored (the alert engine
                # opens and pages its alerts) while they still run. What they do not take in
                # time is in the database, taken up at the next start.
                await self._drain_components()
                for task in components:
                    task.cancel()
        finally:
            # Close in reverse: the broker session ends (the broker keeps it, with anything
            # unacknowledged), then the database.
            await asyncio.gather(
                asyncio.to_thread(self.mqtt.stop), asyncio.to_thread(self.mqtt_events.stop)
            )
            await self._emergency_writer.close()
            await self.checkpoint()
            await asyncio.to_thread(self._store.close)
            log.info(
                "stopped: %d flushes, %d acks, %d samples stored",
                self.stats.flushes,
                self.stats.acked,
                self.stats.written.mattress,
            )

    async def _components_ready(self) -> None:
        waits = [asyncio.create_task(c.ready.wait()) for c in self.components]
        if not waits:
            return
        _, pending = await asyncio.wait(waits, timeout=COMPONENT_READY_S)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("ready, with %d component(s) still starting", len(pending))

    async def _drain_components(self) -> None:
        for component in self.components:
            try:
                await asyncio.wait_for(component.drain(), COMPONENT_DRAIN_S)
            except TimeoutError:
                log.error(
                    "%s did not take all it was given within %.0f s of the stop",
                    component.name,
                    COMPONENT_DRAIN_S,
                )
            except Exception:
                log.exception("%s failed to drain", component.name)

    def _prepare_database(self) -> None:
        db = self.settings.database
        ensure_database(db)
        if db.migrate_on_start:
            migrate(self.settings)
        with connect(db.url) as conn:
            self._decoder.devices = load_devices(conn)
            configs = load_resident_configs(conn)
            self.detectors.set_residents(configs)
            self._emergencies.set_residents(configs)
            self._registry_seen = registry_version(conn)
            blob = load_snapshot(conn)
        if blob is not None:
            try:
                self.detectors.restore(blob, self.clock())
                self._emergencies.restore(blob)
            except ValueError as exc:
                log.warning("detector state not restored, starting afresh: %s", exc)
        self._store.open()
        log.info(
            "database %s ready; %d devices registered",
            redact(db.url),
            len(self._decoder.devices),
        )

    async def _flush_loop(self) -> None:
        assert self.intake is not None
        interval = self.settings.ingest.flush_interval_s
        try:
            while not self._drain.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.intake.flush_wanted.wait(), interval)
                self.intake.flush_wanted.clear()
                await self._flush_once()
            await self._flush_all()
        except GaveUp as gave_up:
            self._gave_up(gave_up)

    async def _flush_all(self) -> None:
        assert self.intake is not None
        while self.intake.held_count or self._derived or self._findings or self._summaries:
            await self._flush_once()

    async def _detected(self) -> None:
        """Until the detector worker has handled everything handed to it so far. A worker that
        dies or hangs is started again and given that input again, so this is asked again."""
        while True:
            try:
                await self.detectors.sync()
                return
            except (RuntimeError, TimeoutError) as exc:
                deadline = self._stop_deadline
                if deadline is not None and time.monotonic() >= deadline:
                    log.error("stopping without the detectors' last output: %s", exc)
                    return
                log.warning("waiting for the detector worker: %s", exc)
                await asyncio.sleep(DETECT_RETRY_S)

    def _gave_up(self, gave_up: GaveUp) -> None:
        assert self.intake is not None
        self.unstored = gave_up.messages + len(self.intake.take_held())
        log.error(
            "stopping with %d messages not stored: the database stayed away for %.0f s; the"
            " broker delivers the QoS 1 ones again after a restart, QoS 0 ones are lost",
            self.unstored,
            self.settings.ingest.stop_wait_s,
        )

    async def _flush_once(self) -> None:
        assert self.intake is not None
        assert self.mqtt is not None
        held = self.intake.take_held()
        if held:
            # Detected before stored: what these messages lead to (findings above all) is
            # written with them, so none is acknowledged before what it decided is committed.
            self._detect(self.intake.take_to_detect())
            await self._detected()
        derived, self._derived = self._derived, []
        findings, self._findings = self._findings, []
        summaries, self._summaries = self._summaries, []
        if not (held or derived or findings or summaries):
            return
        started = time.perf_counter()
        ids: list[int] = []
        result = await asyncio.to_thread(
            self._write_until_stored, held, derived, findings, summaries, ids
        )
        # Acknowledge only now, in the order received: a crash before this line loses nothing,
        # the broker redelivers and the idempotent write makes the second copy a no-op.
        for number, session in enumerate((self.mqtt, self.mqtt_events)):
            if session is not None:
                session.ack_many((h.generation, h.mid, h.qos) for h in held if h.session == number)
        if ids:
            self._hand_over([(i, f) for i, f in zip(ids, findings, strict=True) if not f.late])
        elapsed = time.perf_counter() - started
        metrics.BATCH_SECONDS.observe(elapsed)
        self.stats.flushes += 1
        self.stats.acked += len(held)
        self.stats.written.add(result)

    def _write_until_stored(
        self,
        held: list[Held],
        derived: list[Record],
        findings: list[Finding],
        summaries: list[NightSummary],
        ids: list[int],
    ) -> WriteResult:
        delay = 0.5
        also = partial(
            detector_store.store_findings, findings=findings, summaries=summaries, ids=ids
        )
        while True:
            try:
                written = self._store.write([h.decoded for h in held], derived, also)
                self.database_away = False
                return written
            except DATABASE_AWAY as exc:
                self.database_away = True
                self.stats.write_errors += 1
                metrics.WRITE_ERRORS.inc()
                log.warning("database write failed (%s); retrying in %.1f s", exc, delay)
            deadline = self._stop_deadline
            if deadline is not None:
                if time.monotonic() >= deadline:
                    raise GaveUp(len(held))
                delay = min(delay, max(0.05, deadline - time.monotonic()))
            time.sleep(delay)
            delay = min(delay * 2, DB_RETRY_MAX_S)
            with contextlib.suppress(Exception):
                self._store.reopen()

    async def _detect_loop(self) -> None:
        assert self.intake is not None
        while True:
            await self.intake.detect_ready.wait()
            self.intake.detect_ready.clear()
            self._detect(self.intake.take_to_detect())
            # Under load, let messages gather for a moment: one hand-off to the worker (a few
            # system calls and thread switches each way) per batch rather than per message.
            # SOS presses and falls do not wait for it: they are decided on the emergency path.
            await asyncio.sleep(DETECT_GATHER_S)

    def _detect(self, items: Sequence[Decoded]) -> None:
        try:
            self.detectors.feed(items)
        except Exception:
            # Detection must not stop ingestion; the data is still stored.
            log.exception("%d messages not handed to the detectors", len(items))

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                self.detectors.tick(self.clock())
            except Exception:
                log.exception("detector clock tick failed")

    async def _registry_loop(self) -> None:
        while True:
            await asyncio.sleep(REGISTRY_POLL_S)
            try:
                await asyncio.to_thread(self._reload_registry)
            except Exception as exc:
                log.warning("registry reload failed: %s", exc)

    def _reload_registry(self) -> None:
        with connect(self.settings.database.url) as conn:
            version = registry_version(conn)
            if version == self._registry_seen:
                return
            self._decoder.devices = load_devices(conn)
            configs = load_resident_configs(conn)
            self._registry_seen = version
        # Detector state lives on the event loop thread: hand the new settings over there.
        self._loop.call_soon_threadsafe(self.detectors.set_residents, configs)
        self._loop.call_soon_threadsafe(self._emergencies.set_residents, configs)
        log.info("registry reloaded: %d devices", len(self._decoder.devices))

    async def _snapshot_loop(self) -> None:
        while True:
            await asyncio.sleep(SNAPSHOT_EVERY_S)
            await self.checkpoint()

    async def checkpoint(self) -> None:
        """Save the detector state, with everything it reflects already handed to storage (every
        minute and at stop)."""
        try:
            blob = await self.detectors.snapshot()
            await asyncio.to_thread(self._write_snapshot, blob)
        except Exception:
            log.exception("detector state not saved")

    def _write_snapshot(self, blob: bytes) -> None:
        with connect(self.settings.database.url) as conn:
            save_snapshot(conn, blob)

    async def _retention_loop(self) -> None:
        while True:
            try:
                deleted = await asyncio.to_thread(self._prune)
                if deleted:
                    log.info("retention: %d old rows deleted", deleted)
            except Exception as exc:
                log.warning("retention run failed: %s", exc)
            await asyncio.sleep(RETENTION_EVERY_S)

    def _prune(self) -> int:
        with connect(self.settings.database.url) as conn:
            return prune(conn, self.settings.retention)


def alerts_component(settings: Settings, *, notifier: Notifier | None = None) -> AlertsComponent:
    """The alerts component as `bedwatch run` has it, from the application's settings."""
    return AlertsComponent(
        settings.alerts,
        database_url=settings.database.url,
        notifier=notifier,
        reports=functools.partial(draw_sleep_reports, settings.database.url),
    )


async def run_service(settings: Settings) -> int:
    """`bedwatch run`: the service until SIGTERM or SIGINT; 0 after a clean stop, 1 if the
    database stayed away so long at the stop that messages were left unstored."""
    components = [alerts_component(settings)] if settings.alerts.enabled else []
    service = Service(settings, components=components)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, service.stop)

    async def once_ready() -> None:
        await service.ready.wait()
        tune_collector()  # the registry, the alert engine and the rest of the start are in

    tuned = asyncio.create_task(once_ready())
    try:
        await service.run()
    except DatabaseUnavailable as exc:
        log.error("%s", exc)
        return 1
    finally:
        tuned.cancel()
    return 1 if service.unstored else 0
