"""The MQTT transport against the machine's Mosquitto: what arrives is what the generator made."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from simulators.fleet import FleetOptions
from simulators.ground_truth import read_truth
from simulators.night import NightOptions
from simulators.runner import RunConfig, RunResult, build_nights, run_fleet
from simulators.scenarios import scenario
from simulators.sleep import TIMEZONE
from tests.support import Mosquitto

Received = list[tuple[str, str, bytes, bool]]


class Listener:
    """A subscriber on a test's own prefix, like ingest would be."""

    def __init__(self, prefix: str, port: int) -> None:
        self.prefix = prefix
        self.port = port
        self.got: Received = []
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:10]}"
        )
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"{prefix}/+/+", qos=1)
        self.client.loop_start()
        time.sleep(0.3)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        _, device, channel = msg.topic.rsplit("/", 2)
        self.got.append((device, channel, bytes(msg.payload), msg.retain))

    def publish(self, device: str, channel: str, body: dict[str, object]) -> None:
        self.client.publish(f"{self.prefix}/{device}/{channel}", orjson.dumps(body), qos=1)

    def close(self) -> None:
        # Leave nothing retained behind in the shared broker.
        for device in {d for d, c, _, _ in self.got if c == "status"}:
            self.client.publish(
                f"{self.prefix}/{device}/status", b"", qos=1, retain=True
            ).wait_for_publish(5)
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[Listener]:
    # A private broker: the shared one keeps Mosquitto's default queue of 1,000 messages per
    # client, which a fast-forwarded fleet can overflow while the machine is busy.
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    lst = Listener(f"test/{uuid.uuid4().hex}/bedwatch/v1", broker.port)
    yield lst
    lst.close()
    broker.stop()


def _config(
    listener: Listener,
    *,
    beds: int = 1,
    speed: float = 600.0,
    duration_s: float = 1200.0,
    keepalive_s: int = 60,
    **kwargs: Any,
) -> RunConfig:
    """A run that ends now: played from the past so no device clock runs ahead of the broker."""
    start = int(time.time() * 1000) - int(duration_s * 1000)
    return RunConfig(
        start_ms=start,
        duration_s=duration_s,
        beds=beds,
        night=NightOptions(keepalive_s=keepalive_s),
        transport=FleetOptions(
            port=listener.port, prefix=listener.prefix, speed=speed, keepalive_s=keepalive_s
        ),
        **kwargs,
    )


def test_what_arrives_is_exactly_what_the_generator_made(
    listener: Listener, tmp_path: Path
) -> None:
    config = _config(listener, beds=3, truth_path=tmp_path / "truth.jsonl")
    result = run_fleet(config)
    expected = Counter(
        (m.device_id, m.channel, m.payload) for n in build_nights(config) for m in n.messages()
    )
    assert result.stats.devices == 6
    assert result.stats.acked == result.stats.published == sum(expected.values())
    # Acked by the broker is not yet delivered to the listener: wait for it, bounded.
    deadline = time.monotonic() + 10
    while len(listener.got) < sum(expected.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    got = Counter((d, c, p) for d, c, p, _ in listener.got)
    assert got == expected
    assert result.stats.samples > 3 * 1100
    lines = list(read_truth(tmp_path / "truth.jsonl"))
    assert [x["resident_id"] for x in lines] == ["r-0001", "r-0002", "r-0003"]


def test_the_wristband_obeys_sos_ack(listener: Listener) -> None:
    config = _config(listener, beds=1, duration_s=1200.0, speed=300.0)
    out: list[RunResult] = []
    runner = threading.Thread(target=lambda: out.append(run_fleet(config)))
    runner.start()
    time.sleep(1.5)
    listener.publish("band-0001", "cmd", {"type": "sos_ack", "alert": "a-1", "ts": 1})
    runner.join(30)
    (result,) = out
    assert ("band-0001", {"type": "sos_ack", "alert": "a-1", "ts": 1}) in result.stats.commands


@pytest.mark.slow
def test_a_power_cut_fires_the_last_will_and_the_device_comes_back(listener: Listener) -> None:
    start_s = time.time() - 450
    cut_at = datetime.fromtimestamp(start_s + 40, TIMEZONE).time().isoformat()
    offline = scenario("device_offline", at=cut_at, device="mattress", duration_s=330)
    config = _config(
        listener,
        speed=30.0,
        keepalive_s=5,
        duration_s=450.0,
        wristbands=False,
        scenarios=[offline],
    )
    result = run_fleet(config)
    time.sleep(0.3)
    statuses = [orjson.loads(p) for d, c, p, _ in listener.got if c == "status" and p]
    assert result.stats.power_cuts == 1
    assert statuses[0]["state"] == "online"
    assert statuses[0]["boot"] == 1
    assert {"state": "offline"} in statuses  # the broker's Last Will, not a message we sent
    assert statuses[-1]["state"] == "online"
    assert statuses[-1]["boot"] == 2
    sent = [p for n in build_nights(config) for p in (m.payload for m in n.messages())]
    assert b'{"state":"offline"}' not in sent
