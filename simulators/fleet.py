"""MQTT transport for simulated devices: one paho client (own connection, id, Last Will) per device,
many of them driven by one selector loop through paho's socket callbacks."""

from __future__ import annotations

import contextlib
import heapq
import logging
import random
import resource
import selectors
import ssl
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum, auto
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from simulators.faults import FaultKind, Message
from simulators.night import Night
from simulators.scenarios import Role

log = logging.getLogger(__name__)

WILL_PAYLOAD = b'{"state":"offline"}'
MISC_EVERY_S = 2.0  # paho's keepalive bookkeeping per client; keepalive is 60 s, so plenty
MAX_IDLE_S = 0.05


@dataclass(frozen=True, slots=True)
class FleetOptions:
    host: str = "127.0.0.1"
    port: int = 1883
    prefix: str = "bedwatch/v1"
    speed: float = 1.0  # simulated seconds per wall second
    keepalive_s: int = 60
    connect_rate: float = 1000.0  # new connections a second, so the broker is not stormed
    password: str | None = None  # the device secret, when the broker asks for one
    # MQTT over TLS: the CA that signed the broker's certificate (None: the system's store),
    # and the device's certificate and key; "{device}" in a path becomes the device id.
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


def tls_context(options: FleetOptions, device_id: str) -> ssl.SSLContext:
    """What a device trusts and shows: a file that cannot be read or used raises OSError."""
    context = ssl.create_default_context(cafile=options.ca_file)
    if options.cert_file:
        key = options.key_file.replace("{device}", device_id) if options.key_file else None
        context.load_cert_chain(options.cert_file.replace("{device}", device_id), key)
    return context


class SimClock:
    """Simulated time: `start_ms` when started, then `speed` times as fast as the wall clock."""

    def __init__(self, start_ms: int, speed: float) -> None:
        self.start_ms = start_ms
        self.speed = speed
        self._t0: float | None = None

    def start(self) -> None:
        self._t0 = time.monotonic()

    def now_ms(self) -> int:
        if self._t0 is None:
            return self.start_ms
        return self.start_ms + int((time.monotonic() - self._t0) * 1000 * self.speed)

    def wall_s_until(self, sim_ms: int) -> float:
        return max(sim_ms - self.now_ms(), 0) / 1000 / self.speed


@dataclass(slots=True)
class FleetStats:
    devices: int = 0
    connected: int = 0
    published: int = 0
    acked: int = 0
    samples: int = 0
    payload_bytes: int = 0
    reconnects: int = 0
    power_cuts: int = 0
    commands: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


class State(Enum):
    IDLE = auto()
    CONNECTING = auto()
    CONNECTED = auto()
    POWERED_OFF = auto()


class SimDevice:
    """One device: its message stream, its paho client and what waits for a connection."""

    __slots__ = (
        "client",
        "device_id",
        "last_status",
        "loop",
        "next",
        "outbox",
        "retry_at",
        "role",
        "state",
        "stream",
        "write_armed",
    )

    def __init__(
        self, loop: FleetLoop, device_id: str, role: Role, stream: Iterator[Message]
    ) -> None:
        self.loop = loop
        self.device_id = device_id
        self.role = role
        self.stream = stream
        self.next: Message | None = next(stream, None)
        self.outbox: deque[Message] = deque()
        self.client: mqtt.Client | None = None
        self.state = State.IDLE
        self.write_armed = False
        self.retry_at = 0.0
        self.last_status: Message | None = None

    def advance(self) -> None:
        self.next = next(self.stream, None)


class FleetLoop:
    """Drives many paho clients from one thread: one selector, no thread per client."""

    def __init__(self, options: FleetOptions, clock: SimClock, stats: FleetStats) -> None:
        self.options = options
        self.clock = clock
        self.stats = stats
        self.devices: list[SimDevice] = []
        self._sel = selectors.DefaultSelector()
        self._due: list[tuple[int, int, SimDevice, bool]] = []  # (sim ms, order, device, power off)
        self._order = 0
        self._dirty: set[SimDevice] = set()
        self._misc_at = 0
        self._lock = threading.Lock()

    def add(self, night: Night, role: Role) -> SimDevice:
        device_id = (
            night.devices.mattress_id if role is Role.MATTRESS else night.devices.wristband_id
        )
        dev = SimDevice(self, device_id, role, night.device_messages(role))
        self.devices.append(dev)
        self.stats.devices += 1
        for f in night.script.faults:
            if f.kind is FaultKind.OFFLINE and f.role is role and night.in_window(f.start_s):
                self._push(night.plan.ms(f.start_s), dev, power_off=True)
        return dev

    # Connection management

    def connect(self, dev: SimDevice) -> None:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=dev.device_id,
            protocol=mqtt.MQTTv311,
            clean_session=True,
            userdata=dev,
        )
        client.username_pw_set(dev.device_id, self.options.password)
        will = f"{self.options.prefix}/{dev.device_id}/status"
        client.will_set(will, WILL_PAYLOAD, qos=1, retain=True)
        client.on_connect = _on_connect
        client.on_disconnect = _on_disconnect
        client.on_message = _on_message
        client.on_publish = _on_publish
        client.on_socket_open = self._socket_open
        client.on_socket_close = self._socket_close
        client.on_socket_register_write = self._register_write
        client.on_socket_unregister_write = self._unregister_write
        dev.client, dev.state = client, State.CONNECTING
        try:
            if self.options.tls:
                client.tls_set_context(tls_context(self.options, dev.device_id))
            client.connect(self.options.host, self.options.port, self.options.keepalive_s)
        except OSError as exc:
            log.debug("%s: connect failed: %s", dev.device_id, exc)
            self._retry_later(dev)

    def _retry_later(self, dev: SimDevice) -> None:
        dev.state = State.CONNECTING
        dev.retry_at = time.monotonic() + random.uniform(1.0, 5.0)

    def power_off(self, dev: SimDevice) -> None:
        """A power cut: the device just stops; the broker notices after 1.5 x keepalive."""
        client = dev.client
        sock = client.socket() if client is not None else None
        if sock is not None:
            with contextlib.suppress(KeyError, ValueError):  # the connection had already dropped
                self._sel.unregister(sock)
        if dev.state is State.CONNECTED:
            self.stats.connected -= 1
        dev.state = State.POWERED_OFF
        self.stats.power_cuts += 1
        log.info("%s: power cut", dev.device_id)

    def power_on(self, dev: SimDevice) -> None:
        old = dev.client
        sock = old.socket() if old is not None else None
        if sock is not None:
            sock.close()  # the old connection is dead; this one never said goodbye
        log.info("%s: power back, reconnecting", dev.device_id)
        self.connect(dev)

    # paho socket callbacks: how the selector learns about each client's socket

    def _socket_open(self, client: mqtt.Client, dev: SimDevice, sock: Any) -> None:
        self._sel.register(sock, selectors.EVENT_READ, dev)
        dev.write_armed = False

    def _socket_close(self, client: mqtt.Client, dev: SimDevice, sock: Any) -> None:
        if dev.client is client:
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(sock)

    def _register_write(self, client: mqtt.Client, dev: SimDevice, sock: Any) -> None:
        # Written in the next pass of the loop, all of them together.
        if dev.client is client:
            self._dirty.add(dev)

    def _unregister_write(self, client: mqtt.Client, dev: SimDevice, sock: Any) -> None:
        if dev.write_armed and dev.client is client:
            dev.write_armed = False
            self._sel.modify(sock, selectors.EVENT_READ, dev)

    # Publishing

    def publish(self, dev: SimDevice, msg: Message) -> None:
        client = dev.client
        if dev.state is not State.CONNECTED or client is None:
            dev.outbox.append(msg)  # store and forward, as firmware does
            return
        topic = f"{self.options.prefix}/{dev.device_id}/{msg.channel}"
        client.publish(topic, msg.payload, qos=msg.qos, retain=msg.retain)
        if msg.channel == "status":
            dev.last_status = msg
        stats = self.stats
        stats.published += 1
        stats.payload_bytes += len(msg.payload)
        if msg.channel == "telemetry" and dev.role is Role.MATTRESS:
            stats.samples += msg.payload.count(b'"ts"')

    def flush_outbox(self, dev: SimDevice) -> None:
        while dev.outbox and dev.state is State.CONNECTED:
            self.publish(dev, dev.outbox.popleft())

    def _push(self, sim_ms: int, dev: SimDevice, power_off: bool = False) -> None:
        self._order += 1
        heapq.heappush(self._due, (sim_ms, self._order, dev, power_off))

    def schedule_all(self) -> None:
        """Put every device's next message on the timetable (after the connect phase)."""
        for dev in self.devices:
            if dev.next is not None:
                self._push(dev.next.device_time_ms, dev)

    # The loop

    def step(self, until_ms: int | None = None, max_wait_s: float = MAX_IDLE_S) -> None:
        """Send what is due, write, wait for the sockets a little, read, keep alive."""
        now_ms = self.clock.now_ms()
        while (
            self._due
            and self._due[0][0] <= now_ms
            and (until_ms is None or self._due[0][0] < until_ms)
        ):
            _, _, dev, power_off = heapq.heappop(self._due)
            if power_off:
                self.power_off(dev)
                continue
            self._emit(dev)
        self._write_dirty()
        timeout = min(max_wait_s, MAX_IDLE_S)
        if self._due:
            timeout = min(timeout, self.clock.wall_s_until(self._due[0][0]))
        for key, events in self._sel.select(timeout):
            self._service(key.data, events)
        self._misc()

    def _emit(self, dev: SimDevice) -> None:
        msg = dev.next
        if msg is None:
            return
        if dev.state is State.POWERED_OFF:
            self.power_on(dev)
        self.publish(dev, msg)
        dev.advance()
        if dev.next is not None:
            self._push(dev.next.device_time_ms, dev)

    def _write_dirty(self) -> None:
        dirty, self._dirty = self._dirty, set()
        for dev in dirty:
            client = dev.client
            if client is None or dev.state is State.POWERED_OFF or dev.write_armed:
                continue
            client.loop_write()
            sock = client.socket()
            if client.want_write() and sock is not None:
                dev.write_armed = True  # the socket is full: wait until it can take more
                self._sel.modify(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, dev)

    def _service(self, dev: SimDevice, events: int) -> None:
        client = dev.client
        if client is None or dev.state is State.POWERED_OFF:
            return
        if events & selectors.EVENT_READ:
            client.loop_read()
            # TLS may have decrypted more than one read takes; select() cannot see that rest.
            while isinstance(sock := client.socket(), ssl.SSLSocket) and sock.pending():
                client.loop_read()
        if events & selectors.EVENT_WRITE and client.socket() is not None:
            client.loop_write()

    def _misc(self) -> None:
        """Keepalive and retries for a slice of the devices, so each is seen every ~2 s."""
        n = len(self.devices)
        if not n:
            return
        count = max(1, int(n * MAX_IDLE_S / MISC_EVERY_S) + 1)
        now = time.monotonic()
        for _ in range(min(count, n)):
            dev = self.devices[self._misc_at % n]
            self._misc_at += 1
            if dev.state is State.CONNECTED and dev.client is not None:
                dev.client.loop_misc()
            elif dev.state is State.CONNECTING and dev.retry_at and now >= dev.retry_at:
                dev.retry_at = 0.0
                self.stats.reconnects += 1
                self.connect(dev)

    def pending(self) -> int:
        return len(self._due)

    def close(self) -> None:
        """Disconnect cleanly (no Last Will: the run ended, the devices did not fail)."""
        for dev in self.devices:
            was = dev.state
            dev.state = State.IDLE
            if dev.client is not None and was is State.CONNECTED:
                self.stats.connected -= 1
                dev.client.disconnect()
        deadline = time.monotonic() + 2.0
        while self._dirty and time.monotonic() < deadline:
            self._write_dirty()
        for dev in self.devices:
            sock = dev.client.socket() if dev.client is not None else None
            if sock is not None:
                sock.close()
        self._sel.close()


def _on_connect(
    client: mqtt.Client, dev: SimDevice, flags: Any, reason: ReasonCode, props: Any
) -> None:
    loop = dev.loop
    if reason.is_failure:
        log.warning("%s: connection refused: %s", dev.device_id, reason)
        loop._retry_later(dev)
        return
    dev.state = State.CONNECTED
    loop.stats.connected += 1
    client.subscribe(f"{loop.options.prefix}/{dev.device_id}/cmd", qos=1)
    # Protocol: after each connect the device publishes its retained status first.
    if dev.outbox and dev.outbox[0].channel == "status":
        pass  # a power-on: its own new status goes first
    elif dev.next is not None and dev.next.channel == "status" and dev.last_status is None:
        loop.publish(dev, dev.next)  # the first connection
        dev.advance()
    elif dev.last_status is not None:
        loop.publish(dev, dev.last_status)  # a reconnect after a lost connection
    loop.flush_outbox(dev)


def _on_disconnect(
    client: mqtt.Client, dev: SimDevice, flags: Any, reason: ReasonCode, props: Any
) -> None:
    if dev.client is not client or dev.state in (State.POWERED_OFF, State.IDLE):
        return
    if dev.state is State.CONNECTED:
        dev.loop.stats.connected -= 1
    log.info("%s: disconnected (%s), will retry", dev.device_id, reason)
    dev.loop._retry_later(dev)


def _on_publish(
    client: mqtt.Client, dev: SimDevice, mid: int, reason: ReasonCode, props: Any
) -> None:
    dev.loop.stats.acked += 1


def _on_message(client: mqtt.Client, dev: SimDevice, message: mqtt.MQTTMessage) -> None:
    try:
        body = orjson.loads(message.payload)
    except orjson.JSONDecodeError:
        log.warning("%s: unreadable command ignored", dev.device_id)
        return
    if not isinstance(body, dict):
        return
    if body.get("type") == "sos_ack":
        log.info("%s: sos_ack for alert %s: help is coming", dev.device_id, body.get("alert"))
    dev.loop.stats.commands.append((dev.device_id, body))


def raise_fd_limit(wanted: int) -> int:
    """Open files allowed to this process, raised toward `wanted` (one socket per device)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
