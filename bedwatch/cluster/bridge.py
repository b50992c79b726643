"""The bridge: MQTT in, NATS JetStream out, a message acknowledged to the broker only once the
stream has it.

NATS's own MQTT acknowledgement does not cover a user stream (shared/SCALE-OUT.md: a stream
capturing MQTT subjects lost 660 of 2,400 acknowledged messages when its leader was killed). So
the bridge holds a persistent QoS 1 session with manual acks, publishes each message with a
`Nats-Msg-Id` (retransmissions of the same bytes are dropped by the stream's duplicate window)
and acknowledges to MQTT after the JetStream ack. A message the bridge never acknowledged stays in
its session and comes again, to this bridge or the next one.

SOS and falls never queue behind telemetry: events come on an MQTT session of their own, are
published by workers of their own, and go to a lane of their own (`bw.<p>.ev.*`), which the worker
reads with a consumer of its own.

The bridge decodes nothing but the topic: routing needs only the device, looked up in the
registry for its resident, whose partition the subject names
(`bw.<partition>.<lane>.<device>.<channel>`).
Resident ids are free text in the site file, so they stay out of subjects. A topic outside the
protocol still travels (to the partition of its topic, with '_' for the device): the worker
quarantines it with its reason, as one `bedwatch run` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import ssl
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import nats
from nats.aio.client import Client as Nats
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig

from bedwatch.cluster.partitions import partition_of
from bedwatch.cluster.settings import ClusterSettings, shown, urls_of
from ingest.mqtt import MqttSession
from ingest.protocol import DEVICE_ID
from ingest.records import Channel, DeviceId, ResidentId
from ingest.settings import MqttSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

STREAM = "BW_IN"
ROOT = "bw"
# The lane, after the partition: a worker reads `bw.<p>.>` (all of a partition, in order) and
# `bw.<p>.ev.>` (its emergencies apart); a consumer's filter must be a subset of the stream's
# subjects, so the lanes share one root.
DATA_LANE = "in"
EVENT_LANE = "ev"
TOPIC_HEADER = "Bw-Topic"  # the MQTT topic as received
RECEIVED_HEADER = "Bw-Received-Ms"  # when the bridge received it (the device's time may be off)
_CHANNELS = frozenset(c.value for c in Channel if c is not Channel.CMD)
PUBLISH_TIMEOUT_S = 2.0
RETRY_FIRST_S = 0.1
RETRY_MAX_S = 2.0


@dataclass(frozen=True, slots=True)
class BridgeSettings:
    """What bridges and workers share of NATS (made from the [cluster] settings section)."""

    nats_url: str = "nats://127.0.0.1:4222"  # several servers: comma-separated
    stream: str = STREAM
    replicas: int = 1  # 3 on a cluster
    max_age_s: int = 3 * 86_400  # the replay window
    duplicate_window_s: int = 120
    telemetry_in_flight: int = 64  # publishes awaiting their JetStream ack, per lane
    event_in_flight: int = 8
    registry_every_s: float = 5.0
    tls: ssl.SSLContext | None = None  # our CA and client certificate, across machines
    creds_file: str = ""  # NATS credentials

    @classmethod
    def of(cls, cluster: ClusterSettings) -> BridgeSettings:
        return cls(
            nats_url=cluster.nats_url,
            stream=cluster.stream,
            replicas=cluster.replicas,
            max_age_s=cluster.max_age_s,
            tls=cluster.tls(),
            creds_file=cluster.creds_file,
        )


@dataclass(frozen=True, slots=True)
class Routed:
    subject: str
    msg_id: str
    event: bool


def route(
    topic: str, payload: bytes, prefix: str, residents: Mapping[DeviceId, ResidentId | None]
) -> Routed:
    """Where a message goes: its subject, its dedupe id, whether it is an emergency's lane."""
    rest = topic[len(prefix) + 1 :] if topic.startswith(prefix + "/") else ""
    device, _, channel = rest.partition("/")
    valid = bool(DEVICE_ID.fullmatch(device)) and channel in _CHANNELS
    resident = residents.get(DeviceId(device)) if valid else None
    key = resident or (device if valid else topic)
    lane = EVENT_LANE if valid and channel == Channel.EVENT else DATA_LANE
    where = f"{device}.{channel}" if valid else "_._"
    subject = f"{ROOT}.{partition_of(key)}.{lane}.{where}"
    # The same bytes on the same topic are the same message: MQTT redelivers them unchanged. A
    # device that restarts its seq sends different bytes, which must not be taken for repeats.
    digest = hashlib.blake2b(topic.encode() + b"\0" + payload, digest_size=16).hexdigest()
    return Routed(subject, digest, lane == EVENT_LANE)


@dataclass(slots=True)
class _Item:
    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int
    received_ms: int
    session: MqttSession


@dataclass(slots=True)
class BridgeStats:
    published: int = 0
    acked: int = 0
    retries: int = 0
    events: int = 0
    last_error: str | None = None


class Bridge:
    """Two MQTT sessions (telemetry and the rest; events) into one stream."""

    def __init__(
        self,
        mqtt: MqttSettings,
        settings: BridgeSettings,
        residents: Mapping[DeviceId, ResidentId | None],
    ) -> None:
        self._mqtt = mqtt
        self._settings = settings
        self.residents: Mapping[DeviceId, ResidentId | None] = residents
        self.stats = BridgeStats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._telemetry: asyncio.Queue[_Item] = asyncio.Queue()
        self._events: asyncio.Queue[_Item] = asyncio.Queue()
        self._nc: Nats | None = None
        self._js: JetStreamContext | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._stopping = False
        self._accepting = True
        self.sessions = [
            MqttSession(
                mqtt,
                self._on_message,
                client_id=f"{mqtt.client_id}-bridge",
                channels=("+/telemetry", "+/wave", "+/status"),
                user_suffix="",
            ),
            MqttSession(
                mqtt,
                self._on_message,
                client_id=f"{mqtt.client_id}-bridge-events",
                channels=("+/event",),
                user_suffix="-events",
            ),
        ]

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._nc = await connect_nats(self._settings, f"{self._mqtt.client_id}-bridge")
        self._js = self._nc.jetstream(timeout=PUBLISH_TIMEOUT_S)
        await ensure_stream(self._js, self._settings)
        s = self._settings
        self._workers = [
            asyncio.create_task(self._publish_from(self._telemetry), name="bridge-telemetry")
            for _ in range(s.telemetry_in_flight)
        ] + [
            asyncio.create_task(self._publish_from(self._events), name="bridge-events")
            for _ in range(s.event_in_flight)
        ]
        for session in self.sessions:
            session.start()

    async def stop(self, drain_s: float = 5.0) -> None:
        """No more messages; what was received is published and acknowledged for `drain_s` at
        most (the rest stays unacknowledged in the broker's session, for the next bridge)."""
        # Messages arriving from now on are left unacknowledged: the broker gives them to the
        # session's next connection (this bridge's successor), and the stream drops any repeat.
        self._accepting = False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(drain_s):
                await self._events.join()
                await self._telemetry.join()
        self._stopping = True
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for session in self.sessions:
            await asyncio.to_thread(session.stop)
        if self._nc is not None:
            await close_quietly(self._nc)

    def _on_message(
        self, topic: bytes, payload: bytes, mid: int, qos: int, retain: bool, generation: int
    ) -> None:
        """On paho's thread: hand over to the event loop, in arrival order."""
        if not self._accepting or self._loop is None:
            return
        text = topic.decode("utf-8", "replace")
        session = self.sessions[1] if text.endswith("/event") else self.sessions[0]
        item = _Item(text, payload, mid, qos, generation, int(time.time() * 1000), session)
        queue = self._events if session is self.sessions[1] else self._telemetry
        self._loop.call_soon_threadsafe(queue.put_nowait, item)

    async def _publish_from(self, queue: asyncio.Queue[_Item]) -> None:
        while True:
            item = await queue.get()
            try:
                await self._publish(item)
            finally:
                queue.task_done()

    async def _publish(self, item: _Item) -> None:
        assert self._js is not None
        routed = route(item.topic, item.payload, self._mqtt.topic_prefix, self.residents)
        headers = {
            "Nats-Msg-Id": routed.msg_id,
            TOPIC_HEADER: item.topic,
            RECEIVED_HEADER: str(item.received_ms),
        }
        wait = RETRY_FIRST_S
        while True:
            try:
                await self._js.publish(routed.subject, item.payload, headers=headers)
                break
            except Exception as exc:
                # Not acknowledged, so never lost: try again until the stream takes it or the
                # bridge stops (then the broker keeps it for the next bridge).
                if self._stopping:
                    raise
                self.stats.retries += 1
                error = f"JetStream did not take {routed.subject}: {exc!r}"
                if error != self.stats.last_error:
                    log.warning("%s; retrying", error)
                self.stats.last_error = error
                await asyncio.sleep(wait)
                wait = min(RETRY_MAX_S, wait * 2)
        self.stats.published += 1
        self.stats.events += routed.event
        item.session.ack(item.generation, item.mid, item.qos)
        self.stats.acked += 1


async def ensure_stream(js: JetStreamContext, settings: BridgeSettings) -> None:
    """The input stream, created or brought to these settings (idempotent; every bridge and
    worker may call it at start)."""
    config = StreamConfig(
        name=settings.stream,
        subjects=[f"{ROOT}.>"],
        storage=StorageType.FILE,
        num_replicas=settings.replicas,
        max_age=float(settings.max_age_s),
        duplicate_window=float(settings.duplicate_window_s),
    )
    try:
        await js.stream_info(settings.stream)
    except nats.js.errors.NotFoundError:
        await js.add_stream(config)
        log.info("created stream %s (replicas %d)", settings.stream, settings.replicas)
        return
    await js.update_stream(config)


async def connect_nats(settings: BridgeSettings, name: str) -> Nats:
    """A NATS connection that keeps reconnecting, and says so once per outage, not per try."""
    said: set[str] = set()
    url = shown(settings.nats_url)

    async def on_error(exc: Exception) -> None:
        # Each error once per outage: a refused TLS handshake comes as two errors in turn.
        text = f"NATS at {url}: {exc!r}"
        if text not in said:
            log.warning("%s", text)
            said.add(text)

    async def on_reconnect() -> None:
        log.info("NATS at %s: connected again", url)
        said.clear()

    return await nats.connect(
        urls_of(settings.nats_url),
        name=name,
        tls=settings.tls,
        user_credentials=settings.creds_file or None,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        error_cb=on_error,
        reconnected_cb=on_reconnect,
    )


async def unless_stopped(step: Awaitable[T], stop: asyncio.Event) -> T | None:
    """`step`'s result, or None once `stop` is set first (then `step` is cancelled): connecting
    to NATS tries for ever, and a SIGTERM must not wait for it."""
    doing = asyncio.ensure_future(step)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({doing, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if doing.done():
        return doing.result()
    doing.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await doing
    return None


async def close_quietly(nc: Nats) -> None:
    """Close; a connection already lost has nothing left to flush."""
    try:
        await nc.close()
    except (ConnectionError, OSError) as exc:
        log.debug("NATS connection closed after it was lost: %r", exc)
