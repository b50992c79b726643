"""The service's MQTT session on the real broker: chunked reads and acknowledgements in batches."""

from __future__ import annotations

import itertools
import threading
import uuid
from dataclasses import replace

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingest.mqtt import MqttSession
from ingest.settings import MqttSettings
from tests.support import wait_until

# Received: (topic, payload, mid, qos, generation, retain).
Got = tuple[bytes, bytes, int, int, int, bool]


class Session:
    """An MqttSession that keeps what it receives."""

    def __init__(self, settings: MqttSettings, *, ack: bool = False) -> None:
        """`ack`: acknowledge each message at once (MQTT 3.1.1 has no receive maximum: the
        broker stops at its in-flight limit until acknowledgements come)."""
        self.ack = ack
        self.got: list[Got] = []
        self._lock = threading.Lock()
        self.session = MqttSession(settings, self._on_message)

    def _on_message(
        self, topic: bytes, payload: bytes, mid: int, qos: int, retain: bool, generation: int
    ) -> None:
        with self._lock:
            self.got.append((topic, payload, mid, qos, generation, retain))
        if self.ack:
            self.session.ack(generation, mid, qos)

    def __enter__(self) -> Session:
        self.session.start()
        wait_until(self.session.connected.is_set)
        return self

    def __exit__(self, *exc: object) -> None:
        self.session.stop()


def publish(
    broker_url: str, topic: str, payloads: list[bytes], qos: int = 1, retain: bool = False
) -> None:
    host, port = broker_url.removeprefix("mqtt://").split(":")
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    client.connect(host, int(port))
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=qos, retain=retain) for payload in payloads]
        for info in infos:
            info.wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def settings_for(broker_url: str, prefix: str, protocol: int = 5) -> MqttSettings:
    return replace(
        MqttSettings(),
        url=broker_url,
        topic_prefix=prefix,
        client_id=f"t-{prefix.replace('/', '-')}",
        protocol=protocol,
    )


@pytest.mark.parametrize("protocol", [5, 4])
def test_every_message_arrives_whole_and_in_order_whatever_its_size(
    broker_url: str, prefix: str, protocol: int
) -> None:
    # Small messages come many to a read; one of 200 kB spans several.
    payloads = [f"{i:05d}".encode() * (1 + i % 7) for i in range(2_000)]
    payloads[1_000] = b"x" * 200_000
    topic = f"{prefix}/mat-1/telemetry"
    with Session(settings_for(broker_url, prefix, protocol), ack=True) as received:
        publish(broker_url, topic, payloads)
        publish(broker_url, f"{prefix}/mat-1/status", [b"qos 0"], qos=0)
        wait_until(lambda: len(received.got) > len(payloads))
    assert [payload for _, payload, *_ in received.got] == [*payloads, b"qos 0"]
    assert {(t, qos, retain) for t, _, _, qos, _, retain in received.got[:-1]} == {
        (topic.encode(), 1, False)
    }
    assert received.got[-1][3] == 0
    # Packet ids as the broker gave them: 2,000 in a row, none the same twice running.
    mids = [mid for _, _, mid, *_ in received.got[:-1]]
    assert all(0 < mid < 65_536 for mid in mids)
    assert all(a != b for a, b in itertools.pairwise(mids))


def test_a_retained_message_comes_as_retained(broker_url: str, prefix: str) -> None:
    topic = f"{prefix}/band-1/status"
    publish(broker_url, topic, [b'{"state":"online"}'], retain=True)
    try:
        with Session(settings_for(broker_url, prefix)) as received:
            wait_until(lambda: received.got)
        assert [(t, p, retain) for t, p, _, _, _, retain in received.got] == [
            (topic.encode(), b'{"state":"online"}', True)
        ]
    finally:
        publish(broker_url, topic, [b""], retain=True)  # the retained message cleared


def test_acknowledged_in_one_write_is_not_delivered_again(broker_url: str, prefix: str) -> None:
    settings = settings_for(broker_url, prefix)
    payloads = [str(i).encode() for i in range(500)]
    with Session(settings) as first:
        publish(broker_url, f"{prefix}/mat-1/telemetry", payloads)
        wait_until(lambda: len(first.got) >= len(payloads))
        # All but the last 20 acknowledged, together: the broker keeps those 20 for the session.
        first.session.ack_many((g, mid, qos) for _, _, mid, qos, g, _ in first.got[:-20])
    with Session(settings) as second:
        wait_until(lambda: len(second.got) >= 20)
        second.session.ack_many((g, mid, qos) for _, _, mid, qos, g, _ in second.got)
    assert [payload for _, payload, *_ in second.got] == payloads[-20:]
    with Session(settings) as third:
        publish(broker_url, f"{prefix}/mat-1/telemetry", [b"last"])
        wait_until(lambda: third.got)
    assert [payload for _, payload, *_ in third.got] == [b"last"]
