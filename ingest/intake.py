"""From the MQTT thread to the event loop: decode, hold until stored, hand on to the detectors."""

from __future__ import annotations

import asyncio
import bisect
import logging
import threading
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ingest.protocol import Decoded, Decoder
from ingest.records import (
    EMERGENCY_EVENTS,
    Channel,
    DeviceEvent,
    DeviceId,
    EpochMs,
    MattressSample,
    Record,
    WaveBlock,
    WristbandSample,
    time_of,
    wall_ms,
)
from ingest.sink import RecordSink

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Held:
    """A message decoded and waiting for its batch to be stored before it is acknowledged.
    (Not frozen: one is made per message, and a frozen dataclass is built three times slower.)"""

    generation: int
    mid: int
    qos: int
    decoded: Decoded
    session: int = 0  # which MQTT session delivered it (and acknowledges it)


# Channels whose QoS 0 messages are left unstored when too much waits to be stored, and at what
# share of the limit: wave first, then telemetry; never events or status.
SHED_AT = {Channel.WAVE: 0.5, Channel.TELEMETRY: 1.0}


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
        max_held_qos0_bytes: int = 64_000_000,
        clock: Callable[[], EpochMs] = wall_ms,
        events_session: int = 0,
    ) -> None:
        """`events_session`: the session that brings the `event` channel on its own (0: none);
        copies of events from the other sessions are acknowledged and left aside."""
        self.decoder = decoder
        self._events_session = events_session
        self._loop = loop
        self._flush_max_rows = flush_max_rows
        self._max_held_qos0 = max_held_qos0_bytes
        self._held_qos0 = 0  # bytes of payload
        self._clock = clock
        self._lock = threading.Lock()
        self._held: list[Held] = []
        self._held_rows = 0
        self._flush_asked = False  # the loop was woken to store a full batch, not yet taken
        self._to_detect: deque[Decoded] = deque()
        self._detect_scheduled = False
        self._emergencies: deque[DeviceEvent] = deque()
        self.emergency_ready = asyncio.Event()
        self._closed = False
        self.flush_wanted = asyncio.Event()
        self.detect_ready = asyncio.Event()
        self.received = Counter[str]()  # messages by channel
        self.rejected = Counter[str]()  # rejections by reason
        self.shed_qos0 = 0  # QoS 0 telemetry/wave analysed but not stored: too many held

    def close(self) -> None:
        """Stop taking messages: later ones stay unacknowledged, so the broker keeps them."""
        with self._lock:
            self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def on_message(
        self,
        topic: bytes,
        payload: bytes,
        mid: int,
        qos: int,
        retain: bool,
        generation: int,
        session: int = 0,
    ) -> None:
        """Called on the MQTT thread for every message."""
        received = self._clock()
        if self._events_session and session != self._events_session and topic.endswith(b"/event"):
            # Its copy on the events' own session is the one taken; this one is only acked.
            with self._lock:
                if not self._closed:
                    self._held.append(Held(generation, mid, qos, Decoded(received), session))
            return
        decoded = self.decoder.decode(topic.decode("utf-8", "replace"), payload, received, retain)
        rows = len(decoded.records) + len(decoded.rejections)
        with self._lock:
            if self._closed:
                return
            shed = False
            if qos == 0 and decoded.channel in SHED_AT:
                # Nothing bounds QoS 0 at the broker: while the database is away, hold a bounded
                # amount, so that memory cannot run out before it returns; wave goes first.
                limit = self._max_held_qos0 * SHED_AT[decoded.channel]
                shed = self._held_qos0 >= limit
                if not shed:
                    self._held_qos0 += len(payload)
            if shed:
                self.shed_qos0 += 1
                if self.shed_qos0 == 1 or self.shed_qos0 % 100_000 == 0:
                    log.warning(
                        "%.1f MB of QoS 0 telemetry and wave waiting to be stored: more is"
                        " analysed but not stored (%d messages so far)",
                        self._held_qos0 / 1e6,
                        self.shed_qos0,
                    )
            else:
                self._held.append(Held(generation, mid, qos, decoded, session))
                self._held_rows += rows
            # Once per batch: until the loop takes it, later messages need not wake it again.
            wake_flush = not self._flush_asked and self._held_rows >= self._flush_max_rows
            self._flush_asked |= wake_flush
            self.received[decoded.channel or "unknown"] += 1
            for rejection in decoded.rejections:
                self.rejected[rejection.reason] += 1
            wake_detect = False
            if decoded.records:
                self._to_detect.append(decoded)
                wake_detect = not self._detect_scheduled
                self._detect_scheduled = True
            emergencies = (
                [
                    r
                    for r in decoded.records
                    if type(r) is DeviceEvent and r.type in EMERGENCY_EVENTS
                ]
                if decoded.channel is Channel.EVENT
                else []
            )
            self._emergencies.extend(emergencies)
        if emergencies:
            self._loop.call_soon_threadsafe(self.emergency_ready.set)
        if wake_flush:
            self._loop.call_soon_threadsafe(self.flush_wanted.set)
        if wake_detect:
            self._loop.call_soon_threadsafe(self.detect_ready.set)

    def take_held(self) -> list[Held]:
        with self._lock:
            held, self._held, self._held_rows = self._held, [], 0
            self._held_qos0 = 0
            self._flush_asked = False
        return held

    def take_emergencies(self) -> list[DeviceEvent]:
        """SOS presses, cancels and falls, in the order received (they are in take_to_detect
        too: the detectors keep their state)."""
        with self._lock:
            events = list(self._emergencies)
            self._emergencies.clear()
        return events

    def take_to_detect(self) -> list[Decoded]:
        with self._lock:
            items = list(self._to_detect)
            self._to_detect.clear()
            self._detect_scheduled = False
        return items

    def counts(self) -> tuple[dict[str, int], dict[str, int], int]:
        """Messages by channel, rejections by reason and QoS 0 messages shed, taken together
        (the MQTT thread changes them)."""
        with self._lock:
            return dict(self.received), dict(self.rejected), self.shed_qos0

    @property
    def detect_backlog(self) -> int:
        return len(self._to_detect)

    @property
    def held_count(self) -> int:
        with self._lock:
            return len(self._held)


class Coverage:
    """The device-time spans of one device channel already handed to detection.

    Spans closer than `join_ms` are one span (a lost sample is not a hole to fill later). At
    most MAX_SPANS are kept: past that the two oldest merge, so data landing between them
    later counts as seen (stored, not analysed) rather than raising old findings twice.
    """

    MAX_SPANS = 16

    __slots__ = ("ends", "join_ms", "starts")

    def __init__(self, join_ms: int) -> None:
        self.join_ms = join_ms
        self.starts: list[EpochMs] = []
        self.ends: list[EpochMs] = []

    @property
    def end(self) -> EpochMs:
        return self.ends[-1] if self.ends else -1

    def extend(self, start: EpochMs, end: EpochMs) -> None:
        """Records newer than every span so far."""
        if self.ends and start - self.ends[-1] <= self.join_ms:
            self.ends[-1] = max(self.ends[-1], end)
            return
        self.starts.append(start)
        self.ends.append(end)
        self._trim()

    def covers(self, t: EpochMs) -> bool:
        i = bisect.bisect_right(self.starts, t) - 1
        return i >= 0 and t <= self.ends[i]

    def add(self, start: EpochMs, end: EpochMs) -> None:
        """A span anywhere in time: merged with the spans it touches."""
        join = self.join_ms
        lo = bisect.bisect_left(self.ends, start - join)
        hi = bisect.bisect_right(self.starts, end + join)
        if lo < hi:
            start = min(start, self.starts[lo])
            end = max(end, self.ends[hi - 1])
        self.starts[lo:hi] = [start]
        self.ends[lo:hi] = [end]
        self._trim()

    def _trim(self) -> None:
        if len(self.starts) > self.MAX_SPANS:
            self.ends[0] = self.ends[1]
            del self.starts[1], self.ends[1]


class InOrder:
    """Hands records to detection in device-time order per device and channel, each once.

    A QoS 1 redelivery or a repeated publish is not detected twice: what falls inside a span
    already handed on is dropped (it is still stored). Records newer than everything so far go
    to `sink.accept`. Records older than the newest but in a hole no span covers are late data
    (a store-and-forward backlog uploaded after live data resumed): they go to
    `sink.accept_late`, which analyses them apart from the live state.

    Events are rare and must never be lost to ordering (an SOS uploaded late is still an SOS),
    so they are checked against the device's recent event identities instead.
    """

    EVENTS_REMEMBERED = 256

    def __init__(self, sink: RecordSink) -> None:
        self.sink = sink
        self._seen: dict[tuple[DeviceId, Channel], Coverage] = {}
        self._events: dict[DeviceId, deque[tuple[EpochMs, str]]] = {}
        self.dropped = 0  # records already handed on, delivered again
        self.late = 0  # records handed on as late data

    def feed(self, decoded: Decoded) -> None:
        if decoded.device_id is None or decoded.channel is None:
            return
        if decoded.channel is Channel.EVENT:
            self._feed_events(decoded.device_id, decoded)
            return
        records = decoded.records
        if not records:
            return
        key = (decoded.device_id, decoded.channel)
        seen = self._seen.get(key)
        if seen is None:
            seen = self._seen[key] = Coverage(_join_ms(records[0]))
        last = seen.end
        if time_of(records[0]) > last:  # the usual case: all of it is new
            fresh: Sequence[Record] = records
            older: list[Record] = []
        else:
            fresh = [r for r in records if time_of(r) > last]
            older = [r for r in records if time_of(r) <= last]
        if fresh:
            seen.extend(time_of(fresh[0]), _end_of(fresh[-1]))
            self.sink.accept(fresh, decoded.received_at_ms)
        if older:
            self._feed_older(seen, older, decoded.received_at_ms)

    def _feed_older(self, seen: Coverage, older: list[Record], received_at_ms: EpochMs) -> None:
        late = [r for r in older if not seen.covers(time_of(r))]
        self.dropped += len(older) - len(late)
        if not late:
            return
        late.sort(key=time_of)
        seen.add(time_of(late[0]), _end_of(late[-1]))
        self.late += len(late)
        self.sink.accept_late(late, received_at_ms)

    def _feed_events(self, device_id: DeviceId, decoded: Decoded) -> None:
        seen = self._events.setdefault(device_id, deque(maxlen=self.EVENTS_REMEMBERED))
        fresh: list[Record] = []
        for record in decoded.records:
            identity = (
                (record.identity_ms, record.type.value)
                if isinstance(record, DeviceEvent)
                else (time_of(record), "")
            )
            if identity in seen:
                self.dropped += 1
            else:
                seen.append(identity)
                fresh.append(record)
        if fresh:
            self.sink.accept(fresh, decoded.received_at_ms)


# Spans closer than this are one: a pad sends every second, a wristband every 10-60 s, and wave
# blocks follow each other end to start.
JOIN_MS: dict[type, EpochMs] = {MattressSample: 10_000, WristbandSample: 120_000, WaveBlock: 2_000}


def _join_ms(record: Record) -> EpochMs:
    return JOIN_MS.get(type(record), 10_000)


def _end_of(record: Record) -> EpochMs:
    """The time of a record's last sample (the next wave block starts just after it)."""
    if isinstance(record, WaveBlock) and record.fs_hz > 0 and record.n > 1:
        return record.t0_ms + int((record.n - 1) * 1000 / record.fs_hz)
    return time_of(record)
