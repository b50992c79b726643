"""The stream's leader killed (SIGKILL) on a three-node NATS cluster while a device publishes:
through the bridge, every message the broker acknowledged to the device is stored once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import nats
import paho.mqtt.client as paho
import pytest
from nats.aio.client import Client as Nats
from nats.js import JetStreamContext
from paho.mqtt.enums import CallbackAPIVersion

from bedwatch.cluster.bridge import STREAM, Bridge, BridgeSettings, close_quietly, ensure_stream
from ingest.records import DeviceId, ResidentId
from ingest.settings import MqttSettings
from tests.nats import NatsServer, nats_servers
from tests.support import Mosquitto

pytestmark = pytest.mark.slow

PREFIX = "bedwatch/v1"
MESSAGES = 600
RATE_PER_S = 150.0  # modest: 2.9's MQTT gives up on a JetStream that is slow to answer
KILL_AT = 150  # the leader dies after this many messages were acknowledged
PUBLISH_FOR_S = 40.0  # a device keeps sending (and re-connecting) until MESSAGES are acknowledged
RESIDENTS = {DeviceId("mat-1"): ResidentId("r-1")}


def publish_steadily(port: int, topic: str, on_acked: Callable[[int], None]) -> int:
    """As a device: QoS 1 at a steady rate until MESSAGES were acknowledged (or PUBLISH_FOR_S);
    `on_acked(n)` after each acknowledgement. Returns how many the broker acknowledged (a send
    it never acknowledged is not counted: the device would send it again)."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="dev-1", clean_session=True)
    client.connect("127.0.0.1", port)
    client.loop_start()
    acked, i = 0, 0
    deadline = time.monotonic() + PUBLISH_FOR_S
    try:
        while acked < MESSAGES and time.monotonic() < deadline:
            i += 1
            body = json.dumps({"seq": i, "ts": 1_764_194_400_000 + i * 1000, "hr": 60})
            try:
                info = client.publish(topic, body, qos=1)
                info.wait_for_publish(10)
                published = info.is_published()
            except (RuntimeError, ValueError):
                published = False  # not connected just now (the broker's node is reconnecting)
            if published:
                acked += 1
                on_acked(acked)
            time.sleep(1 / RATE_PER_S)
    finally:
        client.disconnect()
        client.loop_stop()
    return acked


async def leader(js: JetStreamContext, stream: str) -> str:
    info = await js.stream_info(stream)
    assert info.cluster is not None
    return str(info.cluster.leader)


async def stored(js: JetStreamContext, stream: str, settle_s: float = 3.0) -> set[bytes]:
    """The distinct payloads in the stream, once its count has stopped growing."""
    last, stable_since = -1, time.monotonic()
    while time.monotonic() - stable_since < settle_s:
        with contextlib.suppress(Exception):
            count = (await js.stream_info(stream)).state.messages
            if count != last:
                last, stable_since = count, time.monotonic()
        await asyncio.sleep(0.2)
    state = (await js.stream_info(stream)).state
    payloads = [
        (await js.get_msg(stream, seq)).data or b""
        for seq in range(state.first_seq, state.last_seq + 1)
    ]
    assert len(payloads) == len(set(payloads)), "a message stored twice"
    return set(payloads)


async def ready(nc: Nats) -> JetStreamContext:
    """A JetStream context once the cluster has a meta leader (stream creation works)."""
    js = nc.jetstream(timeout=5)
    async with asyncio.timeout(30):
        while True:
            try:
                await js.account_info()
                return js
            except Exception:
                await asyncio.sleep(0.3)


async def connect(urls: list[str]) -> Nats:
    return await nats.connect(urls, max_reconnect_attempts=-1, reconnect_time_wait=0.2)


def kill_when(count: int, victim: Callable[[], NatsServer]) -> Callable[[int], None]:
    fired = threading.Event()

    def on_acked(n: int) -> None:
        if n >= count and not fired.is_set():
            fired.set()
            victim().stop(kill=True)

    return on_acked


def test_a_killed_stream_leader_loses_nothing_through_the_bridge(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "mqtt", persistence=True)
    broker.start()
    try:
        with nats_servers(tmp_path / "nats", 3) as servers:
            urls = [s.url for s in servers]
            by_name = {s.name: s for s in servers}
            shared = BridgeSettings(nats_url=",".join(urls), replicas=3)

            async def through_the_bridge() -> tuple[int, set[bytes]]:
                nc = await connect(urls)
                js = await ready(nc)
                await ensure_stream(js, shared)
                name = await leader(js, STREAM)
                mqtt = MqttSettings(url=broker.url, client_id="bw-drill", topic_prefix=PREFIX)
                bridge = Bridge(mqtt, shared, RESIDENTS)
                await bridge.start()
                try:
                    await asyncio.to_thread(bridge.sessions[0].connected.wait, 10)
                    acked = await asyncio.to_thread(
                        publish_steadily, broker.port, f"{PREFIX}/mat-1/telemetry",
                        kill_when(KILL_AT, lambda: by_name[name]),
                    )  # fmt: skip
                    # The bridge retries until the new leader takes each message; once it has
                    # acknowledged them all to the broker, the stream must hold them all.
                    async with asyncio.timeout(120):
                        while bridge.stats.acked < acked:  # noqa: ASYNC110
                            await asyncio.sleep(0.1)
                    kept = await stored(js, STREAM, settle_s=1.0)
                finally:
                    await bridge.stop()
                    await close_quietly(nc)
                return acked, kept

            acked, kept = asyncio.run(through_the_bridge())
            assert acked == MESSAGES  # the broker took every one
            assert len(kept) == MESSAGES  # and the stream has every one, once

    finally:
        broker.stop()
