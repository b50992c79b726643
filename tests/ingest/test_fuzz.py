"""Generated payloads: 100,000 through the decoder, 10,000 through the broker and the service."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections import Counter

import pytest

from ingest.protocol import Decoder, DeviceInfo
from ingest.records import (
    DeviceEvent,
    DeviceId,
    DeviceKind,
    DeviceStatus,
    MattressSample,
    Reason,
    Record,
    ResidentId,
    WaveBlock,
    WristbandSample,
)
from tests.ingest.fuzz import payloads
from tests.ingest.test_end_to_end import count, mattress, prepare
from tests.support import Device, ServiceThread, query, wait_until

PREFIX = "bedwatch/v1"
DEVICES = {
    DeviceId("mat-0001"): DeviceInfo(DeviceKind.MATTRESS, ResidentId("r-0001")),
    DeviceId("band-0001"): DeviceInfo(DeviceKind.WRISTBAND, ResidentId("r-0001")),
}
DAY_MS = 86_400_000


def storable(record: Record, now_ms: int) -> None:
    """What the decoder accepts is what the tables can hold and the protocol allows."""
    times = {
        MattressSample: lambda r: r.ts_ms,
        WristbandSample: lambda r: r.ts_ms,
        DeviceEvent: lambda r: r.ts_ms,
        DeviceStatus: lambda r: r.ts_ms,
        WaveBlock: lambda r: r.t0_ms,
    }
    ts = times[type(record)](record)
    assert now_ms - 7 * DAY_MS <= ts <= now_ms + 300_000, record
    values = (
        list(record)
        if isinstance(record, tuple)
        else [getattr(record, f.name) for f in dataclasses.fields(record)]
    )
    for value in values:
        if isinstance(value, str):
            assert "\x00" not in value, record
        if isinstance(value, float):
            assert math.isfinite(value), record
    if isinstance(record, MattressSample):
        assert record.hr is None or 0 <= record.hr <= 250
        assert record.rr is None or 0 <= record.rr <= 80
        assert 0 <= record.move <= 32_767
        assert record.occ in (0, 1)
        assert 0 <= record.sq <= 100
    if isinstance(record, DeviceStatus):
        for text in (record.model, record.fw, record.kind):
            assert text is None or "\x00" not in text


def test_100000_generated_payloads_are_each_accepted_or_rejected_with_a_reason() -> None:
    now = int(time.time() * 1000)
    decoder = Decoder(devices=DEVICES, prefix=PREFIX)
    outcomes: Counter[str] = Counter()
    for suffix, payload in payloads(seed=7, count=100_000, now_ms=now):
        out = decoder.decode(f"{PREFIX}/{suffix}", payload, now)  # nothing may escape
        if suffix.endswith("/cmd") and suffix.count("/") == 1:
            assert out.records == []
            assert out.rejections == []
            outcomes["cmd"] += 1
            continue
        assert out.records or out.rejections, (suffix, payload[:200])
        for rejection in out.rejections:
            assert isinstance(rejection.reason, Reason)
            assert rejection.detail
            outcomes[rejection.reason.value] += 1
        for record in out.records:
            storable(record, now)
        if out.records:
            outcomes["accepted"] += 1
    # The generator reaches every way in: accepted messages and each kind of rejection.
    assert outcomes["accepted"] > 10_000
    for reason in ("not_json", "schema", "out_of_range", "unknown_device", "bad_topic", "oversize"):
        assert outcomes[reason] > 100, outcomes
    assert outcomes["identity_mismatch"] + outcomes["wrong_kind"] > 100, outcomes


@pytest.mark.slow
def test_10000_generated_payloads_through_the_broker_leave_other_traffic_unchanged(
    database_url: str, broker_url: str, prefix: str
) -> None:
    service = prepare(database_url, broker_url, prefix)
    now = int(time.time() * 1000)
    fuzzed = list(payloads(seed=11, count=10_000, now_ms=now))
    # What the decoder will say of each, to compare with what the service kept.
    expect = Decoder(
        devices=DEVICES | {DeviceId("mat-0002"): DEVICES[DeviceId("mat-0001")]}, prefix=prefix
    )
    rejections = sum(len(expect.decode(f"{prefix}/{s}", p, now).rejections) for s, p in fuzzed)
    with ServiceThread(service):
        good = Device(broker_url, "mat-0002", prefix)
        attacker = Device(broker_url, "fuzzer", prefix, will=False)
        sent = []
        for i, (suffix, payload) in enumerate(fuzzed):
            attacker.client.publish(f"{prefix}/{suffix}", payload, qos=1)
            if i % 50 == 0:
                batch = [mattress(now - 600_000 + (i + k) * 10, hr=40 + k) for k in range(10)]
                good.send("telemetry", json.dumps({"seq": i, "samples": batch}))
                sent += batch
        wait_until(lambda: count(database_url, "quarantine") >= rejections, 60)
        wait_until(
            lambda: (
                count(database_url, "mattress_samples WHERE device_id = 'mat-0002'") >= len(sent)
            ),
            30,
        )
        good.close()
        attacker.close()
        assert service.broker_up()
    assert count(database_url, "quarantine") == rejections
    stored = query(
        database_url,
        "SELECT (extract(epoch FROM time) * 1000)::int8, hr FROM mattress_samples"
        " WHERE device_id = 'mat-0002' ORDER BY time",
    )
    assert stored == sorted((int(str(s["ts"])), float(str(s["hr"]))) for s in sent)
