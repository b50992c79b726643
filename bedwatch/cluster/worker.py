"""The worker: claims partitions by lease, reads their input from JetStream, detects, stores, and
checkpoints each partition's stream position with its detector state in one transaction.

For each partition it owns, a worker reads two ordered consumers:
- the partition's whole input (`bw.<p>.>`: telemetry, wave, status and events, in stream order),
  decoded, stored idempotently and run through the partition's own DetectorRunner. Every
  `checkpoint_every_s` the rows, the findings, the night summaries, the detector state and the
  stream sequence reached commit in one transaction guarded by the lease's epoch;
- the partition's emergency lane (`bw.<p>.ev.>`), decided at once (detectors.events.Emergencies,
  as one `bedwatch run` decides them) and committed on a connection of its own, with the lane's
  position, so an SOS never waits for a checkpoint or a backlog.

A new owner loads the state and reads on from the positions committed with it: replay is exact
and bounded by one checkpoint interval. Findings go to the alert engine through the findings
table (unhandled rows, taken in order), as in one `bedwatch run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from bedwatch.cluster import leases
from bedwatch.cluster.bridge import (
    EVENT_LANE,
    RECEIVED_HEADER,
    ROOT,
    TOPIC_HEADER,
    BridgeSettings,
    close_quietly,
    connect_nats,
    ensure_stream,
    unless_stopped,
)
from bedwatch.cluster.leases import Fenced, Lease
from bedwatch.cluster.partitions import PARTITIONS, owner_of, partition_of
from bedwatch.detector_store import EmergencyWriter, load_resident_configs, store_findings
from detectors.events import Emergencies
from detectors.findings import Finding, FindingKind
from detectors.nights import NightSummary
from detectors.runner import DetectorRunner
from detectors.settings import ResidentConfig
from ingest.intake import InOrder
from ingest.protocol import Decoded, Decoder, DeviceInfo
from ingest.records import DeviceEvent, DeviceId, MattressSample, Record, ResidentId
from ingest.registry import load_devices, registry_version
from ingest.store import Store

log = logging.getLogger(__name__)

EMERGENCY_KINDS = frozenset({FindingKind.SOS, FindingKind.FALL})
LAG_EVERY_S = 5.0


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    lease_ttl_s: float = 10.0  # a dead worker's partitions are taken over after this
    rebalance_every_s: float = 1.0  # heartbeat, renew, and look at who is alive
    checkpoint_every_s: float = 1.0
    checkpoint_max_messages: int = 5_000  # per partition: a checkpoint sooner than the interval
    registry_every_s: float = 5.0
    partitions: int = PARTITIONS
    take_per_round: int = PARTITIONS  # partitions taken in one round


class Partition:
    """One owned partition: its detectors, what it has read since its last checkpoint."""

    def __init__(self, lease: Lease, residents: Mapping[ResidentId, ResidentConfig]) -> None:
        self.lease = lease
        self.number = lease.partition
        self.findings: list[Finding] = []
        self.derived: list[Record] = []
        self.summaries: list[NightSummary] = []
        self.pending: list[Decoded] = []
        self.position = lease.position  # the stream sequence read so far
        self.runner = DetectorRunner(
            residents=residents,
            on_finding=self._on_finding,
            on_derived=self._on_derived,
            on_summary=self.summaries.append,
        )
        self.emergencies = Emergencies()
        self.emergencies.set_residents(residents)
        if lease.state:
            self.runner.restore(lease.state)
            self.runner.resume(int(time.time() * 1000))
            self.emergencies.restore(lease.state)
        self.in_order = InOrder(self.runner)
        self.subscriptions: list[Any] = []
        self.fenced = False

    def _on_finding(self, finding: Finding) -> None:
        if finding.kind in EMERGENCY_KINDS and not finding.late:
            return  # decided on the emergency lane; the runner keeps its state
        self.findings.append(finding)

    def _on_derived(self, records: Sequence[MattressSample]) -> None:
        self.derived.extend(records)

    def read(self, decoded: Decoded, sequence: int) -> None:
        self.pending.append(decoded)
        self.in_order.feed(decoded)
        self.position = sequence

    def set_residents(self, residents: Mapping[ResidentId, ResidentConfig]) -> None:
        self.runner.set_residents(residents)
        self.emergencies.set_residents(residents)


@dataclass(slots=True)
class _Cut:
    """What one checkpoint writes for one partition, taken on the event loop in one go."""

    partition: Partition
    messages: list[Decoded]
    derived: list[Record]
    findings: list[Finding]
    summaries: list[NightSummary]
    position: int
    state: bytes


@dataclass(slots=True)
class WorkerStats:
    read: int = 0
    checkpoints: int = 0
    fenced: int = 0
    acquired: int = 0
    released: int = 0
    emergencies: int = 0
    lag: dict[int, int] = field(default_factory=dict)


class Worker:
    def __init__(
        self,
        database_url: str,
        bridge: BridgeSettings,
        settings: WorkerSettings,
        *,
        prefix: str = "bedwatch/v1",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = database_url
        self._bridge = bridge
        self.settings = settings
        self.id = settings.worker_id
        self._prefix = prefix
        self._clock = clock
        self.stats = WorkerStats()
        self.partitions: dict[int, Partition] = {}
        self._devices: dict[DeviceId, DeviceInfo] = {}
        # The registry's residents by partition: grouped once per registry change, not once per
        # partition taken (a partition's share is 1/256 of a city's residents).
        self._by_partition: dict[int, dict[ResidentId, ResidentConfig]] = {}
        self._registry: tuple[object, ...] = ()
        self._decoder = Decoder(self._devices, prefix=prefix)
        self._store = Store(database_url)
        self._store_lock = asyncio.Lock()
        self._emergency = EmergencyWriter(database_url)
        self._js: JetStreamContext | None = None
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self, ready: asyncio.Event | None = None) -> None:
        """Until stop(): then every partition is checkpointed and released for the others.
        Cancelled (or failing), it ends everything it started and leaves its leases to run out,
        as a worker that dies does."""
        nc = await unless_stopped(connect_nats(self._bridge, f"worker-{self.id}"), self._stop)
        if nc is None:
            log.info("worker %s stopped before NATS answered", self.id)
            return
        self._js = nc.jetstream()
        background: list[asyncio.Task[None]] = []
        conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
        try:
            await ensure_stream(self._js, self._bridge)
            await self._load_registry()
            await leases.join(conn, self.id, {"host": socket.gethostname(), "pid": os.getpid()})
            log.info("worker %s joined", self.id)
            background += [
                asyncio.create_task(self._checkpoint_loop(), name="checkpoints"),
                asyncio.create_task(self._keep_alive(), name="leases"),
                asyncio.create_task(self._lag_loop(), name="lag"),
            ]
            registry_at = time.monotonic()
            while not self._stop.is_set():
                await self._rebalance(conn)
                if ready is not None:
                    ready.set()
                if time.monotonic() - registry_at >= self.settings.registry_every_s:
                    registry_at = time.monotonic()
                    await self._load_registry()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.settings.rebalance_every_s)
            # A graceful stop: the others stop counting us in, and take over at once what we
            # release after the last checkpoint.
            await leases.leave(conn, self.id)
            # Not while a checkpoint is half done: its write would go on in its thread, its
            # cut lost to the last checkpoint, which would commit a position past its rows.
            async with self._store_lock:
                await _cancel(background)
            await self._let_go_of_all(conn)
            await leases.forget(conn, self.id)
            log.info("worker %s left", self.id)
        finally:
            await _cancel(background)
            for part in self.partitions.values():
                part.fenced = True  # nothing more is written for them from here
            await conn.close()
            await self._emergency.close()
            await asyncio.to_thread(self._store.close)
            await close_quietly(nc)

    # --- who owns what

    async def _keep_alive(self) -> None:
        """Heartbeat and lease renewal on a connection and a task of their own, so that taking
        partitions over or a slow checkpoint never lets a lease run out."""
        every = min(self.settings.rebalance_every_s, self.settings.lease_ttl_s / 4)
        async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn:
            while True:
                try:
                    await leases.heartbeat(conn, self.id)
                    held = {n: p.lease.epoch for n, p in self.partitions.items()}
                    kept = await leases.renew(conn, self.id, held, self.settings.lease_ttl_s)
                    for number in set(held) - kept:
                        if number in self.partitions:  # not let go meanwhile
                            log.warning("partition %d: lease lost; stopping work on it", number)
                            await self._drop(number)
                except (psycopg.Error, OSError) as exc:
                    # Not renewed: past the lease, the partitions are dropped at the next try.
                    log.warning("leases not renewed: %s", exc)
                await asyncio.sleep(every)

    async def _rebalance(self, conn: leases.AsyncConn) -> None:
        live = await leases.live_workers(conn, self.settings.lease_ttl_s)
        if self.id not in live:
            live.append(self.id)
        mine = {p for p in range(self.settings.partitions) if owner_of(p, sorted(live)) == self.id}
        for number in sorted(set(self.partitions) - mine):
            await self._let_go(conn, number, checkpoint=True)
        wanted = sorted(mine - set(self.partitions))[: self.settings.take_per_round]
        # Those whose owner has not let go yet are tried again next round.
        taken = await leases.acquire(conn, wanted, self.id, self.settings.lease_ttl_s)
        await asyncio.gather(*(self._take(lease) for lease in taken))

    async def _take(self, lease: Lease) -> None:
        residents = self._residents_of(lease.partition)
        part = Partition(lease, residents)
        self.partitions[lease.partition] = part
        self.stats.acquired += 1
        n = lease.partition
        part.subscriptions += [
            await self._follow(f"{ROOT}.{n}.>", lease.position, self._reader(part)),
            await self._follow(
                f"{ROOT}.{n}.{EVENT_LANE}.>", lease.events_at, self._emergency_reader(part)
            ),
        ]
        log.info("partition %d taken (epoch %d, from %d)", n, lease.epoch, lease.position)

    async def _follow(self, subject: str, after: int, cb: Callable[[Msg], Any]) -> Any:
        """An ordered consumer of the subject from the sequence after `after`."""
        assert self._js is not None
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after + 1
        )
        return await self._js.subscribe(subject, ordered_consumer=True, cb=cb, config=config)

    async def _let_go(self, conn: leases.AsyncConn, number: int, *, checkpoint: bool) -> None:
        part = self.partitions.get(number)
        if part is None:
            return
        await self._unsubscribe(part)
        if checkpoint and not part.fenced:
            try:
                await self._checkpoint([part])
            except Exception as exc:
                # Released all the same: the next owner replays from the last checkpoint.
                log.warning("partition %d: last checkpoint failed (%s)", number, exc)
        self.partitions.pop(number, None)
        if not part.fenced:
            await leases.release(conn, number, self.id, part.lease.epoch)
            self.stats.released += 1

    async def _let_go_of_all(self, conn: leases.AsyncConn) -> None:
        """A graceful stop: every partition checkpointed in one transaction and released in one
        statement, so the others take them at their next look (one partition after the other
        took seconds on a busy machine)."""
        parts = list(self.partitions.values())
        await asyncio.gather(*(self._unsubscribe(part) for part in parts))
        try:
            await self._checkpoint(parts)
        except Exception as exc:
            # Released all the same: the next owners replay from the last checkpoints.
            log.warning("last checkpoint failed (%s)", exc)
        held = {part.number: part.lease.epoch for part in parts if not part.fenced}
        self.partitions.clear()
        self.stats.released += len(await leases.release_all(conn, self.id, held))

    async def _drop(self, number: int) -> None:
        """The lease is gone: stop at once, write nothing more (another worker replays it)."""
        part = self.partitions.pop(number, None)
        if part is not None:
            part.fenced = True
            await self._unsubscribe(part)

    async def _unsubscribe(self, part: Partition) -> None:
        subscriptions, part.subscriptions = part.subscriptions, []
        for sub in subscriptions:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _lag_loop(self) -> None:
        """How far each owned partition's reading is behind the stream, for /metrics."""
        while True:
            await asyncio.sleep(LAG_EVERY_S)
            lag: dict[int, int] = {}
            for number, part in list(self.partitions.items()):
                if not part.subscriptions:
                    continue
                with contextlib.suppress(Exception):
                    info = await part.subscriptions[0].consumer_info()
                    lag[number] = int(info.num_pending or 0)
            self.stats.lag = lag

    # --- reading

    def _reader(self, part: Partition) -> Callable[[Msg], Any]:
        async def on_message(msg: Msg) -> None:
            if part.fenced or part.number not in self.partitions:
                return
            part.read(self._decode(msg), msg.metadata.sequence.stream)
            self.stats.read += 1
            if len(part.pending) >= self.settings.checkpoint_max_messages:
                await self._checkpoint([part])

        return on_message

    def _emergency_reader(self, part: Partition) -> Callable[[Msg], Any]:
        async def on_event(msg: Msg) -> None:
            if part.fenced or part.number not in self.partitions:
                return
            decoded = self._decode(msg)
            events = [r for r in decoded.records if isinstance(r, DeviceEvent)]
            findings = [f for e in events for f in part.emergencies.step(e)]
            sequence = msg.metadata.sequence.stream
            await self._store_emergencies(part, findings, sequence)

        return on_event

    async def _store_emergencies(
        self, part: Partition, findings: Sequence[Finding], sequence: int
    ) -> None:
        """Committed at once with the lane's position; retried until stored or fenced (the
        emergency lane never skips an event: the next one waits behind it)."""
        wait = 0.1
        while not part.fenced:
            try:
                await self._emergency.store_with(
                    findings,
                    lambda conn: leases.events_checkpoint(
                        conn, part.number, self.id, part.lease.epoch, sequence, notify=True
                    ),
                )
                self.stats.emergencies += len(findings)
                return
            except Fenced:
                await self._fenced(part)
                return
            except Exception as exc:
                log.warning(
                    "partition %d: emergency not stored yet (%s); retrying", part.number, exc
                )
                await asyncio.sleep(wait)
                wait = min(2.0, wait * 2)

    def _decode(self, msg: Msg) -> Decoded:
        headers = msg.headers or {}
        topic = headers.get(TOPIC_HEADER, "")
        try:
            received = int(headers.get(RECEIVED_HEADER, ""))
        except ValueError:
            received = int(self._clock() * 1000)
        return self._decoder.decode(topic, msg.data, received)

    # --- checkpoints

    async def _checkpoint_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.checkpoint_every_s)
            now_ms = int(self._clock() * 1000)
            for part in self.partitions.values():
                part.runner.tick(now_ms)
            try:
                await self._checkpoint(list(self.partitions.values()))
            except Exception as exc:
                log.warning("checkpoint failed (%s); the input is kept and tried again", exc)

    async def _checkpoint(self, parts: Sequence[Partition]) -> None:
        """One transaction for these partitions' rows and positions; a fenced partition is
        dropped and the others written again without it."""
        async with self._store_lock:
            ordered = sorted(parts, key=lambda p: p.number)  # rows locked in partition order
            cuts = [self._cut(p) for p in ordered if not p.fenced]
            while cuts:
                try:
                    await asyncio.to_thread(self._write, cuts)
                    self.stats.checkpoints += len(cuts)
                    return
                except Fenced as exc:
                    fenced = self.partitions.get(exc.partition)
                    cuts = [c for c in cuts if c.partition.number != exc.partition]
                    if fenced is not None:
                        await self._fenced(fenced)
                except Exception:
                    # Nothing was stored: the cut goes back in front of what came since.
                    for cut in reversed(cuts):
                        self._restore(cut)
                    raise

    def _cut(self, part: Partition) -> _Cut:
        cut = _Cut(
            part,
            part.pending,
            part.derived,
            part.findings,
            part.summaries,
            part.position,
            part.runner.snapshot(),
        )
        part.pending, part.derived, part.findings = [], [], []
        part.summaries.clear()
        return cut

    def _restore(self, cut: _Cut) -> None:
        part = cut.partition
        part.pending[:0] = cut.messages
        part.derived[:0] = cut.derived
        part.findings[:0] = cut.findings
        part.summaries[:0] = cut.summaries

    def _write(self, cuts: Sequence[_Cut]) -> None:
        messages = [m for c in cuts for m in c.messages]
        derived = [r for c in cuts for r in c.derived]

        def also(cur: psycopg.Cursor[tuple[object, ...]]) -> None:
            if any(c.findings for c in cuts):
                cur.execute("SELECT pg_notify(%s, '')", (leases.FINDINGS_CHANNEL,))  # at the commit
            for cut in cuts:
                store_findings(cur, cut.findings, cut.summaries)
                leases.checkpoint(
                    cur,
                    cut.partition.number,
                    self.id,
                    cut.partition.lease.epoch,
                    position=cut.position,
                    state=cut.state,
                )

        self._store.write(messages, derived, also)

    async def _fenced(self, part: Partition) -> None:
        log.warning("partition %d: epoch %d superseded; dropped", part.number, part.lease.epoch)
        self.stats.fenced += 1
        await self._drop(part.number)
        with contextlib.suppress(Exception):
            async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as c:
                await leases.record_fenced(c, part.number, self.id, part.lease.epoch)

    # --- the registry

    async def _load_registry(self) -> None:
        def load() -> tuple[tuple[object, ...], dict[DeviceId, DeviceInfo], dict[Any, Any]]:
            with psycopg.connect(self._url) as conn:
                version = registry_version(conn)
                if version == self._registry:
                    return version, {}, {}
                return version, load_devices(conn), load_resident_configs(conn)

        version, devices, configs = await asyncio.to_thread(load)
        if version == self._registry:
            return
        self._registry = version
        self._devices.clear()
        self._devices.update(devices)
        self._by_partition = {}
        for rid, config in configs.items():
            number = partition_of(rid, self.settings.partitions)
            self._by_partition.setdefault(number, {})[rid] = config
        for number, part in self.partitions.items():
            part.set_residents(self._residents_of(number))

    def _residents_of(self, number: int) -> dict[ResidentId, ResidentConfig]:
        return dict(self._by_partition.get(number, {}))


async def _cancel(tasks: Sequence[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
