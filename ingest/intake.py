"""From the MQTT thread to the event loop: decode, hold until stored, hand on to the detectors."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

from ingest.protocol import Decoded, Decoder
from ingest.records import Channel, DeviceId, EpochMs, Record, WaveBlock
from ingest.sink import RecordSink

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Held:
    """A message decoded and waiting for its batch to be stored before it is acknowledged."""

    generation: int
    mid: int
    qos: int
    decoded: Decoded


def wall_ms() -> EpochMs:
    return time.time_ns() // 1_000_000


class Intake:
    """Decodes on the MQTT thread; the event loop takes batches to store and records to detect.

    Everything the MQTT thread touches is behind one lock, and the loop is woken with
    call_soon_threadsafe at most once per wake-up, not once per message.
    """

    def __init__(
        self,
        decoder: Decoder,
        loop: asyncio.AbstractEventLoop,
        *,
        flush_max_rows: int,
        clock: Callable[[], EpochMs] = wall_ms,
    ) -> None:
        self.decoder = decoder
        self._loop = loop
        self._flush_max_rows = flush_max_rows
        self._clock = clock
        self._lock = threading.Lock()
        self._held: list[Held] = []
        self._held_rows = 0
        self._to_detect: deque[Decoded] = deque()
        self._detect_scheduled = False
        self._closed = False
        self.flush_wanted = asyncio.Event()
        self.detect_ready = asyncio.Event()
        self.received = Counter[str]()  # messages by channel
        self.rejected = Counter[str]()  # rejections by reason

    def close(self) -> None:
        """Stop taking messages: later ones stay unacknowledged, so the broker keeps them."""
        with self._lock:
            self._closed = True

    def on_message(
        self, topic: bytes, payload: bytes, mid: int, qos: int, retain: bool, generation: int
    ) -> None:
        """Called on the MQTT thread for every message."""
        received = self._clock()
        decoded = self.decoder.decode(topic.decode("utf-8", "replace"), payload, received, retain)
        rows = len(decoded.records) + len(decoded.rejections)
        with self._lock:
            if self._closed:
                return
            self._held.append(Held(generation, mid, qos, decoded))
            self._held_rows += rows
            wake_flush = self._held_rows >= self._flush_max_rows
            self.received[decoded.channel or "unknown"] += 1
            for rejection in decoded.rejections:
                self.rejected[rejection.reason] += 1
            wake_detect = False
            if decoded.records:
                self._to_detect.append(decoded)
                wake_detect = not self._detect_scheduled
                self._detect_scheduled = True
        if wake_flush:
            self._loop.call_soon_threadsafe(self.flush_wanted.set)
        if wake_detect:
            self._loop.call_soon_threadsafe(self.detect_ready.set)

    def take_held(self) -> list[Held]:
        with self._lock:
            held, self._held, self._held_rows = self._held, [], 0
        return held

    def take_to_detect(self) -> list[Decoded]:
        with self._lock:
            items = list(self._to_detect)
            self._to_detect.clear()
            self._detect_scheduled = False
        return items

    @property
    def detect_backlog(self) -> int:
        return len(self._to_detect)

    @property
    def held_count(self) -> int:
        with self._lock:
            return len(self._held)


class InOrder:
    """Passes on, per device and channel, only records newer than the last passed on.

    A QoS 1 redelivery or a repeated publish must not be detected twice, and detectors see
    each device's data in device-time order; late data is still stored, just not re-detected.

    Events are rare and must never be lost to ordering (an SOS uploaded late is still an SOS),
    so they are checked against the device's recent event identities instead.
    """

    EVENTS_REMEMBERED = 256

    def __init__(self, sink: RecordSink) -> None:
        self.sink = sink
        self._last: dict[tuple[DeviceId, Channel], EpochMs] = {}
        self._events: dict[DeviceId, deque[tuple[EpochMs, str]]] = {}
        self.dropped = 0

    def feed(self, decoded: Decoded) -> None:
        if decoded.device_id is None or decoded.channel is None:
            return
        if decoded.channel is Channel.EVENT:
            self._feed_events(decoded.device_id, decoded)
            return
        key = (decoded.device_id, decoded.channel)
        last = self._last.get(key, -1)
        fresh: list[Record] = [r for r in decoded.records if _time_of(r) > last]
        self.dropped += len(decoded.records) - len(fresh)
        if fresh:
            self._last[key] = _time_of(fresh[-1])
            self.sink.accept(fresh, decoded.received_at_ms)

    def _feed_events(self, device_id: DeviceId, decoded: Decoded) -> None:
        seen = self._events.setdefault(device_id, deque(maxlen=self.EVENTS_REMEMBERED))
        fresh: list[Record] = []
        for record in decoded.records:
            identity = (_time_of(record), str(getattr(record, "type", "")))
            if identity in seen:
                self.dropped += 1
            else:
                seen.append(identity)
                fresh.append(record)
        if fresh:
            self.sink.accept(fresh, decoded.received_at_ms)


def _time_of(record: Record) -> EpochMs:
    return record.t0_ms if isinstance(record, WaveBlock) else record.ts_ms
