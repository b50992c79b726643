"""Benchmark: an SOS press, as firmware sends it, to the first alert in a receiver's hands.

A private Mosquitto, a fresh database, the service with the alerts component, and a local HTTP
receiver (apprise json://) run here. The delay is from just before the publish to the receiver's
arrival of that resident's first message. Cases (--case, default all):

- streaming: `bedwatch sim` streams --beds simulated beds (pad + band) in a process of its own;
  once the fleet plays, --presses SOS events are published, each from its own wristband (one
  resident each, so each opens an alert), at --rate presses a second.
- first: the first press after a start, the moment the service says it is ready (--starts
  starts, a fresh service each time).
- backlog: the service (`bedwatch run`, a process of its own here) is stopped, --backlog
  telemetry messages (10 samples each) queue for it at the broker, it starts, and 3 s later the
  presses begin while it works through them.
- hung: every resident's care team has --hung channels that never answer (a 10 s limit an
  attempt) before the one that works; the delay is to the one that works.

    uv run python bench/sos_latency.py [--case all] [--beds 1000] [--presses 200] [--rate 5]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
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
    healthy,
    service_env,
    settings_for,
    wait_until,
)

FIRST_SOS = 5001
ROOM = re.compile(r"(?:哪里：|Where: )(\S+ \S+)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument(
        "--case", choices=["all", "streaming", "first", "backlog", "hung"], default="all"
    )
    p.add_argument("--beds", type=int, default=1000)
    p.add_argument("--presses", type=int, default=200)
    p.add_argument("--rate", type=float, default=5.0, help="presses a second")
    p.add_argument("--starts", type=int, default=10, help="first: how many starts")
    p.add_argument("--backlog", type=int, default=100_000, help="backlog: messages queued")
    p.add_argument("--hung", type=int, default=3, help="hung: channels that never answer")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    cases = ["streaming", "first", "backlog", "hung"] if args.case == "all" else [args.case]
    for case in cases:
        _report(case, args, *CASES[case](args))
    return 0


class Ward:
    """A private broker, a fresh database with a site, a receiver; the service on demand."""

    def __init__(
        self, stack: contextlib.ExitStack, residents: Sequence[Devices], hung: int = 0
    ) -> None:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        self.tmp = tmp
        db = stack.enter_context(fresh_database())
        self.http = stack.enter_context(HttpReceiver())
        self.broker = Mosquitto(tmp / "mosquitto")
        self.broker.start()
        stack.callback(self.broker.stop)
        self.prefix = f"bench/{uuid.uuid4().hex[:10]}/bedwatch/v1"
        settings = settings_for(db, self.broker.url, self.prefix)
        self.settings = settings.replace("http", addr=f"127.0.0.1:{free_port()}")
        migrate(self.settings)
        text = site_toml(tuple(residents), self.http.url("ok", "hook"))
        if hung:
            # Care staff whose channels never answer, first on every care team.
            ids = [f"c-hang{i}" for i in range(hung)]
            for i, cid in enumerate(ids):
                text += (
                    f'\n[[contacts]]\nid = "{cid}"\nname = "hung {i}"\nrole = "care_staff"\n'
                    f'channels = ["{self.http.url("hang", cid)}"]\n'
                )
            team = ", ".join(f'"{c}"' for c in ids)
            text = text.replace("care_team = [", f"care_team = [{team}, ")
        with psycopg.connect(db) as conn, conn.transaction():
            store_site(conn, parse_site(text))

    @contextlib.contextmanager
    def process(self) -> Iterator[subprocess.Popen[bytes]]:
        """`bedwatch run` as a process of its own, as deployed: nothing of this harness (the
        presses, the receiver) shares its interpreter. Ready once /health says 200."""
        s = self.settings
        env = service_env(
            BEDWATCH_DATABASE_URL=s.database.url,
            BEDWATCH_DATABASE__CREATE_DATABASE="false",
            BEDWATCH_MQTT_URL=s.mqtt.url,
            BEDWATCH_MQTT__CLIENT_ID=s.mqtt.client_id,  # the same sessions at every start
            BEDWATCH_TOPIC_PREFIX=s.mqtt.topic_prefix,
            BEDWATCH_HTTP_ADDR=s.http.addr,
        )
        command = [sys.executable, "-m", "bedwatch.cli", "run"]
        with (self.tmp / "service.log").open("ab") as log:
            proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log)
        try:
            wait_until(lambda: healthy(s.http.addr) or proc.poll() is not None, 60, 0.1)
            if proc.poll() is not None:
                raise RuntimeError(f"the service exited with {proc.returncode}")
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    @contextlib.contextmanager
    def service(self) -> Iterator[Service]:
        component = alerts_component(self.settings)
        service = Service(self.settings, components=[component])
        with ServiceThread(service):
            wait_until(component.ready.is_set, 30)
            yield service


def _streaming(args: argparse.Namespace) -> tuple[dict[str, float], dict[str, float], str]:
    fleet = residents_of(args.beds)
    pressers = residents_of(args.presses, first=FIRST_SOS)
    with contextlib.ExitStack() as stack:
        ward = Ward(stack, fleet + pressers)
        with ward.service():
            sim = _start_fleet(args.beds, ward.broker.url, ward.prefix, ward.tmp)
            try:
                _wait_for_fleet(sim, args.beds)
                sent = _press(ward.broker.port, ward.prefix, pressers, args.rate, args.seed)
                arrived = _arrivals(ward.http, sent)
            finally:
                sim.terminate()
                sim.wait(30)
    return sent, arrived, f"{args.beds} beds streaming, {len(sent)} presses at ~{args.rate:g}/s"


def _first(args: argparse.Namespace) -> tuple[dict[str, float], dict[str, float], str]:
    pressers = residents_of(args.starts, first=FIRST_SOS)
    sent: dict[str, float] = {}
    arrived: dict[str, float] = {}
    with contextlib.ExitStack() as stack:
        ward = Ward(stack, pressers)
        for presser in pressers:
            with ward.service():
                one = _press(ward.broker.port, ward.prefix, [presser], 1000.0, args.seed)
                sent |= one
                arrived |= _arrivals(ward.http, one)
    return sent, arrived, f"the first press after each of {len(sent)} starts"


def _backlog(args: argparse.Namespace) -> tuple[dict[str, float], dict[str, float], str]:
    fleet = residents_of(20)
    pressers = residents_of(args.presses, first=FIRST_SOS)
    with contextlib.ExitStack() as stack:
        ward = Ward(stack, fleet + pressers)
        with ward.process():
            pass  # the sessions exist at the broker: what comes now is queued for them
        _queue_telemetry(ward.broker.port, ward.prefix, fleet, args.backlog)
        with ward.process():
            time.sleep(3.0)
            before = _stored_messages(ward.settings.database.url)
            sent = _press(ward.broker.port, ward.prefix, pressers, args.rate, args.seed)
            arrived = _arrivals(ward.http, sent)
            after = _stored_messages(ward.settings.database.url)
    what = (
        f"{args.backlog:,} telemetry messages queued at the start ({before:,} of them stored 3 s"
        f" in, {after:,} by the last page), {len(sent)} presses at ~{args.rate:g}/s;"
        " the service a process of its own"
    )
    return sent, arrived, what


def _stored_messages(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM mattress_samples").fetchone()
    return int(row[0]) // 10 if row else 0


def _hung(args: argparse.Namespace) -> tuple[dict[str, float], dict[str, float], str]:
    pressers = residents_of(args.presses, first=FIRST_SOS)
    with contextlib.ExitStack() as stack:
        ward = Ward(stack, pressers, hung=args.hung)
        with ward.service():
            sent = _press(ward.broker.port, ward.prefix, pressers, args.rate, args.seed)
            arrived = _arrivals(ward.http, sent, timeout_s=60)
    return sent, arrived, f"{args.hung} hung channels before the working one, {len(sent)} presses"


CASES = {"streaming": _streaming, "first": _first, "backlog": _backlog, "hung": _hung}


def _queue_telemetry(port: int, prefix: str, fleet: Sequence[Devices], messages: int) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-tm-{uuid.uuid4().hex[:6]}")
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    while not client.is_connected():
        time.sleep(0.01)
    start = int(time.time() * 1000) - messages * 10 // len(fleet) * 1000 - 60_000
    print(f"queueing {messages:,} telemetry messages ...", file=sys.stderr)
    try:
        info = None
        for i in range(messages):
            bed = fleet[i % len(fleet)]
            t0 = start + (i // len(fleet)) * 10_000
            samples = [
                {"ts": t0 + k * 1000, "hr": 62, "rr": 14, "move": 1, "occ": 1, "sq": 90}
                for k in range(10)
            ]
            payload = json.dumps({"seq": i, "samples": samples})
            info = client.publish(f"{prefix}/{bed.mattress_id}/telemetry", payload, qos=1)
            if i % 1000 == 999:
                info.wait_for_publish(60)  # paho's own queue stays small
        if info is not None:
            info.wait_for_publish(120)
    finally:
        client.loop_stop()
        client.disconnect()


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
    port: int, prefix: str, pressers: Sequence[Devices], rate: float, seed: int
) -> dict[str, float]:
    rng = random.Random(seed)
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


def _arrivals(
    http: HttpReceiver, sent: dict[str, float], timeout_s: float = 15
) -> dict[str, float]:
    deadline = time.monotonic() + timeout_s
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
        time.sleep(0.05)
    return {room: first[room] - t for room, t in sent.items() if room in first}


def _report(
    case: str,
    args: argparse.Namespace,
    sent: dict[str, float],
    delays: dict[str, float],
    what: str,
) -> None:
    values = sorted(delays.values())
    print(f"[{case}] SOS press -> json:// receiver, {what}, load {os.getloadavg()[0]:.2f}")
    if not values:
        print(f"[{case}] no SOS arrived")
        return

    def q(p: float) -> float:
        return values[min(len(values) - 1, int(p * len(values)))] * 1000

    print(
        f"[{case}] arrived {len(values)}/{len(sent)}; ms: min {values[0] * 1000:.1f}"
        f"  p50 {q(0.5):.1f}  p90 {q(0.9):.1f}  p99 {q(0.99):.1f}  max {values[-1] * 1000:.1f}"
    )
    over = sum(v > 1.0 for v in values)
    print(f"[{case}] over 1 s: {over}; missing: {len(sent) - len(values)}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
