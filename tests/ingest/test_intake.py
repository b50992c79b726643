"""Intake: what is held for storage, and the bound on QoS 0 held while the database is away."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest

from ingest.intake import Intake
from ingest.protocol import Decoder, DeviceInfo
from ingest.records import DeviceId, DeviceKind, ResidentId

NOW_MS = 1_764_194_465_000
DEVICES = {
    DeviceId("mat-0001"): DeviceInfo(DeviceKind.MATTRESS, ResidentId("r-0001")),
    DeviceId("band-0001"): DeviceInfo(DeviceKind.WRISTBAND, ResidentId("r-0001")),
}


@pytest.fixture
def intake() -> Iterator[Intake]:
    loop = asyncio.new_event_loop()
    yield Intake(
        Decoder(devices=DEVICES),
        loop,
        flush_max_rows=1_000_000,
        max_held_qos0_bytes=3 * len(telemetry(0)),
        clock=lambda: NOW_MS,
    )
    loop.close()


def telemetry(i: int) -> bytes:
    return json.dumps({"seq": i, "ts": NOW_MS - 60_000 + i, "hr": 60, "rr": 14, "move": 0,
                       "occ": 1, "sq": 90}).encode()  # fmt: skip


def test_qos0_telemetry_past_the_bound_is_analysed_but_not_held(intake: Intake) -> None:
    for i in range(5):
        intake.on_message(b"bedwatch/v1/mat-0001/telemetry", telemetry(i), 0, 0, False, 1)
    # QoS 1 and events are never shed, whatever QoS 0 is waiting.
    intake.on_message(b"bedwatch/v1/mat-0001/telemetry", telemetry(9), 7, 1, False, 1)
    sos = json.dumps({"seq": 1, "ts": NOW_MS, "type": "sos"}).encode()
    intake.on_message(b"bedwatch/v1/band-0001/event", sos, 0, 0, False, 1)
    held = intake.take_held()
    assert [h.decoded.seq for h in held] == [0, 1, 2, 9, 1]
    assert intake.shed_qos0 == 2
    assert len(intake.take_to_detect()) == 7  # all of it still reached the detectors
    # Stored: room again for the next ones.
    intake.on_message(b"bedwatch/v1/mat-0001/telemetry", telemetry(10), 0, 0, False, 1)
    assert [h.decoded.seq for h in intake.take_held()] == [10]
    assert intake.shed_qos0 == 2


def test_wave_is_shed_before_telemetry(intake: Intake) -> None:
    wave = json.dumps({"seq": 1, "t0": NOW_MS - 60_000, "fs": 50, "raw": [1] * 50}).encode()
    for i in range(2):  # two thirds of the limit: past the half at which wave goes
        intake.on_message(b"bedwatch/v1/mat-0001/telemetry", telemetry(i), 0, 0, False, 1)
    intake.on_message(b"bedwatch/v1/mat-0001/wave", wave, 0, 0, False, 1)
    intake.on_message(b"bedwatch/v1/mat-0001/telemetry", telemetry(2), 0, 0, False, 1)
    assert [h.decoded.channel for h in intake.take_held()] == ["telemetry"] * 3
    assert intake.shed_qos0 == 1
    assert len(intake.take_to_detect()) == 4
