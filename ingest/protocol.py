"""Protocol v1 decoding: topic and payload in, records and rejections out, never an exception."""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from ingest.records import (
    Channel,
    DeviceEvent,
    DeviceId,
    DeviceKind,
    DeviceStatus,
    EpochMs,
    EventType,
    MattressSample,
    Reason,
    Record,
    Rejection,
    ResidentId,
    SampleSource,
    StatusState,
    WaveBlock,
    WristbandSample,
)

DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
WAVE_MAX_BLOCK_S = 10.0
TOPICS_KEPT = 200_000  # parsed topics remembered (4 channels of 50,000 devices)
# How far a sample may lie after the middle one of its batch: 120 samples 1 s apart, with gaps.
BATCH_SPAN_LIMIT_MS = 600_000
_INT32 = 2**31
_MAX_TS = 2**53
_NUMBER = (int, float)
_BY_TIME = operator.attrgetter("ts_ms")
_SAFETY_EVENTS = frozenset({EventType.SOS, EventType.FALL})
_SAFETY_TYPES = frozenset(e.value for e in _SAFETY_EVENTS)
_DEVICE = SampleSource.DEVICE
_SAMPLE_FIELDS = operator.itemgetter("ts", "hr", "rr", "move", "occ", "sq")
_tuple_new = tuple.__new__


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    kind: DeviceKind
    resident_id: ResidentId | None


@dataclass(slots=True)
class Decoded:
    """What one MQTT message became: accepted records and/or rejections (possibly both)."""

    received_at_ms: EpochMs = 0
    topic: str = ""
    payload: bytes = b""
    device_id: DeviceId | None = None
    channel: Channel | None = None
    records: list[Record] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    skew_ms: int | None = None  # device clock ahead of receive time by this much; corrected
    seq: int | None = None


class _Invalid(Exception):
    """Raised inside the decoder only; decode() turns it into a Rejection."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(slots=True)
class Decoder:
    """Judges each message alone against protocol v1 and the registry of devices."""

    devices: Mapping[DeviceId, DeviceInfo]
    prefix: str = "bedwatch/v1"
    max_payload_bytes: int = 65_536
    max_batch_samples: int = 120
    future_skew_limit_ms: int = 300_000
    stale_after_ms: int = 7 * 24 * 3600 * 1000
    # Topics already parsed: a fleet's topics are few and come again and again.
    _topics: dict[str, tuple[DeviceId, Channel]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def decode(
        self, topic: str, payload: bytes, received_at_ms: EpochMs, retained: bool = False
    ) -> Decoded:
        out = Decoded(received_at_ms, topic, payload)
        try:
            self._decode(out, topic, payload, received_at_ms, retained)
        except _Invalid as bad:
            out.records.clear()
            out.rejections.append(
                Rejection(topic, bad.reason, bad.detail, payload, received_at_ms, out.device_id)
            )
        return out

    def _decode(
        self, out: Decoded, topic: str, payload: bytes, now_ms: EpochMs, retained: bool
    ) -> None:
        parsed = self._topics.get(topic)
        if parsed is None:
            parsed = self._parse_topic(topic)
            if len(self._topics) >= TOPICS_KEPT:
                self._topics.clear()
            self._topics[topic] = parsed
        device_id, channel = out.device_id, out.channel = parsed
        if channel is Channel.CMD:
            return  # our own commands to devices; nothing to store
        if len(payload) > self.max_payload_bytes:
            raise _Invalid(
                Reason.OVERSIZE, f"{len(payload)} bytes > limit {self.max_payload_bytes}"
            )
        info = self.devices.get(device_id)
        if info is None:
            raise _Invalid(Reason.UNKNOWN_DEVICE, f"device {device_id!r} is not registered")
        obj = _parse_json(payload)
        try:
            _check_identity(obj, device_id)
            out.seq = _opt_int(obj, "seq", 0, 2**63 - 1)  # int8 in device_health
        except _Invalid as bad:
            # An emergency is acted on as its topic's device (the broker's ACL vouches for the
            # topic, never the payload); the broken envelope is still quarantined.
            kind = obj.get("type")
            safety = isinstance(kind, str) and kind in _SAFETY_TYPES
            if channel is not Channel.EVENT or not safety:
                raise
            self._event(out, obj, payload, topic, info, now_ms, fault=bad)
            return
        if channel is Channel.TELEMETRY:
            if info.kind is DeviceKind.MATTRESS:
                self._mattress(out, obj, payload, topic, info, now_ms)
            else:
                self._wristband(out, obj, info, now_ms)
        elif channel is Channel.EVENT:
            self._event(out, obj, payload, topic, info, now_ms)
        elif channel is Channel.STATUS:
            self._status(out, obj, info, now_ms, retained)
        else:
            if info.kind is not DeviceKind.MATTRESS:
                raise _Invalid(Reason.WRONG_KIND, f"a {info.kind} sends no wave blocks")
            self._wave(out, obj, info, now_ms)

    def _parse_topic(self, topic: str) -> tuple[DeviceId, Channel]:
        head, sep, rest = topic.partition(self.prefix + "/")
        parts = rest.split("/")
        if head or not sep or len(parts) != 2:
            raise _Invalid(
                Reason.BAD_TOPIC, f"expected {self.prefix}/<device_id>/<channel>, got {topic!r}"
            )
        device, channel = parts
        if not DEVICE_ID.fullmatch(device):
            raise _Invalid(Reason.BAD_TOPIC, f"not a valid device id: {device[:80]!r}")
        try:
            return DeviceId(device), Channel(channel)
        except ValueError:
            raise _Invalid(Reason.BAD_TOPIC, f"unknown channel {channel[:40]!r}") from None

    def _device_time(self, ts: int, now_ms: EpochMs) -> None:
        if ts < now_ms - self.stale_after_ms:
            raise _Invalid(Reason.STALE, f"ts {ts} is older than {self.stale_after_ms} ms")

    def _skew(self, latest_ts: int, now_ms: EpochMs) -> int:
        """How far to move device time back: non-zero only past the future-skew limit."""
        ahead = latest_ts - now_ms
        return ahead if ahead > self.future_skew_limit_ms else 0

    def _mattress(
        self,
        out: Decoded,
        obj: dict[str, Any],
        payload: bytes,
        topic: str,
        info: DeviceInfo,
        now_ms: EpochMs,
    ) -> None:
        device_id = out.device_id
        assert device_id is not None
        if "samples" not in obj:
            items: list[Any] = [obj]
        else:
            items = obj["samples"]
            if not isinstance(items, list):
                raise _Invalid(Reason.SCHEMA, "samples: expected a list")
            if not items:
                raise _Invalid(Reason.SCHEMA, "samples: empty batch")
            if len(items) > self.max_batch_samples:
                raise _Invalid(
                    Reason.OVERSIZE, f"samples: {len(items)} > limit {self.max_batch_samples}"
                )
        good, errors, ordered = _mattress_samples(items, device_id, info.resident_id)
        out.records.extend(self._in_time(good, ordered, now_ms, out, errors))
        if errors:
            out.rejections.append(
                _sample_rejection(topic, payload, now_ms, device_id, errors, len(items))
            )

    def _in_time(
        self,
        samples: list[MattressSample],
        ordered: bool,
        now_ms: EpochMs,
        out: Decoded,
        errors: list[tuple[int, _Invalid]],
    ) -> list[MattressSample]:
        """The samples in time order, less those too far ahead of their batch or too old, less
        repeats of a time; moved back by the clock's skew. `ordered`: already in strictly
        increasing time."""
        if not samples:
            return samples
        # A sample far later than the middle of its batch is that sample's fault alone; the
        # clock's skew is judged by the latest of the rest, as a batch spans seconds to minutes.
        if (
            ordered
            and samples[0].ts_ms >= now_ms - self.stale_after_ms
            and samples[-1].ts_ms <= samples[len(samples) // 2].ts_ms + BATCH_SPAN_LIMIT_MS
            and not self._skew(samples[-1].ts_ms, now_ms)
        ):
            return samples  # as a pad sends them: nothing to sort, drop or move
        samples.sort(key=_BY_TIME)
        wild_after = samples[len(samples) // 2].ts_ms + BATCH_SPAN_LIMIT_MS
        kept: list[MattressSample] = []
        for i, s in enumerate(samples):
            if s.ts_ms > wild_after:
                errors.append(
                    (i, _Invalid(Reason.OUT_OF_RANGE, f"ts {s.ts_ms} is far ahead of its batch"))
                )
            else:
                kept.append(s)
        skew = self._skew(kept[-1].ts_ms, now_ms)
        if skew:
            out.skew_ms = skew
            kept = [_shift(s, skew) for s in kept]
        fresh: list[MattressSample] = []
        last = -1
        for i, s in enumerate(kept):
            if s.ts_ms < now_ms - self.stale_after_ms:
                errors.append((i, _Invalid(Reason.STALE, f"ts {s.ts_ms} is too old")))
            elif s.ts_ms != last:  # a batch repeating a timestamp: keep the first
                fresh.append(s)
                last = s.ts_ms
        return fresh

    def _wristband(
        self, out: Decoded, obj: dict[str, Any], info: DeviceInfo, now_ms: EpochMs
    ) -> None:
        assert out.device_id is not None
        ts = _ts(obj, "ts")
        skew = self._skew(ts, now_ms)
        if skew:
            out.skew_ms, ts = skew, ts - skew
        self._device_time(ts, now_ms)
        out.records.append(
            WristbandSample(
                device_id=out.device_id,
                resident_id=info.resident_id,
                ts_ms=ts,
                hr=_opt_num(obj, "hr", 0, 250),
                spo2=_opt_num(obj, "spo2", 70, 100),
                bat=_opt_int(obj, "bat", 0, 100),
                worn=_opt_int(obj, "worn", 0, 1),
                steps=_opt_int(obj, "steps", 0, 10_000_000),
            )
        )

    def _event(
        self,
        out: Decoded,
        obj: dict[str, Any],
        payload: bytes,
        topic: str,
        info: DeviceInfo,
        now_ms: EpochMs,
        fault: _Invalid | None = None,
    ) -> None:
        assert out.device_id is not None
        kind = obj.get("type")
        if not isinstance(kind, str):
            raise _Invalid(Reason.SCHEMA, "type: expected a string")
        try:
            event_type = EventType(kind)
        except ValueError:
            raise _Invalid(Reason.SCHEMA, f"type: unknown event type {kind[:40]!r}") from None
        try:
            if fault is not None:
                raise fault
            event = self._event_fields(out, obj, info, event_type, now_ms)
        except _Invalid as bad:
            if event_type not in _SAFETY_EVENTS:
                raise
            # Safety first: an SOS or a fall is acted on even when its other fields are broken;
            # the receive time stands in for ts only if ts itself is broken, and the fault is
            # still quarantined.
            at, device_ts = self._time_or_now(obj, now_ms)
            event = DeviceEvent(
                out.device_id,
                info.resident_id,
                at,
                event_type,
                degraded=True,
                device_ts_ms=device_ts,
            )
            kept = "with receive time" if at == now_ms else "with its own time"
            out.rejections.append(
                Rejection(
                    topic,
                    bad.reason,
                    f"{event_type} kept {kept}: {bad.detail}",
                    payload,
                    now_ms,
                    out.device_id,
                )
            )
        out.records.append(event)

    def _time_or_now(self, obj: dict[str, Any], now_ms: EpochMs) -> tuple[EpochMs, EpochMs | None]:
        """The event's own ts when it is valid and plausible, else the receive time; and the
        device's ts when that was valid but far ahead (the event's identity)."""
        try:
            ts = _ts(obj, "ts")
            self._device_time(ts, now_ms)
        except _Invalid:
            return now_ms, None
        return (now_ms, ts) if self._skew(ts, now_ms) else (ts, None)

    def _event_fields(
        self,
        out: Decoded,
        obj: dict[str, Any],
        info: DeviceInfo,
        event_type: EventType,
        now_ms: EpochMs,
    ) -> DeviceEvent:
        assert out.device_id is not None
        ts = device_ts = _ts(obj, "ts")
        skew = self._skew(ts, now_ms)
        if skew:
            out.skew_ms, ts = skew, ts - skew
        self._device_time(ts, now_ms)
        return DeviceEvent(
            device_id=out.device_id,
            resident_id=info.resident_id,
            ts_ms=ts,
            type=event_type,
            conf=_opt_num(obj, "conf", 0, 1),
            bat=_opt_int(obj, "bat", 0, 100),
            lat=_opt_num(obj, "lat", -90, 90),
            lon=_opt_num(obj, "lon", -180, 180),
            device_ts_ms=device_ts if skew else None,
        )

    def _status(
        self,
        out: Decoded,
        obj: dict[str, Any],
        info: DeviceInfo,
        now_ms: EpochMs,
        retained: bool,
    ) -> None:
        assert out.device_id is not None
        state = obj.get("state")
        if state not in ("online", "offline"):
            raise _Invalid(Reason.SCHEMA, f"state: expected 'online' or 'offline', got {state!r}")
        has_ts = obj.get("ts") is not None
        ts = _ts(obj, "ts") if has_ts else now_ms
        if has_ts:
            skew = self._skew(ts, now_ms)
            if skew:
                out.skew_ms, ts = skew, ts - skew
            if not retained:  # a retained status may rightly be as old as the connection
                self._device_time(ts, now_ms)
        kind = _opt_str(obj, "kind")
        if kind is not None and kind != info.kind:
            raise _Invalid(Reason.WRONG_KIND, f"kind {kind[:20]!r} but registered as {info.kind}")
        out.records.append(
            DeviceStatus(
                device_id=out.device_id,
                resident_id=info.resident_id,
                ts_ms=ts,
                state=StatusState(state),
                from_device_clock=has_ts,
                kind=kind,
                model=_opt_str(obj, "model"),
                fw=_opt_str(obj, "fw"),
                bat=_opt_int(obj, "bat", 0, 100),
            )
        )

    def _wave(self, out: Decoded, obj: dict[str, Any], info: DeviceInfo, now_ms: EpochMs) -> None:
        assert out.device_id is not None
        t0 = _ts(obj, "t0")
        fs = _num(obj, "fs", 10, 250)
        raw = _opt_series(obj, "raw")
        resp = _opt_series(obj, "resp")
        bcg = _opt_series(obj, "bcg")
        if raw is None and (resp is None or bcg is None):
            raise _Invalid(Reason.SCHEMA, "wave: needs raw, or resp and bcg")
        if resp is not None and bcg is not None and len(resp) != len(bcg):
            raise _Invalid(Reason.SCHEMA, f"wave: resp ({len(resp)}) and bcg ({len(bcg)}) differ")
        n = len(raw) if raw is not None else len(resp or ())
        if n == 0:
            raise _Invalid(Reason.SCHEMA, "wave: empty block")
        if n > fs * WAVE_MAX_BLOCK_S + 1:
            raise _Invalid(Reason.OVERSIZE, f"wave: {n} values at {fs} Hz is over 10 s")
        skew = self._skew(t0, now_ms)
        if skew:
            out.skew_ms, t0 = skew, t0 - skew
        self._device_time(t0, now_ms)
        out.records.append(WaveBlock(out.device_id, info.resident_id, t0, fs, raw, resp, bcg))


def _check_identity(obj: dict[str, Any], device_id: DeviceId) -> None:
    named = obj.get("device_id")
    if named is not None and named != device_id:
        shown = repr(named)[:80]
        raise _Invalid(
            Reason.IDENTITY_MISMATCH, f"payload device_id {shown} != topic {device_id!r}"
        )


def _parse_json(payload: bytes) -> dict[str, Any]:
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        message = str(exc)
        if "infinity" in message:
            raise _Invalid(Reason.OUT_OF_RANGE, f"a number is too large: {message}") from None
        if "UTF-8" in message:
            raise _Invalid(Reason.NOT_JSON, f"not UTF-8: {message}") from None
        raise _Invalid(Reason.NOT_JSON, message) from None
    if not isinstance(obj, dict):
        raise _Invalid(Reason.SCHEMA, f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _mattress_samples(
    items: list[Any], device_id: DeviceId, resident_id: ResidentId | None
) -> tuple[list[MattressSample], list[tuple[int, _Invalid]], bool]:
    """A batch's valid samples, its faults by index, and whether the valid ones are in strictly
    increasing time (as a pad sends them)."""
    good: list[MattressSample] = []
    errors: list[tuple[int, _Invalid]] = []
    append = good.append
    last = -1
    ordered = True
    # The common case, a valid sample, in one expression: this runs for every second of every
    # pad, so the sample is built as a plain tuple (MattressSample's own __new__ is Python).
    # Anything else takes the checked path, which says what is wrong.
    for i, item in enumerate(items):
        try:
            ts, hr, rr, move, occ, sq = _SAMPLE_FIELDS(item)
        except (KeyError, TypeError):  # a field left out (hr, rr may be), or not an object
            pass  # the checked path below
        else:
            if (
                type(ts) is int
                and 0 < ts < _MAX_TS
                and (hr is None or (type(hr) in _NUMBER and 0 <= hr <= 250))
                and (rr is None or (type(rr) in _NUMBER and 0 <= rr <= 80))
                and type(move) is int
                and 0 <= move <= 100
                and type(occ) is int
                and 0 <= occ <= 1
                and type(sq) is int
                and 0 <= sq <= 100
            ):
                if ts <= last:
                    ordered = False
                last = ts
                append(
                    _tuple_new(
                        MattressSample,
                        (
                            device_id,
                            resident_id,
                            ts,
                            None if hr is None else float(hr),
                            None if rr is None else float(rr),
                            move,
                            occ,
                            sq,
                            _DEVICE,
                        ),
                    )
                )
                continue
        try:
            sample = _checked_mattress_sample(item, device_id, resident_id)
        except _Invalid as bad:
            errors.append((i, bad))
            continue
        if sample.ts_ms <= last:
            ordered = False
        last = sample.ts_ms
        append(sample)
    return good, errors, ordered


def _checked_mattress_sample(
    item: Any, device_id: DeviceId, resident_id: ResidentId | None
) -> MattressSample:
    if not isinstance(item, dict):
        raise _Invalid(Reason.SCHEMA, f"expected an object, got {type(item).__name__}")
    return MattressSample(
        device_id=device_id,
        resident_id=resident_id,
        ts_ms=_ts(item, "ts"),
        hr=_opt_num(item, "hr", 0, 250),
        rr=_opt_num(item, "rr", 0, 80),
        move=_int(item, "move", 0, 100),
        occ=_int(item, "occ", 0, 1),
        sq=_int(item, "sq", 0, 100),
    )


def _shift(sample: MattressSample, skew_ms: int) -> MattressSample:
    return sample._replace(ts_ms=sample.ts_ms - skew_ms)


def _sample_rejection(
    topic: str,
    payload: bytes,
    now_ms: EpochMs,
    device_id: DeviceId,
    errors: list[tuple[int, _Invalid]],
    total: int,
) -> Rejection:
    first_index, first = errors[0]
    detail = f"{len(errors)} of {total} samples rejected; samples[{first_index}]: {first.detail}"
    return Rejection(topic, first.reason, detail, payload, now_ms, device_id)


def _ts(obj: dict[str, Any], key: str) -> int:
    value = obj.get(key)
    if value is None:
        raise _Invalid(Reason.SCHEMA, f"{key}: missing")
    if type(value) is not int:
        raise _Invalid(Reason.SCHEMA, f"{key}: expected integer milliseconds, got {value!r:.40}")
    if not 0 < value < _MAX_TS:
        raise _Invalid(Reason.OUT_OF_RANGE, f"{key}: {value} is not a plausible time")
    return value


def _num(obj: dict[str, Any], key: str, low: float, high: float) -> float:
    value = _opt_num(obj, key, low, high)
    if value is None:
        raise _Invalid(Reason.SCHEMA, f"{key}: missing")
    return value


def _opt_num(obj: dict[str, Any], key: str, low: float, high: float) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    kind = type(value)
    if kind is not int and kind is not float:
        raise _Invalid(Reason.SCHEMA, f"{key}: expected a number, got {value!r:.40}")
    if not low <= value <= high or (kind is float and math.isnan(value)):
        raise _Invalid(Reason.OUT_OF_RANGE, f"{key}: {value!r:.40} outside {low}..{high}")
    return float(value)


def _int(obj: dict[str, Any], key: str, low: int, high: int) -> int:
    value = _opt_int(obj, key, low, high)
    if value is None:
        raise _Invalid(Reason.SCHEMA, f"{key}: missing")
    return value


def _opt_int(obj: dict[str, Any], key: str, low: int, high: int) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if type(value) is not int:
        raise _Invalid(Reason.SCHEMA, f"{key}: expected an integer, got {value!r:.40}")
    if not low <= value <= high:
        raise _Invalid(Reason.OUT_OF_RANGE, f"{key}: {value} outside {low}..{high}")
    return value


def _opt_str(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 200:
        raise _Invalid(Reason.SCHEMA, f"{key}: expected a short string")
    if "\x00" in value:  # valid JSON (\u0000), but PostgreSQL text cannot hold it
        raise _Invalid(Reason.SCHEMA, f"{key}: contains a NUL character")
    return value


def _opt_series(obj: dict[str, Any], key: str) -> tuple[int, ...] | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        raise _Invalid(Reason.SCHEMA, f"{key}: expected a list of integers")
    for v in value:
        if type(v) is not int:
            raise _Invalid(Reason.SCHEMA, f"{key}: expected integers, got {v!r:.40}")
        if not -_INT32 <= v < _INT32:
            raise _Invalid(Reason.OUT_OF_RANGE, f"{key}: {v} outside the 32-bit range")
    return tuple(value)
