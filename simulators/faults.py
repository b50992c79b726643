"""Device and delivery faults: skewed clocks, power cuts, redelivery, reordering, bad payloads."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

import numpy as np
import orjson

from simulators.scenarios import Role


class Message(NamedTuple):
    """One publish as the device makes it.

    A tuple so it unpacks as `(device_time_ms, device_id, channel, payload, qos, retain)`.
    `device_time_ms` is the simulated time at which the device publishes (its clock without any
    scripted skew; payload timestamps carry the skew).
    """

    device_time_ms: int
    device_id: str
    channel: str
    payload: bytes
    qos: int
    retain: bool


class FaultKind(StrEnum):
    OFFLINE = "offline"  # power cut: no samples, no messages, the broker fires the Last Will
    SKEW = "skew"  # device clock off by `value` ms
    DUPLICATE = "duplicate"  # a share `value` of messages delivered twice
    REORDER = "reorder"  # a share `value` held back up to `extra` seconds
    BATTERY = "battery"  # wristband battery at `value` % from here on


@dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultKind
    role: Role
    start_s: int
    end_s: int | None  # None: to the end of the night
    value: float = 0.0
    extra: float = 0.0

    def covers(self, second: float) -> bool:
        return self.start_s <= second and (self.end_s is None or second < self.end_s)


class Malformed(StrEnum):
    """Kinds of broken payload, each with the quarantine reason ingest must give it."""

    NOT_UTF8 = "not_utf8"
    TRUNCATED = "truncated"
    NOT_OBJECT = "not_object"
    WRONG_TYPE = "wrong_type"
    OUT_OF_RANGE = "out_of_range"
    MISSING_TS = "missing_ts"
    OVERSIZE_BATCH = "oversize_batch"
    IDENTITY = "identity"
    UNKNOWN_EVENT = "unknown_event"


EXPECTED_REASON = {
    Malformed.NOT_UTF8: "not_json",
    Malformed.TRUNCATED: "not_json",
    Malformed.NOT_OBJECT: "schema",
    Malformed.WRONG_TYPE: "schema",
    Malformed.OUT_OF_RANGE: "out_of_range",
    Malformed.MISSING_TS: "schema",
    Malformed.OVERSIZE_BATCH: "oversize",
    Malformed.IDENTITY: "identity_mismatch",
    Malformed.UNKNOWN_EVENT: "schema",
}


def malformed_payload(variant: Malformed, role: Role, seq: int, ts_ms: int) -> tuple[str, bytes]:
    """(channel, payload) of one broken message, as buggy firmware might send it."""
    good: dict[str, object]
    if role is Role.MATTRESS:
        good = {"seq": seq, "ts": ts_ms, "hr": 60, "rr": 14, "move": 0, "occ": 1, "sq": 90}
    else:
        good = {"seq": seq, "ts": ts_ms, "hr": 66, "spo2": 97, "bat": 80, "worn": 1, "steps": 0}
    if variant is Malformed.NOT_UTF8:
        return "telemetry", b'{"seq": ' + str(seq).encode() + b', "ts": \xff\xfe}'
    if variant is Malformed.TRUNCATED:
        return "telemetry", orjson.dumps(good)[:-9]
    if variant is Malformed.NOT_OBJECT:
        return "telemetry", orjson.dumps([seq, ts_ms, 60])
    if variant is Malformed.WRONG_TYPE:
        return "telemetry", orjson.dumps({**good, "hr": "sixty"})
    if variant is Malformed.OUT_OF_RANGE:
        key = "hr" if role is Role.MATTRESS else "spo2"
        return "telemetry", orjson.dumps({**good, key: 300})
    if variant is Malformed.MISSING_TS:
        return "telemetry", orjson.dumps({k: v for k, v in good.items() if k != "ts"})
    if variant is Malformed.OVERSIZE_BATCH and role is Role.MATTRESS:
        samples = [{**good, "ts": ts_ms - (120 - i) * 1000} for i in range(121)]
        for s in samples:
            s.pop("seq")
        return "telemetry", orjson.dumps({"seq": seq, "samples": samples})
    if variant is Malformed.OVERSIZE_BATCH:  # a wristband has no batches: an oversized payload
        return "telemetry", orjson.dumps({**good, "pad": "x" * 70_000})
    if variant is Malformed.IDENTITY:
        return "telemetry", orjson.dumps({**good, "device_id": "mat-impostor"})
    return "event", orjson.dumps({"seq": seq, "ts": ts_ms, "type": "explode"})


def expected_reason(variant: Malformed, role: Role) -> str:
    if variant is Malformed.OVERSIZE_BATCH and role is Role.WRISTBAND:
        return "oversize"
    return EXPECTED_REASON[variant]


def redeliver(
    messages: Iterable[Message], faults: tuple[Fault, ...], origin_ms: int, seed: Iterable[int]
) -> Iterator[Message]:
    """Apply duplicate and reorder faults to one device's time-ordered stream, keeping it ordered
    by send time: a held-back message is sent after later ones, a duplicate again a little later."""
    active = [f for f in faults if f.kind in (FaultKind.DUPLICATE, FaultKind.REORDER)]
    if not active:
        yield from messages
        return
    rng = np.random.default_rng(list(seed))
    held: list[tuple[int, int, Message]] = []
    n = 0
    for msg in messages:
        now, out = msg.device_time_ms, msg
        second = (now - origin_ms) / 1000
        for f in active:
            if not f.covers(second) or rng.random() >= f.value or msg.retain:
                continue
            if f.kind is FaultKind.DUPLICATE:
                later = msg.device_time_ms + int(rng.uniform(50, 3000))
                n += 1
                heapq.heappush(held, (later, n, msg._replace(device_time_ms=later)))
            else:
                later = out.device_time_ms + int(rng.uniform(1000, 1000 * max(f.extra, 1.0)))
                out = out._replace(device_time_ms=later)
        n += 1
        heapq.heappush(held, (out.device_time_ms, n, out))
        while held and held[0][0] <= now:
            yield heapq.heappop(held)[2]
    while held:
        yield heapq.heappop(held)[2]
