"""What the simulator sends is what ingest accepts, for every channel and every scenario."""

from __future__ import annotations

from collections import Counter
from datetime import date
from pathlib import Path

import orjson
import pytest

from ingest.protocol import Decoder, DeviceInfo
from ingest.records import DeviceEvent, DeviceId, DeviceKind, ResidentId, WaveBlock
from simulators.faults import Message
from simulators.night import Night, NightOptions, make_night
from simulators.scenarios import load_scenarios
from simulators.site import Devices, residents_of
from simulators.wave import WaveMode

EXAMPLES = Path(__file__).parents[2] / "simulators" / "examples" / "every_scenario.toml"
PREFIX = "bedwatch/v1"
RESIDENTS = residents_of(7)
WAVE = {6: WaveMode.SPLIT, 7: WaveMode.RAW}


def _decoder(residents: tuple[Devices, ...]) -> Decoder:
    devices: dict[DeviceId, DeviceInfo] = {}
    for d in residents:
        rid = ResidentId(d.resident_id)
        devices[DeviceId(d.mattress_id)] = DeviceInfo(kind=DeviceKind.MATTRESS, resident_id=rid)
        devices[DeviceId(d.wristband_id)] = DeviceInfo(kind=DeviceKind.WRISTBAND, resident_id=rid)
    return Decoder(devices=devices, prefix=PREFIX)


@pytest.fixture(scope="module")
def nights() -> list[Night]:
    specs = load_scenarios(EXAMPLES)
    return [
        make_night(
            d,
            seed=11,
            night_date=date(2025, 11, 26),
            scenarios=specs,
            options=NightOptions(wave=WAVE.get(d.index, WaveMode.OFF)),
        )
        for d in RESIDENTS
    ]


@pytest.fixture(scope="module")
def sent(nights: list[Night]) -> list[Message]:
    return [m for n in nights for m in n.messages(broker_will=True)]


def _expected_rejections(nights: list[Night]) -> dict[tuple[str, int], str]:
    expected = {}
    for n in nights:
        for t in n.script.truth:
            if t.scenario == "malformed":
                expected[(t.device_id, t.start_ms)] = str(t.params["reason"])
    return expected


def test_every_message_decodes_except_the_deliberately_malformed(
    nights: list[Night], sent: list[Message]
) -> None:
    decoder = _decoder(RESIDENTS)
    expected = _expected_rejections(nights)
    assert len(expected) == 18
    seen: dict[tuple[str, int], str] = {}
    unexpected = []
    for m in sent:
        out = decoder.decode(
            f"{PREFIX}/{m.device_id}/{m.channel}", m.payload, m.device_time_ms, m.retain
        )
        key = (m.device_id, m.device_time_ms)
        if key in expected:
            assert len(out.rejections) == 1, (key, m.payload[:120])
            seen[key] = str(out.rejections[0].reason)
            assert not out.records
        elif out.rejections or not out.records:
            unexpected.append((m, out.rejections))
    assert unexpected == []
    assert seen == expected


def test_every_channel_and_event_type_is_exercised(sent: list[Message]) -> None:
    decoder = _decoder(RESIDENTS)
    kinds: Counter[str] = Counter()
    for m in sent:
        out = decoder.decode(
            f"{PREFIX}/{m.device_id}/{m.channel}", m.payload, m.device_time_ms, m.retain
        )
        for r in out.records:
            kinds[type(r).__name__] += 1
            if isinstance(r, DeviceEvent):
                kinds[f"event:{r.type}"] += 1
            if isinstance(r, WaveBlock):
                kinds["wave:raw" if r.raw is not None else "wave:split"] += 1
    for name in ("MattressSample", "WristbandSample", "DeviceStatus", "wave:raw", "wave:split"):
        assert kinds[name] > 0, name
    for event in ("sos", "sos_cancel", "fall", "removed", "low_battery"):
        assert kinds[f"event:{event}"] >= 1, event


def test_status_online_on_connect_and_last_will_after_power_cut(sent: list[Message]) -> None:
    statuses = [(m.device_id, orjson.loads(m.payload)) for m in sent if m.channel == "status"]
    assert all(m.retain for m in sent if m.channel == "status")
    online = Counter(d for d, body in statuses if body["state"] == "online")
    offline = [d for d, body in statuses if body == {"state": "offline"}]
    # Every device comes online once; the two that lose power come back with a second boot.
    assert online == Counter(
        {
            **{d.mattress_id: 1 for d in RESIDENTS},
            **{d.wristband_id: 1 for d in RESIDENTS},
            "mat-0005": 2,
            "band-0005": 2,
        }
    )
    assert sorted(offline) == ["band-0005", "mat-0005"]


def test_clock_skew_is_accepted_and_corrected(nights: list[Night]) -> None:
    decoder = _decoder(RESIDENTS)
    skewed = 0
    for m in nights[4].messages():
        out = decoder.decode(
            f"{PREFIX}/{m.device_id}/{m.channel}", m.payload, m.device_time_ms, m.retain
        )
        assert not out.rejections
        if out.skew_ms:
            skewed += 1
            assert 590_000 <= out.skew_ms <= 601_000
    assert skewed >= 300  # an hour of 10-sample batches ten minutes ahead


def test_sequence_numbers_count_per_channel_and_restart_after_a_power_cut(
    nights: list[Night],
) -> None:
    by_channel: dict[tuple[str, str], list[int]] = {}
    for m in nights[4].messages():
        body = orjson.loads(m.payload)
        if "seq" in body:
            by_channel.setdefault((m.device_id, m.channel), []).append(body["seq"])
    telemetry = by_channel[("mat-0005", "telemetry")]
    restarts = [i for i in range(1, len(telemetry)) if telemetry[i] != telemetry[i - 1] + 1]
    assert len(restarts) == 1
    assert telemetry[restarts[0]] == 0
    assert telemetry[0] == 0


@pytest.mark.parametrize("batch", [1, 120])
def test_unbatched_and_largest_batches_decode(batch: int) -> None:
    decoder = _decoder(RESIDENTS[:1])
    start = 1764187200000  # 04:00 Shanghai, asleep
    night = make_night(
        RESIDENTS[0],
        seed=2,
        start_ms=start,
        end_ms=start + 3600_000,
        options=NightOptions(batch=batch),
    )
    samples = 0
    for m in night.messages():
        topic = f"{PREFIX}/{m.device_id}/{m.channel}"
        out = decoder.decode(topic, m.payload, m.device_time_ms, m.retain)
        assert not out.rejections
        if m.channel == "telemetry" and m.device_id == "mat-0001":
            body = orjson.loads(m.payload)
            assert ("samples" in body) is (batch > 1)
            samples += len(out.records)
    assert 3580 - batch <= samples <= 3600  # a batch still filling at the end is not sent yet
