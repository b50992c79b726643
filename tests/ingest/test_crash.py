"""Crash and clean stop of the real service process, on a private broker."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ingest.test_end_to_end import count, mattress, prepare
from tests.support import Device, Mosquitto, free_port, query, service_env, wait_until

# Streams here span 4 h of device time at 10 s a message: all of it must lie in the past.
T0 = int(time.time() * 1000) - 6 * 3_600_000


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """The service processes a test started: killed at its end if a failure left one running."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


def start_service(
    database_url: str, broker: Mosquitto, prefix: str, processes: list[subprocess.Popen[bytes]]
) -> subprocess.Popen[bytes]:
    env = service_env(
        BEDWATCH_DATABASE_URL=database_url,
        BEDWATCH_MQTT_URL=broker.url,
        BEDWATCH_TOPIC_PREFIX=prefix,
        BEDWATCH_MQTT__CLIENT_ID="bedwatch-crash-test",
        BEDWATCH_HTTP_ADDR=f"127.0.0.1:{free_port()}",  # not 8080: tests run at the same time
        BEDWATCH_DATABASE__CREATE_DATABASE="false",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "bedwatch.cli", "run"], env=env, stderr=subprocess.PIPE
    )
    processes.append(process)
    return process


def wait_subscribed(database_url: str, broker: Mosquitto, prefix: str) -> None:
    """Until the service's subscription is live: a probe status from mat-0002 is stored.

    Within 60 s, as the drills allow a service process to start: on a busy machine (tests run
    in parallel) its imports and its detector worker can take a good part of that."""
    probe = Device(broker.url, "mat-0002", prefix, will=False)
    deadline = time.monotonic() + 60
    try:
        attempt = 0
        while time.monotonic() < deadline:
            status = {"state": "online", "ts": T0 - 60_000 + attempt}
            probe.send("status", json.dumps(status))
            if count(database_url, "device_status"):
                return
            attempt += 1
            time.sleep(0.1)
        raise AssertionError("the service never subscribed")
    finally:
        probe.close()


def publish_stream(broker: Mosquitto, prefix: str, messages: int, per_s: float) -> threading.Thread:
    def run() -> None:
        device = Device(broker.url, "mat-0001", prefix)
        for i in range(messages):
            samples = [mattress(T0 + (i * 10 + k) * 1000) for k in range(10)]
            device.client.publish(
                device.topic("telemetry"), json.dumps({"seq": i, "samples": samples}), qos=1
            )
            time.sleep(1 / per_s)
        device.send("telemetry", json.dumps({"seq": messages, "samples": [mattress(T0 - 1000)]}))
        device.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.slow
def test_kill_9_mid_stream_loses_nothing_and_duplicates_nothing(
    database_url: str,
    private_broker: Mosquitto,
    prefix: str,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    prepare(database_url, private_broker.url, prefix)
    messages = 1500
    first = start_service(database_url, private_broker, prefix, processes)
    wait_subscribed(database_url, private_broker, prefix)
    stream = publish_stream(private_broker, prefix, messages, per_s=1000)
    wait_until(lambda: count(database_url, "mattress_samples") > 2000, 30)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=10)
    at_kill = count(database_url, "mattress_samples")
    assert 0 < at_kill < messages * 10, "the kill must land mid-stream"
    second = start_service(database_url, private_broker, prefix, processes)
    try:
        stream.join(60)
        total = messages * 10 + 1
        wait_until(lambda: count(database_url, "mattress_samples") >= total, 60)
        time.sleep(0.5)  # anything extra would arrive now
        rows = query(
            database_url,
            "SELECT count(*), count(DISTINCT time) FROM mattress_samples",
        )
        assert rows == [(total, total)]
    finally:
        second.send_signal(signal.SIGTERM)
        acks_logged(second)


def acks_logged(process: subprocess.Popen[bytes]) -> int:
    """The number of acknowledgements the service reported when it stopped."""
    _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err.decode()[-2000:]
    lines = [line for line in err.decode().splitlines() if "stopped:" in line]
    assert lines, err.decode()[-2000:]
    return int(lines[-1].split("flushes, ")[1].split(" acks")[0])


@pytest.mark.slow
def test_sigterm_drains_acknowledges_and_exits_zero(
    database_url: str,
    private_broker: Mosquitto,
    prefix: str,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    prepare(database_url, private_broker.url, prefix)
    service = start_service(database_url, private_broker, prefix, processes)
    wait_subscribed(database_url, private_broker, prefix)
    stream = publish_stream(private_broker, prefix, 300, per_s=2000)
    wait_until(lambda: count(database_url, "mattress_samples") >= 10, 30)
    service.send_signal(signal.SIGTERM)
    first_acks = acks_logged(service)
    stream.join(30)
    again = start_service(database_url, private_broker, prefix, processes)
    wait_until(lambda: count(database_url, "mattress_samples") == 3001, 30)
    time.sleep(0.5)
    again.send_signal(signal.SIGTERM)
    # Every message was acknowledged exactly once across the two runs: what the first run
    # stored it also acknowledged before exiting, so the broker did not hand it on again.
    probes = count(database_url, "device_status")
    assert first_acks + acks_logged(again) == 301 + probes
