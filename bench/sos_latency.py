"""Benchmark: an SOS press, as firmware sends it, to the first alert in a receiver's hands.

A private Mosquitto, a fresh database, the service with the alerts component, and a local HTTP
receiver (apprise json://) run here; `bedwatch sim` streams --beds simulated beds (pad + band) in a
process of its own. Once the fleet plays, --presses SOS events are published, each from its own
wristband (one resident each, so each opens an alert), at --rate presses a second. The delay is
from just before the publish to the receiver's arrival of that resident's first message.

    uv run python bench/sos_latency.py [--beds 1000] [--presses 200] [--rate 5]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bedwatch.migrate import migrate  # noqa: E402
from bedwatch.service import Service, alerts_component  # noqa: E402
from bedwatch.site import parse_site  # noqa: E402
from ingest.registry import store_site  # noqa: E402
from simulators.site import Devices, residents_of, site_toml  # noqa: E402
from tests.alerts.receivers import HttpReceiver  # noqa: E402
from tests.support import (  # noqa: E402
    Mosquitto,
    ServiceThread,
    free_port,
    fresh_database,
    settings_for,
    wait_until,
)

FIRST_SOS = 5001
ROOM = re.compile(r"(?:哪里：|Where: )(\S+ \S+)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--beds", type=int, default=1000)
    p.add_argument("--presses", type=int, default=200)
    p.add_argument("--rate", type=float, default=5.0, help="presses a second")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    fleet = residents_of(args.beds)
    pressers = residents_of(args.presses, first=FIRST_SOS)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp, fresh_database() as db, HttpReceiver() as http:
        broker = Mosquitto(Path(tmp) / "mosquitto")
        broker.start()
        try:
            prefix = f"bench/{uuid.uuid4().hex[:10]}/bedwatch/v1"
            settings = settings_for(db, broker.url, prefix)
            port = free_port()
            settings = settings.replace("http", addr=f"127.0.0.1:{port}")
            migrate(settings)
            with psycopg.connect(db) as conn, conn.transaction():
                text = site_toml(fleet + pressers, http.url("ok", "hook"))
                store_site(conn, parse_site(text))
            component = alerts_component(settings)
            with ServiceThread(Service(settings, components=[component])):
                wait_until(component.ready.is_set, 30)
                sim = _start_fleet(args.beds, broker.url, prefix, Path(tmp))
                try:
                    _wait_for_fleet(sim, args.beds)
                    sent = _press(broker.port, prefix, pressers, args.rate, rng)
                    arrived = _arrivals(http, sent)
                finally:
                    sim.terminate()
                    sim.wait(30)
        finally:
            broker.stop()
    _report(args, sent, arrived)
    return 0


def _start_fleet(beds: int, url: str, prefix: str, tmp: Path) -> subprocess.Popen[bytes]:
    exe = shutil.which("bedwatch") or str(Path(sys.executable).parent / "bedwatch")
    cmd = [exe, "sim", "--beds", str(beds), "--url", url, "--prefix", prefix]
    cmd += ["--duration", "1h", "--truth", str(tmp / "truth.jsonl")]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_for_fleet(sim: subprocess.Popen[bytes], beds: int) -> None:
    """Through the fleet's connect phase (1,000 connections a second, two a bed) and settling."""
    print(f"waiting for {beds} beds to connect and stream ...", file=sys.stderr)
    deadline = time.monotonic() + 2 * beds / 1000 + 10
    while time.monotonic() < deadline:
        if sim.poll() is not None:
            raise RuntimeError("the fleet simulator stopped")
        time.sleep(0.5)


def _press(
    port: int, prefix: str, pressers: Sequence[Devices], rate: float, rng: random.Random
) -> dict[str, float]:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-sos-{uuid.uuid4().hex[:6]}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    sent: dict[str, float] = {}
    try:
        for d in pressers:
            time.sleep(rng.expovariate(rate))
            room = f"模拟 {1 + d.index // 100}-{d.index % 100:02d}"
            payload = json.dumps({"seq": 1, "ts": int(time.time() * 1000), "type": "sos"})
            sent[room] = time.perf_counter()
            client.publish(f"{prefix}/{d.wristband_id}/event", payload, qos=1)
    finally:
        time.sleep(0.5)
        client.loop_stop()
        client.disconnect()
    return sent


def _arrivals(http: HttpReceiver, sent: dict[str, float]) -> dict[str, float]:
    deadline = time.monotonic() + 15
    first: dict[str, float] = {}
    while time.monotonic() < deadline:
        with http.lock:
            pairs = list(
                zip(http.received.get("hook", []), http.arrival_s.get("hook", []), strict=True)
            )
        for message, at in pairs:
            match = ROOM.search(message.get("message", ""))
            if match and "SOS" in message.get("title", "") and match.group(1) in sent:
                first.setdefault(match.group(1), at)
        if len(first) == len(sent):
            break
        time.sleep(0.2)
    return {room: first[room] - t for room, t in sent.items() if room in first}


def _report(args: argparse.Namespace, sent: dict[str, float], delays: dict[str, float]) -> None:
    values = sorted(delays.values())
    print(
        f"SOS press -> json:// receiver, {args.beds} beds streaming, {len(sent)} presses "
        f"at ~{args.rate:g}/s, load average {os.getloadavg()[0]:.2f}"
    )
    if not values:
        print("no SOS arrived")
        return

    def q(p: float) -> float:
        return values[min(len(values) - 1, int(p * len(values)))] * 1000

    print(
        f"arrived {len(values)}/{len(sent)}; ms: min {values[0] * 1000:.1f}  p50 {q(0.5):.1f}  "
        f"p90 {q(0.9):.1f}  p99 {q(0.99):.1f}  max {values[-1] * 1000:.1f}"
    )
    over = sum(v > 1.0 for v in values)
    print(f"over 1 s: {over}; missing: {len(sent) - len(values)}")


if __name__ == "__main__":
    raise SystemExit(main())
