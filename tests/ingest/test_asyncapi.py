"""docs/asyncapi.yaml against the decoder: what the document allows is accepted, what it forbids
is rejected. Every example, and every bound, enumeration, required field and batch limit of
every device-to-service message, just inside and just past its edge."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ingest.protocol import Decoder, DeviceInfo
from ingest.records import DeviceId, DeviceKind, ResidentId

DOC = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"
PREFIX = "bedwatch/v1"
NOW_MS = 1_764_194_600_000  # just after the examples' times
DEVICES = {
    DeviceId("mat-0001"): DeviceInfo(DeviceKind.MATTRESS, ResidentId("r-0001")),
    DeviceId("band-0001"): DeviceInfo(DeviceKind.WRISTBAND, ResidentId("r-0001")),
}
# Which device sends each message, on which channel.
SENDERS = {
    "mattressTelemetry": ("mat-0001", "telemetry"),
    "wristbandTelemetry": ("band-0001", "telemetry"),
    "wave": ("mat-0001", "wave"),
    "event": ("band-0001", "event"),
    "status": ("mat-0001", "status"),
}
SAFETY = {"sos", "fall"}  # acted on even when broken: see test_a_broken_sos_is_kept_and_reported

Case = tuple[str, str, dict[str, Any], bool]  # message, what, payload, accepted


def load() -> dict[str, Any]:
    doc = yaml.safe_load(DOC.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def resolve(doc: dict[str, Any], node: Any) -> Any:
    """A schema with its $refs and allOfs resolved (oneOf left to the caller)."""
    if isinstance(node, dict) and "$ref" in node:
        target: Any = doc
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return resolve(doc, target)
    if isinstance(node, dict) and "allOf" in node:
        merged: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
        for part in node["allOf"]:
            sub = resolve(doc, part)
            merged["properties"].update(sub.get("properties", {}))
            merged["required"] += sub.get("required", [])
        return merged
    return node


def decode(message: str, payload: dict[str, Any]) -> tuple[bool, bool]:
    """(accepted: records and no rejection, rejected: a rejection recorded)."""
    device, channel = SENDERS[message]
    decoder = Decoder(devices=DEVICES, prefix=PREFIX)
    out = decoder.decode(f"{PREFIX}/{device}/{channel}", json.dumps(payload).encode(), NOW_MS)
    return bool(out.records) and not out.rejections, bool(out.rejections)


def edges(schema: dict[str, Any]) -> Iterator[tuple[str, Any, bool]]:
    """(what, value, allowed) for one property: its bounds, enumeration and types."""
    types = schema.get("type", [])
    types = types if isinstance(types, list) else [types]
    integer = "integer" in types and "number" not in types
    step = 1 if integer else 0.5
    if "minimum" in schema:
        yield "at minimum", schema["minimum"], True
        yield "below minimum", schema["minimum"] - step, False
    if "maximum" in schema:
        yield "at maximum", schema["maximum"], True
        yield "above maximum", schema["maximum"] + step, False
    for value in schema.get("enum", []):
        yield f"enum {value!r}", value, True
    if "enum" in schema:
        yield "outside enum", "bogus" if "string" in types else 7, False
    if types:
        yield "null", None, "null" in types
    if integer and "enum" not in schema:
        yield "a fraction", (schema.get("minimum", 0) or 0) + 0.5, False
    if types == ["string"] and "enum" not in schema:
        yield "a number", 7, False


def cases() -> Iterator[Case]:
    doc = load()
    messages = doc["components"]["messages"]
    for name in SENDERS:
        message = messages[name]
        examples = [e["payload"] for e in message["examples"]]
        for i, example in enumerate(examples):
            yield name, f"example {i + 1}", example, True
        payload = message["payload"]
        alternatives = payload.get("oneOf", [payload])
        for alternative in alternatives:
            schema = resolve(doc, alternative)
            base = next(e for e in examples if set(schema.get("required", [])) <= set(e))
            if name == "event":
                base = next(e for e in examples if e["type"] == "removed")  # no safety rule
            yield from object_cases(doc, name, schema, base, lambda p, v: v)


def object_cases(
    doc: dict[str, Any], name: str, schema: dict[str, Any], base: dict[str, Any], wrap: Any
) -> Iterator[Case]:
    """Each property of `schema` at its edges, set in a copy of `base`."""
    for field in schema.get("required", []):
        broken = copy.deepcopy(base)
        del broken[field]
        yield name, f"without {field}", wrap(base, broken), False
    for field, declared in schema.get("properties", {}).items():
        prop = resolve(doc, declared)
        if prop.get("type") == "array" and "items" in prop and "maxItems" in prop:
            item_schema = resolve(doc, prop["items"])
            first = base[field][0]
            for count, ok in ((prop["maxItems"], True), (prop["maxItems"] + 1, False)):
                many = [dict(first, ts=first["ts"] + k * 1000) for k in range(count)]
                yield name, f"{field}: {count} items", dict(base, **{field: many}), ok
            yield name, f"{field}: empty", dict(base, **{field: []}), prop.get("minItems", 0) == 0

            def in_batch(
                _: dict[str, Any], item: dict[str, Any], f: str = field, batch: Any = base
            ) -> Any:
                return dict(batch, **{f: [item]})

            yield from object_cases(doc, name, item_schema, first, in_batch)
            continue
        if field in ("kind", "seq") or prop.get("type") == "array":
            continue  # kind must match the registry; seq and arrays: tests/ingest/test_protocol
        for what, value, ok in edges(prop):
            changed = dict(base, **{field: value})
            yield name, f"{field} {what}", wrap(base, changed), ok


CASES = [pytest.param(*case, id=f"{case[0]}: {case[1]}") for case in cases()]


def test_the_document_covers_every_device_message_and_many_edges() -> None:
    assert {c.values[0] for c in CASES} == set(SENDERS)
    assert len(CASES) >= 100


@pytest.mark.parametrize(("message", "what", "payload", "allowed"), CASES)
def test_the_decoder_agrees_with_the_document(
    message: str, what: str, payload: dict[str, Any], allowed: bool
) -> None:
    accepted, rejected = decode(message, payload)
    if allowed:
        assert accepted, f"{message} {what}: the document allows {payload}, the decoder refused"
    else:
        assert rejected, f"{message} {what}: the document forbids {payload}, the decoder took it"


@pytest.mark.parametrize("kind", sorted(SAFETY))
def test_a_broken_sos_is_kept_and_reported(kind: str) -> None:
    # The safety rule the document states in its description: acted on, and quarantined too.
    device, channel = SENDERS["event"]
    out = Decoder(devices=DEVICES, prefix=PREFIX).decode(
        f"{PREFIX}/{device}/{channel}", json.dumps({"type": kind, "ts": "soon"}).encode(), NOW_MS
    )
    assert len(out.records) == 1
    assert len(out.rejections) == 1


def test_the_command_example_has_exactly_its_fields() -> None:
    doc = load()
    schema = resolve(doc, doc["components"]["messages"]["sosAck"]["payload"])
    [example] = [e["payload"] for e in doc["components"]["messages"]["sosAck"]["examples"]]
    # The wristband's side of it is checked end to end in tests/alerts/test_end_to_end.py.
    assert set(example) == set(schema["required"]) == set(schema["properties"])
