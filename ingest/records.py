"""Decoded protocol-v1 messages: the values ingest stores and hands to the detectors."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import NamedTuple, NewType

DeviceId = NewType("DeviceId", str)
ResidentId = NewType("ResidentId", str)

# Device time is kept as the protocol gives it: integer milliseconds since the Unix epoch, UTC.
# Detectors do arithmetic on it and storage converts it in SQL, so no datetime is built per sample.
EpochMs = int


def wall_ms() -> EpochMs:
    """The wall clock in epoch milliseconds: the default clock wherever one is injected."""
    return time.time_ns() // 1_000_000


def ms_to_datetime(ts_ms: EpochMs) -> datetime:
    """Device time as a timezone-aware UTC datetime."""
    return datetime.fromtimestamp(ts_ms / 1000, UTC)


class DeviceKind(StrEnum):
    MATTRESS = "mattress"
    WRISTBAND = "wristband"


class Channel(StrEnum):
    TELEMETRY = "telemetry"
    WAVE = "wave"
    EVENT = "event"
    STATUS = "status"
    CMD = "cmd"


class EventType(StrEnum):
    SOS = "sos"
    SOS_CANCEL = "sos_cancel"
    FALL = "fall"
    REMOVED = "removed"
    LOW_BATTERY = "low_battery"


# Events decided the moment they are decoded, apart from (and before) the rest of detection.
EMERGENCY_EVENTS = frozenset({EventType.SOS, EventType.SOS_CANCEL, EventType.FALL})


class SampleSource(StrEnum):
    DEVICE = "device"  # reported by the pad's firmware
    WAVE = "wave"  # computed here from the pad's raw waveform


class Reason(StrEnum):
    """Why a message, or part of one, went to quarantine."""

    NOT_JSON = "not_json"  # not UTF-8, or not parseable as JSON
    SCHEMA = "schema"  # JSON, but not the shape the protocol asks (types, missing fields)
    OUT_OF_RANGE = "out_of_range"  # the right type, outside the protocol's range
    UNKNOWN_DEVICE = "unknown_device"  # the topic names a device the registry does not know
    IDENTITY_MISMATCH = "identity_mismatch"  # payload names another device than the topic
    OVERSIZE = "oversize"  # payload over 64 KiB, or a batch over 120 samples
    BAD_TOPIC = "bad_topic"  # topic not of the form <prefix>/<device_id>/<channel>
    WRONG_KIND = "wrong_kind"  # a channel or payload this kind of device does not send
    STALE = "stale"  # device time older than the staleness limit
    STORE_FAILED = "store_failed"  # valid by the protocol, yet the database refused it


class StatusState(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


class MattressSample(NamedTuple):
    """One second of a pad's telemetry.

    A NamedTuple rather than a frozen dataclass: pads send 86,400 of these a day each, and a
    tuple is built four times faster and goes to binary COPY as it is (field order = columns).
    """

    device_id: DeviceId
    resident_id: ResidentId | None
    ts_ms: EpochMs
    hr: float | None  # beats/min; None when not measurable
    rr: float | None  # breaths/min; 0 = no breathing movement for 10 s; None = not measurable
    move: int  # 0-100
    occ: int  # 1 occupied, 0 empty
    sq: int  # signal quality 0-100
    source: SampleSource = SampleSource.DEVICE


@dataclass(frozen=True, slots=True)
class WristbandSample:
    device_id: DeviceId
    resident_id: ResidentId | None
    ts_ms: EpochMs
    hr: float | None
    spo2: float | None
    bat: int | None
    worn: int | None
    steps: int | None


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    device_id: DeviceId
    resident_id: ResidentId | None
    ts_ms: EpochMs
    type: EventType
    conf: float | None = None
    bat: int | None = None
    lat: float | None = None
    lon: float | None = None
    degraded: bool = False  # an sos/fall kept despite faults in its other fields
    # The ts the device sent, when its clock was so far ahead that ts_ms is the receive time
    # instead: what the event is known by, so that the same event delivered again is one.
    device_ts_ms: EpochMs | None = None

    @property
    def identity_ms(self) -> EpochMs:
        """The device's own time of the event: with device and type, its identity."""
        return self.ts_ms if self.device_ts_ms is None else self.device_ts_ms


@dataclass(frozen=True, slots=True)
class WaveBlock:
    """A block of raw pad signal; `raw` for a mixed channel, `resp`/`bcg` for separated ones."""

    device_id: DeviceId
    resident_id: ResidentId | None
    t0_ms: EpochMs
    fs_hz: float
    raw: tuple[int, ...] | None
    resp: tuple[int, ...] | None
    bcg: tuple[int, ...] | None

    @property
    def n(self) -> int:
        first = self.raw if self.raw is not None else self.resp
        return len(first) if first is not None else 0


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    device_id: DeviceId
    resident_id: ResidentId | None
    ts_ms: EpochMs  # device time, or receive time when the payload has none (a Last Will)
    state: StatusState
    from_device_clock: bool
    kind: str | None = None
    model: str | None = None
    fw: str | None = None
    bat: int | None = None


Record = MattressSample | WristbandSample | DeviceEvent | WaveBlock | DeviceStatus


def time_of(record: Record) -> EpochMs:
    """A record's device time (a wave block's: its first sample's)."""
    return record.t0_ms if isinstance(record, WaveBlock) else record.ts_ms


@dataclass(frozen=True, slots=True)
class Rejection:
    """A message, or one sample of a batch, that broke the contract."""

    topic: str
    reason: Reason
    detail: str
    payload: bytes
    received_at_ms: EpochMs
    device_id: DeviceId | None = None
