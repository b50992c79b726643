"""The service's MQTT session on the real broker: chunked reads and acknowledgements in batches."""

from __future__ import annotations

import threading
import uuid
from dataclasses import replace

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from ingest.mqtt import MqttSession
from ingest.settings import MqttSettings
from tests.support import wait_until

# Received: (topic, payload, mid, qos, generation).
Got = tuple[bytes, bytes, int, int, int]


class Session:
    """An MqttSession that keeps what it receives."""

    def __init__(self, settings: MqttSettings) -> None:
        self.got: list[Got] = []
        self._lock = threading.Lock()
        self.session = MqttSession(settings, self._on_message)

    def _on_message(
        self, topic: bytes, payload: bytes, mid: int, qos: int, retain: bool, generation: int
    ) -> None:
        with self._lock:
            self.got.append((topic, payload, mid, qos, generation))

    def __enter__(self) -> Session:
        self.session.start()
        wait_until(self.session.connected.is_set)
        return self

    def __exit__(self, *exc: object) -> None:
        self.session.stop()


def publish(broker_url: str, topic: str, payloads: list[bytes]) -> None:
    host, port = broker_url.removeprefix("mqtt://").split(":")
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    client.connect(host, int(port))
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for payload in payloads]
        for info in infos:
            info.wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def settings_for(broker_url: str, prefix: str) -> MqttSettings:
    return replace(MqttSettings(), url=broker_url, topic_prefix=prefix, client_id=f"t-{prefix}")


def test_every_message_arrives_whole_and_in_order_whatever_its_size(
    broker_url: str, prefix: str
) -> None:
    # Small messages come many to a read; one of 200 kB spans several.
    payloads = [f"{i:05d}".encode() * (1 + i % 7) for i in range(2_000)]
    payloads[1_000] = b"x" * 200_000
    with Session(settings_for(broker_url, prefix)) as received:
        publish(broker_url, f"{prefix}/mat-1/telemetry", payloads)
        wait_until(lambda: len(received.got) >= len(payloads))
    assert [payload for _, payload, *_ in received.got] == payloads


def test_acknowledged_in_one_write_is_not_delivered_again(broker_url: str, prefix: str) -> None:
    settings = settings_for(broker_url, prefix)
    payloads = [str(i).encode() for i in range(500)]
    with Session(settings) as first:
        publish(broker_url, f"{prefix}/mat-1/telemetry", payloads)
        wait_until(lambda: len(first.got) >= len(payloads))
        # All but the last 20 acknowledged, together: the broker keeps those 20 for the session.
        first.session.ack_many((g, mid, qos) for _, _, mid, qos, g in first.got[:-20])
    with Session(settings) as second:
        wait_until(lambda: len(second.got) >= 20)
        second.session.ack_many((g, mid, qos) for _, _, mid, qos, g in second.got)
    assert [payload for _, payload, *_ in second.got] == payloads[-20:]
    with Session(settings) as third:
        publish(broker_url, f"{prefix}/mat-1/telemetry", [b"last"])
        wait_until(lambda: third.got)
    assert [payload for _, payload, *_ in third.got] == [b"last"]
