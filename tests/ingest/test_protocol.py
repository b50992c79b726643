"""The decoder alone: every channel of protocol v1, and every way of breaking it."""

from __future__ import annotations

import json

import pytest

from ingest.protocol import Decoder, DeviceInfo
from ingest.records import (
    DeviceEvent,
    DeviceId,
    DeviceKind,
    EventType,
    MattressSample,
    Reason,
    ResidentId,
    WaveBlock,
)
from tests.ingest.hostile import HOSTILE, NOW_MS, Bad

PREFIX = "bedwatch/v1"
DEVICES = {
    DeviceId("mat-0001"): DeviceInfo(DeviceKind.MATTRESS, ResidentId("r-0001")),
    DeviceId("mat-0002"): DeviceInfo(DeviceKind.MATTRESS, ResidentId("r-0002")),
    DeviceId("band-0001"): DeviceInfo(DeviceKind.WRISTBAND, ResidentId("r-0001")),
}


@pytest.fixture
def decoder() -> Decoder:
    return Decoder(devices=DEVICES, prefix=PREFIX)


def topic_of(bad: Bad) -> str:
    return f"{PREFIX}/{bad.device}/{bad.channel}"


def test_there_are_at_least_25_distinct_hostile_cases() -> None:
    assert len({b.name for b in HOSTILE}) >= 25
    assert len({b.payload for b in HOSTILE}) >= 25


@pytest.mark.parametrize("bad", HOSTILE, ids=lambda b: b.name)
def test_hostile_message_is_rejected_with_its_reason(decoder: Decoder, bad: Bad) -> None:
    out = decoder.decode(topic_of(bad), bad.payload, NOW_MS)
    assert out.records == []
    assert [r.reason for r in out.rejections] == [bad.reason], out.rejections
    rejection = out.rejections[0]
    assert rejection.payload == bad.payload
    assert rejection.topic == topic_of(bad)
    assert rejection.detail


def test_one_bad_sample_in_a_batch_keeps_the_others(decoder: Decoder) -> None:
    samples = [
        {
            "ts": NOW_MS + i * 1000,
            "hr": 300 if i == 3 else 60,
            "rr": 14,
            "move": 0,
            "occ": 1,
            "sq": 90,
        }
        for i in range(10)
    ]
    out = decoder.decode(
        f"{PREFIX}/mat-0001/telemetry", json.dumps({"samples": samples}).encode(), NOW_MS + 20_000
    )
    assert [s.ts_ms for s in out.records if isinstance(s, MattressSample)] == [
        NOW_MS + i * 1000 for i in range(10) if i != 3
    ]
    assert [r.reason for r in out.rejections] == [Reason.OUT_OF_RANGE]
    assert "1 of 10 samples" in out.rejections[0].detail


def test_an_sos_with_broken_fields_is_still_an_sos(decoder: Decoder) -> None:
    payload = b'{"type": "sos", "ts": "yesterday", "lat": "north"}'
    out = decoder.decode(f"{PREFIX}/band-0001/event", payload, NOW_MS)
    assert out.records == [
        DeviceEvent(
            DeviceId("band-0001"), ResidentId("r-0001"), NOW_MS, EventType.SOS, degraded=True
        )
    ]
    assert [r.reason for r in out.rejections] == [Reason.SCHEMA]
    assert "sos kept with receive time" in out.rejections[0].detail


def test_a_clock_far_ahead_is_moved_to_receive_time_and_the_skew_kept(decoder: Decoder) -> None:
    ahead = 3_600_000
    samples = [
        {"ts": NOW_MS + ahead - (9 - i) * 1000, "hr": 60, "rr": 14, "move": 0, "occ": 1, "sq": 90}
        for i in range(10)
    ]
    out = decoder.decode(
        f"{PREFIX}/mat-0001/telemetry", json.dumps({"samples": samples}).encode(), NOW_MS
    )
    assert out.skew_ms == ahead
    assert [s.ts_ms for s in out.records if isinstance(s, MattressSample)] == [
        NOW_MS - (9 - i) * 1000 for i in range(10)
    ]
    assert out.rejections == []


def test_an_event_from_a_clock_far_ahead_keeps_the_device_time_as_its_identity(
    decoder: Decoder,
) -> None:
    ts = NOW_MS + 3_600_000
    topic = f"{PREFIX}/band-0001/event"
    sos = json.dumps({"seq": 3, "ts": ts, "type": "sos"}).encode()
    broken = json.dumps({"seq": 4, "ts": ts, "type": "fall", "conf": 7}).encode()
    first = decoder.decode(topic, sos, NOW_MS).records[0]
    again = decoder.decode(topic, sos, NOW_MS + 5_000).records[0]  # delivered again, later
    fall = decoder.decode(topic, broken, NOW_MS).records[0]
    assert isinstance(first, DeviceEvent)
    assert isinstance(again, DeviceEvent)
    assert isinstance(fall, DeviceEvent)
    assert (first.ts_ms, again.ts_ms) == (NOW_MS, NOW_MS + 5_000)  # acted on at receive time
    assert first.identity_ms == again.identity_ms == ts
    assert (fall.degraded, fall.ts_ms, fall.identity_ms) == (True, NOW_MS, ts)


def test_a_clock_slightly_ahead_is_taken_as_given(decoder: Decoder) -> None:
    payload = json.dumps(
        {"ts": NOW_MS + 60_000, "hr": 60, "rr": 14, "move": 0, "occ": 1, "sq": 90}
    ).encode()
    out = decoder.decode(f"{PREFIX}/mat-0001/telemetry", payload, NOW_MS)
    assert out.skew_ms is None
    assert out.records[0].ts_ms == NOW_MS + 60_000  # type: ignore[union-attr]


def test_unknown_fields_are_ignored_and_nulls_allowed(decoder: Decoder) -> None:
    payload = json.dumps(
        {
            "seq": 7,
            "ts": NOW_MS,
            "hr": None,
            "rr": None,
            "move": 40,
            "occ": 1,
            "sq": 12,
            "temp": 36.6,
            "fw_debug": {"x": 1},
        }
    ).encode()
    out = decoder.decode(f"{PREFIX}/mat-0001/telemetry", payload, NOW_MS)
    assert out.rejections == []
    assert out.seq == 7
    sample = out.records[0]
    assert isinstance(sample, MattressSample)
    assert (sample.hr, sample.rr, sample.move) == (None, None, 40)


def test_wave_blocks_of_both_shapes_decode(decoder: Decoder) -> None:
    mixed = json.dumps({"seq": 44, "t0": NOW_MS, "fs": 50, "raw": [20311, 20290] * 25}).encode()
    split = json.dumps(
        {"seq": 45, "t0": NOW_MS + 1000, "fs": 50, "resp": [512] * 50, "bcg": [3, -7] * 25}
    ).encode()
    a = decoder.decode(f"{PREFIX}/mat-0001/wave", mixed, NOW_MS)
    b = decoder.decode(f"{PREFIX}/mat-0001/wave", split, NOW_MS)
    assert isinstance(a.records[0], WaveBlock)
    assert a.records[0].n == 50
    assert isinstance(b.records[0], WaveBlock)
    assert b.records[0].bcg == (3, -7) * 25


def test_commands_to_devices_are_ignored(decoder: Decoder) -> None:
    out = decoder.decode(f"{PREFIX}/band-0001/cmd", b'{"type": "sos_ack"}', NOW_MS)
    assert out.records == []
    assert out.rejections == []


def test_an_sos_with_a_bad_optional_field_keeps_its_own_time(decoder: Decoder) -> None:
    payload = json.dumps({"type": "fall", "ts": NOW_MS - 600_000, "conf": 1.7}).encode()
    out = decoder.decode(f"{PREFIX}/band-0001/event", payload, NOW_MS)
    [event] = out.records
    assert isinstance(event, DeviceEvent)
    assert (event.type, event.ts_ms, event.degraded) == (EventType.FALL, NOW_MS - 600_000, True)
    assert "fall kept with its own time" in out.rejections[0].detail


def test_one_wild_timestamp_in_a_good_batch_is_that_samples_fault_alone(
    decoder: Decoder,
) -> None:
    samples = [
        {"ts": NOW_MS - (9 - i) * 1000, "hr": 60, "rr": 14, "move": 0, "occ": 1, "sq": 90}
        for i in range(10)
    ]
    samples[4]["ts"] = NOW_MS + 30 * 86_400_000  # one sample stamped a month ahead
    payload = json.dumps({"samples": samples}).encode()
    out = decoder.decode(f"{PREFIX}/mat-0001/telemetry", payload, NOW_MS)
    assert out.skew_ms is None
    assert len(out.records) == 9
    assert [r.reason for r in out.rejections] == [Reason.OUT_OF_RANGE]
    assert "1 of 10 samples" in out.rejections[0].detail


@pytest.mark.parametrize(
    ("envelope", "reason"),
    [
        ({"seq": -1}, Reason.OUT_OF_RANGE),
        ({"seq": "7"}, Reason.SCHEMA),
        ({"seq": 1.5}, Reason.SCHEMA),
        ({"device_id": 42}, Reason.IDENTITY_MISMATCH),
        ({"device_id": ["band-0001"]}, Reason.IDENTITY_MISMATCH),
        ({"device_id": "band-0002"}, Reason.IDENTITY_MISMATCH),
    ],
)
@pytest.mark.parametrize("kind", ["sos", "fall"])
def test_an_emergency_with_a_broken_envelope_is_still_acted_on(
    decoder: Decoder, envelope: dict[str, object], reason: Reason, kind: str
) -> None:
    ts = NOW_MS - 2_000
    payload = json.dumps({"type": kind, "ts": ts, **envelope}).encode()
    out = decoder.decode(f"{PREFIX}/band-0001/event", payload, NOW_MS)
    [event] = out.records
    assert isinstance(event, DeviceEvent)
    assert (event.device_id, event.type, event.ts_ms) == ("band-0001", kind, ts)
    assert event.degraded
    assert [r.reason for r in out.rejections] == [reason]
    assert f"{kind} kept with its own time" in out.rejections[0].detail


@pytest.mark.parametrize("envelope", [{"seq": -1}, {"device_id": 42}, {"device_id": "other"}])
def test_other_events_with_a_broken_envelope_are_rejected_whole(
    decoder: Decoder, envelope: dict[str, object]
) -> None:
    payload = json.dumps({"type": "removed", "ts": NOW_MS, **envelope}).encode()
    out = decoder.decode(f"{PREFIX}/band-0001/event", payload, NOW_MS)
    assert out.records == []
    assert len(out.rejections) == 1


def test_an_unhashable_event_type_with_a_broken_envelope_is_a_rejection(decoder: Decoder) -> None:
    payload = json.dumps({"type": ["sos"], "seq": -1, "ts": NOW_MS}).encode()
    out = decoder.decode(f"{PREFIX}/band-0001/event", payload, NOW_MS)
    assert out.records == []
    assert [r.reason for r in out.rejections] == [Reason.OUT_OF_RANGE]


@pytest.mark.parametrize("field", ["fw", "model"])
def test_text_postgresql_cannot_store_is_refused_at_decode(decoder: Decoder, field: str) -> None:
    status = {"state": "online", "ts": NOW_MS, "kind": "mattress", field: "2.4\u00001"}
    out = decoder.decode(f"{PREFIX}/mat-0001/status", json.dumps(status).encode(), NOW_MS)
    assert out.records == []
    [rejection] = out.rejections
    assert rejection.reason is Reason.SCHEMA
    assert f"{field}: contains a NUL character" in rejection.detail
