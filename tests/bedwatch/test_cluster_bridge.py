"""The bridge: every message the broker handed it reaches the stream once, and a message the
stream did not take is never acknowledged to the broker."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import paho.mqtt.client as paho
from nats.js.api import RawStreamMsg as Msg
from paho.mqtt.enums import CallbackAPIVersion

from bedwatch.cluster.bridge import (
    RECEIVED_HEADER,
    STREAM,
    TOPIC_HEADER,
    Bridge,
    BridgeSettings,
    route,
)
from bedwatch.cluster.partitions import partition_of
from ingest.records import DeviceId, ResidentId
from ingest.settings import MqttSettings
from tests.nats import nats_servers
from tests.support import Mosquitto

PREFIX = "bedwatch/v1"
RESIDENTS = {DeviceId("mat-1"): ResidentId("r-1"), DeviceId("band-1"): ResidentId("r-1")}


def test_routes_by_resident_and_keeps_events_apart() -> None:
    pad = route(f"{PREFIX}/mat-1/telemetry", b"{}", PREFIX, RESIDENTS)
    band = route(f"{PREFIX}/band-1/event", b"{}", PREFIX, RESIDENTS)
    stranger = route(f"{PREFIX}/mat-9/telemetry", b"{}", PREFIX, RESIDENTS)
    bad = route(f"{PREFIX}/mat 1/telemetry", b"{}", PREFIX, RESIDENTS)
    p = partition_of("r-1")
    assert (pad.subject, band.subject) == (f"bw.{p}.in.mat-1.telemetry", f"bw.{p}.ev.band-1.event")
    assert (pad.event, band.event) == (False, True)
    assert stranger.subject == f"bw.{partition_of('mat-9')}.in.mat-9.telemetry"
    assert bad.subject == f"bw.{partition_of(f'{PREFIX}/mat 1/telemetry')}.in._._"
    # Same bytes on the same topic: one id; other bytes (a restarted seq): another.
    again = route(f"{PREFIX}/mat-1/telemetry", b"{}", PREFIX, RESIDENTS)
    other = route(f"{PREFIX}/mat-1/telemetry", b'{"seq":1}', PREFIX, RESIDENTS)
    assert again.msg_id == pad.msg_id != other.msg_id


def publish(url: str, messages: list[tuple[str, bytes]]) -> None:
    """As a device: QoS 1, each one acknowledged by the broker before returning."""
    port = int(url.rsplit(":", 1)[1])
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="device-sim")
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


async def stored(nats_url: str, expected: int, timeout_s: float = 15.0) -> list[Msg]:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        async with asyncio.timeout(timeout_s):
            while (await js.stream_info(STREAM)).state.messages < expected:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        state = (await js.stream_info(STREAM)).state
        return [await js.get_msg(STREAM, seq) for seq in range(state.first_seq, state.last_seq + 1)]
    finally:
        await nc.close()


def test_every_message_once_and_none_acknowledged_before_the_stream_has_it(
    tmp_path: Path,
) -> None:
    broker = Mosquitto(tmp_path / "mqtt")
    broker.start()
    mqtt = MqttSettings(url=broker.url, client_id="bw-test", topic_prefix=PREFIX)
    try:
        with nats_servers(tmp_path / "nats") as [server]:
            settings = BridgeSettings(nats_url=server.url)
            first = [
                (f"{PREFIX}/mat-1/telemetry", b'{"seq": %d, "ts": 1, "hr": 60}' % i)
                for i in range(300)
            ]
            first += [
                (f"{PREFIX}/band-1/event", b'{"seq": %d, "type": "sos"}' % i) for i in range(5)
            ]
            first += [(f"{PREFIX}/mat 1/telemetry", b"not json")]
            later = [
                (f"{PREFIX}/mat-1/telemetry", b'{"seq": %d, "ts": 2, "hr": 61}' % i)
                for i in range(50)
            ]

            async def scenario() -> tuple[list[Msg], int]:
                bridge = Bridge(mqtt, settings, RESIDENTS)
                await bridge.start()
                await asyncio.to_thread(bridge.sessions[0].connected.wait, 10)
                await asyncio.to_thread(bridge.sessions[1].connected.wait, 10)
                await asyncio.to_thread(publish, broker.url, first)
                got = await stored(server.url, len(first))
                assert bridge.stats.acked == len(first)
                # The stream goes away: what comes now is retried, never acknowledged.
                server.stop()
                await asyncio.to_thread(publish, broker.url, later)
                await asyncio.sleep(1.0)
                acked_then = bridge.stats.acked
                await bridge.stop(drain_s=0.2)
                server.start()
                successor = Bridge(mqtt, settings, RESIDENTS)
                await successor.start()
                try:
                    every = await stored(server.url, len(first) + len(later))
                    await asyncio.sleep(0.5)  # a repeat would arrive now
                    every = await stored(server.url, len(first) + len(later))
                finally:
                    await successor.stop()
                assert got == every[: len(first)]
                return every, acked_then - len(first)

            every, acked_without_stream = asyncio.run(scenario())
    finally:
        broker.stop()
    assert acked_without_stream == 0
    assert len(every) == len(first) + len(later)
    assert sorted(m.data or b"" for m in every) == sorted(p for _, p in first + later)
    p = partition_of("r-1")
    subjects = {m.subject for m in every}
    assert subjects == {
        f"bw.{p}.in.mat-1.telemetry",
        f"bw.{p}.ev.band-1.event",
        f"bw.{partition_of(f'{PREFIX}/mat 1/telemetry')}.in._._",
    }
    sos = [m for m in every if (m.subject or "").startswith(f"bw.{p}.ev.")]
    assert len(sos) == 5
    assert all(m.headers and m.headers[TOPIC_HEADER] == f"{PREFIX}/band-1/event" for m in sos)
    assert all(m.headers and int(m.headers[RECEIVED_HEADER]) > 0 for m in every)
