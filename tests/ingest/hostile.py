"""Malformed and hostile messages, each with the quarantine reason it must get."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from ingest.records import Reason

NOW_MS = int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class Bad:
    name: str
    device: str  # device id in the topic
    channel: str  # channel, or a whole topic suffix after the prefix when it contains "/"
    payload: bytes
    reason: Reason


def _j(obj: object) -> bytes:
    return json.dumps(obj).encode()


def _sample(**fields: object) -> dict[str, object]:
    return {"ts": NOW_MS, "hr": 61, "rr": 14, "move": 2, "occ": 1, "sq": 93} | fields


def _wave(**fields: object) -> dict[str, object]:
    return {"seq": 1, "t0": NOW_MS, "fs": 50, "raw": [20311] * 50} | fields


HOSTILE: list[Bad] = [
    Bad("truncated json", "mat-0001", "telemetry", b'{"seq": 1, "ts": 17641944', Reason.NOT_JSON),
    Bad("plain text", "mat-0001", "telemetry", b"hello world", Reason.NOT_JSON),
    Bad("empty payload", "mat-0001", "telemetry", b"", Reason.NOT_JSON),
    Bad("not utf-8", "mat-0001", "telemetry", b'{"ts": "\xff\xfe\xfa"}', Reason.NOT_JSON),
    Bad("NaN literal", "mat-0001", "telemetry", b'{"ts": 1, "hr": NaN}', Reason.NOT_JSON),
    Bad("nested bomb", "mat-0001", "telemetry", b"[" * 5000 + b"]" * 5000, Reason.NOT_JSON),
    Bad("json array", "mat-0001", "telemetry", b"[1, 2, 3]", Reason.SCHEMA),
    Bad("json string", "mat-0001", "telemetry", b'"61"', Reason.SCHEMA),
    Bad("hr as string", "mat-0001", "telemetry", _j(_sample(hr="61")), Reason.SCHEMA),
    Bad("hr as bool", "mat-0001", "telemetry", _j(_sample(hr=True)), Reason.SCHEMA),
    Bad("ts as float", "mat-0001", "telemetry", _j(_sample(ts=NOW_MS + 0.5)), Reason.SCHEMA),
    Bad(
        "ts as iso text",
        "mat-0001",
        "telemetry",
        _j(_sample(ts="2026-11-26T10:00:00Z")),
        Reason.SCHEMA,
    ),
    Bad(
        "ts missing",
        "mat-0001",
        "telemetry",
        _j({"hr": 61, "rr": 14, "move": 0, "occ": 1, "sq": 90}),
        Reason.SCHEMA,
    ),
    Bad(
        "occ missing",
        "mat-0001",
        "telemetry",
        _j({"ts": NOW_MS, "move": 0, "sq": 90}),
        Reason.SCHEMA,
    ),
    Bad("infinite number", "mat-0001", "telemetry", b'{"ts": 1, "hr": 1e999}', Reason.OUT_OF_RANGE),
    Bad("huge number", "mat-0001", "telemetry", _j(_sample(hr=1e300)), Reason.OUT_OF_RANGE),
    Bad(
        "huge integer",
        "mat-0001",
        "telemetry",
        b'{"ts": 123456789012345678901234567890}',
        Reason.SCHEMA,
    ),
    Bad("hr above range", "mat-0001", "telemetry", _j(_sample(hr=300)), Reason.OUT_OF_RANGE),
    Bad("occ not 0/1", "mat-0001", "telemetry", _j(_sample(occ=2)), Reason.OUT_OF_RANGE),
    Bad("negative move", "mat-0001", "telemetry", _j(_sample(move=-1)), Reason.OUT_OF_RANGE),
    Bad("negative ts", "mat-0001", "telemetry", _j(_sample(ts=-5)), Reason.OUT_OF_RANGE),
    Bad("seq past int8", "mat-0001", "telemetry", _j(_sample(seq=2**63)), Reason.OUT_OF_RANGE),
    Bad("70 KB payload", "mat-0001", "telemetry", _j(_sample(pad="x" * 70_000)), Reason.OVERSIZE),
    Bad(
        "10,000-sample batch",
        "mat-0001",
        "telemetry",
        _j({"seq": 1, "samples": [{"ts": NOW_MS + i} for i in range(10_000)]}),
        Reason.OVERSIZE,
    ),
    Bad(
        "121-sample batch",
        "mat-0001",
        "telemetry",
        _j({"seq": 1, "samples": [_sample(ts=NOW_MS - 200_000 + i * 1000) for i in range(121)]}),
        Reason.OVERSIZE,
    ),
    Bad("empty batch", "mat-0001", "telemetry", _j({"seq": 1, "samples": []}), Reason.SCHEMA),
    Bad(
        "samples not a list",
        "mat-0001",
        "telemetry",
        _j({"seq": 1, "samples": {"a": 1}}),
        Reason.SCHEMA,
    ),
    Bad(
        "sample not an object",
        "mat-0001",
        "telemetry",
        _j({"seq": 1, "samples": ["x"]}),
        Reason.SCHEMA,
    ),
    Bad(
        "another device's id",
        "mat-0001",
        "telemetry",
        _j(_sample(device_id="mat-0002")),
        Reason.IDENTITY_MISMATCH,
    ),
    Bad("unknown device", "mat-9999", "telemetry", _j(_sample()), Reason.UNKNOWN_DEVICE),
    Bad("extra topic level", "mat-0001", "telemetry/extra", _j(_sample()), Reason.BAD_TOPIC),
    Bad("unknown channel", "mat-0001", "video", _j(_sample()), Reason.BAD_TOPIC),
    Bad("invalid device id", "bad id!", "telemetry", _j(_sample()), Reason.BAD_TOPIC),
    Bad(
        "stale data", "mat-0001", "telemetry", _j(_sample(ts=NOW_MS - 8 * 86_400_000)), Reason.STALE
    ),
    Bad("wave from a wristband", "band-0001", "wave", _j(_wave()), Reason.WRONG_KIND),
    Bad(
        "wave resp/bcg differ",
        "mat-0001",
        "wave",
        _j(_wave(raw=None, resp=[1, 2, 3], bcg=[1, 2])),
        Reason.SCHEMA,
    ),
    Bad("wave fs too high", "mat-0001", "wave", _j(_wave(fs=1000)), Reason.OUT_OF_RANGE),
    Bad("wave float values", "mat-0001", "wave", _j(_wave(raw=[1.5, 2.5])), Reason.SCHEMA),
    Bad(
        "wave block over 10 s", "mat-0001", "wave", _j(_wave(fs=10, raw=[1] * 200)), Reason.OVERSIZE
    ),
    Bad(
        "unknown event type",
        "band-0001",
        "event",
        _j({"ts": NOW_MS, "type": "explode"}),
        Reason.SCHEMA,
    ),
    Bad("status state unknown", "band-0001", "status", _j({"state": "sleeping"}), Reason.SCHEMA),
    Bad(
        "status of another kind",
        "band-0001",
        "status",
        _j({"state": "online", "ts": NOW_MS, "kind": "mattress"}),
        Reason.WRONG_KIND,
    ),
    Bad(
        "spo2 out of range",
        "band-0001",
        "telemetry",
        _j({"ts": NOW_MS, "spo2": 150}),
        Reason.OUT_OF_RANGE,
    ),
]
