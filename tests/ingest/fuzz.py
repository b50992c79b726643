"""Generated payloads for the decoder: valid messages of every channel, then broken at random."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

DEVICES = {"telemetry": "mat-0001", "wave": "mat-0001", "status": "mat-0001", "event": "band-0001"}
BAND_TELEMETRY = "band-0001"
OTHER_TOPICS = ("mat-0001/cmd", "nobody-0009/telemetry", "mat-0001/bogus", "mat-0001/x/telemetry")
EVENT_TYPES = ("sos", "sos_cancel", "fall", "removed", "low_battery", "reboot", "")


def valid(rng: random.Random, channel: str, now_ms: int) -> dict[str, Any]:
    ts = now_ms - rng.randint(0, 3_600_000)
    if channel == "telemetry":

        def sample(t: int) -> dict[str, Any]:
            return {
                "ts": t,
                "hr": rng.choice([None, rng.randint(30, 140)]),
                "rr": rng.choice([None, 0, rng.randint(5, 30)]),
                "move": rng.randint(0, 9),
                "occ": rng.randint(0, 1),
                "sq": rng.randint(0, 100),
            }

        if rng.random() < 0.5:
            return {"seq": rng.randint(0, 10_000), **sample(ts)}
        n = rng.randint(1, 12)
        return {"seq": rng.randint(0, 10_000), "samples": [sample(ts + i * 1000) for i in range(n)]}
    if channel == "wave":
        fs = rng.choice([25, 50, 100])
        if rng.random() < 0.5:
            return {"seq": 1, "t0": ts, "fs": fs, "raw": [rng.randint(0, 65_535)] * fs}
        return {"seq": 1, "t0": ts, "fs": fs, "resp": [1] * fs, "bcg": [-3] * fs}
    if channel == "status":
        return {
            "state": rng.choice(["online", "offline"]),
            "ts": ts,
            "kind": "mattress",
            "model": "BW-M1",
            "fw": "2.4.1",
            "bat": rng.randint(0, 100),
        }
    return {
        "seq": rng.randint(0, 100),
        "ts": ts,
        "type": rng.choice(EVENT_TYPES[:5]),
        "conf": rng.random(),
        "lat": 31.19,
        "lon": 121.31,
    }


def wild(rng: random.Random, depth: int = 0) -> Any:
    """Any JSON value, ugly on purpose."""
    choice = rng.randrange(14 if depth < 3 else 10)
    match choice:
        case 0:
            return None
        case 1:
            return rng.choice([True, False])
        case 2:
            return rng.choice([0, -1, 1, 2**31, 2**63, -(2**63) - 1, 10**30, 255, 256])
        case 3:
            return rng.choice([0.5, -0.0, 1e308, -1e308, 1e-308, 3.14])
        case 4:
            return rng.choice(["", "x", "61", "nan", "\u0000", "a\u0000b", "é", "🛏️", "\u202e"])
        case 5:
            return "x" * rng.choice([199, 200, 201, 5000])
        case 6:
            return rng.randint(-5, 300)
        case 7:
            return rng.randint(1_500_000_000_000, 2_000_000_000_000)
        case 8:
            return rng.choice(EVENT_TYPES)
        case 9:
            return rng.choice(["online", "offline", "mattress", "wristband", "mat-0002"])
        case 10 | 11:
            return [wild(rng, depth + 1) for _ in range(rng.randint(0, 4))]
        case _:
            return {rng.choice(["ts", "hr", "x", "samples", "type"]): wild(rng, depth + 1)}


def mutate(rng: random.Random, obj: Any) -> Any:
    """One structural change somewhere in obj."""
    if isinstance(obj, dict) and obj and rng.random() < 0.8:
        key = rng.choice(list(obj))
        action = rng.randrange(4)
        if action == 0:
            del obj[key]
        elif action == 1:
            obj[key] = wild(rng)
        elif action == 2:
            obj[rng.choice(["device_id", "seq", "boot", "extra", "samples", "t0"])] = wild(rng)
        else:
            obj[key] = mutate(rng, obj[key])
        return obj
    if isinstance(obj, list) and obj and rng.random() < 0.8:
        i = rng.randrange(len(obj))
        obj[i] = mutate(rng, obj[i])
        return obj
    return wild(rng)


def damage(rng: random.Random, data: bytes) -> bytes:
    """Bytes-level harm: truncation, flipped bytes, invalid UTF-8, nesting, padding."""
    match rng.randrange(7):
        case 0:
            return data[: rng.randrange(len(data) + 1)]
        case 1:
            raw = bytearray(data)
            for _ in range(rng.randint(1, 4)):
                if raw:
                    raw[rng.randrange(len(raw))] = rng.randrange(256)
            return bytes(raw)
        case 2:
            return data.replace(b'"', b'"\xff', 1)
        case 3:
            return b"[" * rng.choice([10, 1000, 5000]) + b"]" * rng.choice([0, 10, 5000])
        case 4:
            return data + b" " * rng.choice([1, 70_000])
        case 5:
            return rng.randbytes(rng.randint(0, 64))
        case _:
            return data.replace(b"}", b',"\\u0000":1}', 1)


def payloads(seed: int, count: int, now_ms: int) -> Iterator[tuple[str, bytes]]:
    """(topic suffix after the prefix, payload): a tenth valid, the rest broken."""
    rng = random.Random(seed)
    channels = list(DEVICES)
    for _ in range(count):
        roll = rng.random()
        if roll < 0.03:
            yield rng.choice(OTHER_TOPICS), b'{"ts": 1}'
            continue
        channel = rng.choice(channels)
        device = (
            BAND_TELEMETRY if channel == "telemetry" and rng.random() < 0.3 else DEVICES[channel]
        )
        obj = valid(rng, channel, now_ms)
        if roll < 0.13:
            yield f"{device}/{channel}", json.dumps(obj).encode()
            continue
        for _ in range(rng.randint(1, 3)):
            obj = mutate(rng, obj)
        data = json.dumps(obj, ensure_ascii=rng.random() < 0.5).encode()
        if rng.random() < 0.25:
            data = damage(rng, data)
        yield f"{device}/{channel}", data
