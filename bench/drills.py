"""Fault drills: the real service under faults, with a ward pressing SOS, checked for its promises.

Each drill runs `bedwatch run` as a process of its own on a private Mosquitto (with persistence)
and a fresh database, with a ward of --residents pads streaming telemetry at QoS 1 and one SOS
press every --press-every seconds, each from another resident's wristband (each opens an alert).
A fault is injected while that goes on; then the traffic stops, the service is made sure to run
(started again after a kill), and the drill checks:

- every press paged to tier 1 (the care worker's working channel), and no contact paged twice
  for one press (reminders aside);
- every telemetry sample the broker acknowledged to a pad stored exactly once;
- the service up at the end.

    uv run python bench/drills.py [--drill all] [--residents 40] [--seconds 20]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.alerts.receivers import HttpReceiver  # noqa: E402
from tests.ingest.fuzz import payloads  # noqa: E402
from tests.support import (  # noqa: E402
    Mosquitto,
    free_port,
    fresh_database,
    query,
    service_env,
    wait_for_port,
    wait_until,
)

ROOM = re.compile(r"(?:哪里：|Where: )病区 (\d+)")
HOSTILE_TARGET = 9999  # the resident whose devices the hostile payloads name: never pressed


@dataclass
class Ward:
    """The broker, the database, the receiver and the service process of one drill."""

    tmp: Path
    db: str
    http: HttpReceiver
    residents: int
    prefix: str = field(default_factory=lambda: f"drill/{uuid.uuid4().hex[:8]}/bedwatch/v1")
    broker: Mosquitto = field(init=False)
    service: subprocess.Popen[bytes] | None = None
    http_port: int = field(default_factory=free_port)
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.broker = Mosquitto(self.tmp / "broker", persistence=True)
        self.broker.start()
        contacts = [
            ("c-staff", "care_staff", self.http.url("ok", "staff")),
            ("f-family", "family", self.http.url("fail", "family")),  # always HTTP 500
            ("c-hung", "care_staff", self.http.url("hang", "hung")),  # never answers
        ]
        lines = []
        for cid, role, url in contacts:
            lines += [f'[[contacts]]\nid = "{cid}"\nname = "{cid}"\nrole = "{role}"']
            lines += [f'channels = ["{url}"]\n']
        for i in [*range(self.residents), HOSTILE_TARGET]:
            lines += [
                f'[[residents]]\nid = "r-{i:04d}"\nname = "r{i}"\nroom = "病区 {i}"',
                f'devices = [{{ id = "mat-{i:04d}", kind = "mattress" }},'
                f' {{ id = "band-{i:04d}", kind = "wristband" }}]',
                'care_team = ["c-hung", "c-staff", "f-family"]\n',
            ]
        site = self.tmp / "site.toml"
        site.write_text("\n".join(lines), encoding="utf-8")
        self._bedwatch("db", "migrate")
        self._bedwatch("registry", "load", str(site))

    def env(self) -> dict[str, str]:
        return service_env(
            BEDWATCH_DATABASE_URL=self.db,
            BEDWATCH_MQTT_URL=self.broker.url,
            BEDWATCH_TOPIC_PREFIX=self.prefix,
            BEDWATCH_MQTT__CLIENT_ID=f"drill-{self.prefix.split('/')[1]}",
            BEDWATCH_HTTP_ADDR=f"127.0.0.1:{self.http_port}",
            BEDWATCH_ALERTS__DELIVERY_TIMEOUT_S="5",
            BEDWATCH_DATABASE__CREATE_DATABASE="false",
        )

    def _bedwatch(self, *args: str) -> None:
        command = [sys.executable, "-m", "bedwatch.cli", *args]
        subprocess.run(command, env=self.env(), check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self.service = subprocess.Popen(
            [sys.executable, "-m", "bedwatch.cli", "run"],
            env=self.env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.http_port, 60)
        # Subscribed: the broker keeps the service's sessions from now on, whatever happens.
        wait_until(self.healthy, 60, 0.1)

    def healthy(self) -> bool:
        url = f"http://127.0.0.1:{self.http_port}/health"
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def ensure_running(self) -> None:
        if self.service is None or self.service.poll() is not None:
            self.start()

    def signal(self, sig: int) -> None:
        assert self.service is not None
        self.service.send_signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            self.service.wait(90)

    def worker_pid(self) -> int:
        assert self.service is not None
        children = Path(f"/proc/{self.service.pid}/task/{self.service.pid}/children")
        pids = [int(p) for p in children.read_text().split()]
        for pid in pids:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"multiprocessing" in cmdline:
                return pid
        raise RuntimeError(f"no detector worker among {pids}")

    def close(self) -> None:
        if self.service is not None and self.service.poll() is None:
            self.service.send_signal(signal.SIGTERM)
            try:
                self.service.wait(60)
            except subprocess.TimeoutExpired:
                self.service.kill()
                self.service.wait(10)
        self.broker.stop()


class Traffic:
    """Pads at QoS 1 (what the broker acknowledged is counted) and SOS presses, on a thread."""

    def __init__(self, ward: Ward, press_every_s: float) -> None:
        self.ward = ward
        self.press_every_s = press_every_s
        self.acked: set[tuple[int, int]] = set()  # (pad, ts) of samples the broker took
        self.pressed: dict[int, float] = {}  # resident -> time of the press (perf_counter)
        self._stop = threading.Event()
        self._sent: list[tuple[paho.MQTTMessageInfo, list[tuple[int, int]]]] = []
        client_id = f"drill-ward-{uuid.uuid4().hex[:6]}"
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False
        )
        self.client.max_inflight_messages_set(200)
        self.client.connect("127.0.0.1", ward.broker.port)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        start_ms = int(time.time() * 1000) - 600_000
        tick, next_press, presser = 0, time.monotonic() + 1.0, 0
        while not self._stop.is_set():
            for pad in range(self.ward.residents):
                samples = [(pad, start_ms + tick * 1000 + k * 100) for k in range(2)]
                body = [
                    {"ts": ts, "hr": 60, "rr": 14, "move": 1, "occ": 1, "sq": 90}
                    for _, ts in samples
                ]
                topic = f"{self.ward.prefix}/mat-{pad:04d}/telemetry"
                info = self.client.publish(topic, json.dumps({"samples": body}), qos=1)
                self._sent.append((info, samples))
            tick += 1
            if time.monotonic() >= next_press and presser < self.ward.residents:
                now = int(time.time() * 1000)
                event = json.dumps({"seq": 1, "ts": now, "type": "sos"})
                self.pressed[presser] = time.perf_counter()
                self.client.publish(f"{self.ward.prefix}/band-{presser:04d}/event", event, qos=1)
                presser += 1
                next_press += self.press_every_s
            time.sleep(0.5)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        deadline = time.monotonic() + 60  # what is in flight goes through a broker restart too
        while not all(_published(i) for i, _ in self._sent) and time.monotonic() < deadline:
            time.sleep(0.1)
        for info, samples in self._sent:
            if _published(info):  # the broker acknowledged it
                self.acked.update(samples)
        self.client.loop_stop()
        self.client.disconnect()


def _published(info: paho.MQTTMessageInfo) -> bool:
    try:
        return info.is_published()
    except RuntimeError:  # not even sent (the broker was away): not acknowledged either
        return False


@dataclass
class Outcome:
    drill: str
    injected: str
    presses: int = 0
    paged: int = 0
    twice: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    samples: int = 0
    lost: int = 0
    duplicated: int = 0
    up: bool = False


def check(drill: str, injected: str, ward: Ward, traffic: Traffic) -> Outcome:
    out = Outcome(drill, injected, presses=len(traffic.pressed))

    def staff_pages() -> list[tuple[dict[str, str], float]]:
        with ward.http.lock:
            return list(
                zip(
                    ward.http.received.get("staff", []),
                    ward.http.arrival_s.get("staff", []),
                    strict=True,
                )
            )

    def first_pages() -> dict[int, float]:
        found: dict[int, float] = {}
        for message, at in staff_pages():
            match = ROOM.search(message.get("message", ""))
            if match and "SOS" in message["title"] and "提醒" not in message["title"]:
                found.setdefault(int(match.group(1)), at)
        return found

    with contextlib.suppress(AssertionError):
        wait_until(lambda: len(first_pages()) >= out.presses, 90, 0.2)
    pages = first_pages()
    out.paged = sum(1 for r in traffic.pressed if r in pages)
    opened = Counter(
        int(m.group(1))
        for message, _ in staff_pages()
        if (m := ROOM.search(message.get("message", "")))
        and "SOS" in message["title"]
        and "提醒" not in message["title"]
    )
    out.twice = sum(1 for r, n in opened.items() if n > 1 and r in traffic.pressed)
    delays = sorted((pages[r] - t) * 1000 for r, t in traffic.pressed.items() if r in pages)
    if delays:
        out.p50_ms = delays[len(delays) // 2]
        out.p99_ms = delays[min(len(delays) - 1, int(0.99 * len(delays)))]
    want = len(traffic.acked)
    with contextlib.suppress(AssertionError):
        wait_until(lambda: count_samples(ward.db)[0] >= want, 90, 0.5)
    rows, distinct, stored = count_samples(ward.db)
    out.samples = want
    out.lost = len(traffic.acked - stored)
    out.duplicated = rows - distinct
    out.up = ward.service is not None and ward.service.poll() is None
    return out


def count_samples(db: str) -> tuple[int, int, set[tuple[int, int]]]:
    rows = query(
        db,
        "SELECT substr(device_id, 5)::int, (extract(epoch FROM time) * 1000)::int8"
        " FROM mattress_samples WHERE source = 'device' AND device_id <> %s",
        f"mat-{HOSTILE_TARGET}",
    )
    keys = {(int(pad), int(ts)) for pad, ts in rows}
    return len(rows), len(keys), keys


# --- the drills: each takes the ward while traffic flows, and says what it did -----------------


def kill_service(ward: Ward, seconds: float, rng: random.Random) -> str:
    kills = 5
    for _ in range(kills):
        time.sleep(rng.uniform(0.5, seconds / kills))
        ward.signal(signal.SIGKILL)
        ward.start()
    return f"SIGKILL of the service x{kills} at random moments, started again each time"


def kill_worker(ward: Ward, seconds: float, rng: random.Random) -> str:
    time.sleep(seconds / 3)
    os.kill(ward.worker_pid(), signal.SIGKILL)
    time.sleep(seconds / 3)
    os.kill(ward.worker_pid(), signal.SIGKILL)
    return "SIGKILL of the detector worker x2"


def stop_worker(ward: Ward, seconds: float, rng: random.Random) -> str:
    time.sleep(seconds / 4)
    pid = ward.worker_pid()
    os.kill(pid, signal.SIGSTOP)
    time.sleep(seconds / 2)
    with contextlib.suppress(ProcessLookupError):  # the watchdog killed and replaced it
        os.kill(pid, signal.SIGCONT)
    return f"SIGSTOP of the detector worker for {seconds / 2:.0f} s"


def sigterm(ward: Ward, seconds: float, rng: random.Random) -> str:
    time.sleep(seconds / 2)
    ward.signal(signal.SIGTERM)
    time.sleep(1.0)
    ward.start()
    return "SIGTERM during the presses, started again 1 s after it exits"


def restart_broker(ward: Ward, seconds: float, rng: random.Random) -> str:
    time.sleep(seconds / 2)
    ward.broker.stop()
    time.sleep(2.0)
    ward.broker.start()
    return "Mosquitto stopped for 2 s and started again (persistence on)"


def hostile(ward: Ward, seconds: float, rng: random.Random) -> str:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="drill-hostile")
    client.connect("127.0.0.1", ward.broker.port)
    client.loop_start()
    sent, started = 0, time.monotonic()
    try:
        for suffix, payload in payloads(
            seed=3, count=int(500 * seconds), now_ms=int(time.time() * 1000)
        ):
            device = suffix.split("/")[0].replace("-0001", f"-{HOSTILE_TARGET}")
            channel = suffix.split("/", 1)[1] if "/" in suffix else "telemetry"
            client.publish(f"{ward.prefix}/{device}/{channel}", payload, qos=0)
            sent += 1
            ahead = sent / 500 - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    finally:
        client.loop_stop()
        client.disconnect()
    return f"{sent:,} generated hostile payloads at 500 msg/s beside the traffic"


def nothing(ward: Ward, seconds: float, rng: random.Random) -> str:
    time.sleep(seconds)
    return "none (baseline)"


DRILLS: dict[str, Callable[[Ward, float, random.Random], str]] = {
    "baseline": nothing,
    "kill-service": kill_service,
    "kill-worker": kill_worker,
    "stop-worker": stop_worker,
    "sigterm": sigterm,
    "broker-restart": restart_broker,
    "hostile": hostile,
}


@contextlib.contextmanager
def ward_for(residents: int) -> Iterator[Ward]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        fresh_database() as db,
        HttpReceiver() as http,
    ):
        ward = Ward(Path(tmp), db, http, residents)
        try:
            ward.start()
            yield ward
        finally:
            ward.close()


def run(name: str, residents: int, seconds: float, press_every_s: float, seed: int) -> Outcome:
    with ward_for(residents) as ward:
        traffic = Traffic(ward, press_every_s)
        traffic.start()
        try:
            injected = DRILLS[name](ward, seconds, random.Random(seed))
        finally:
            traffic.stop()
        ward.ensure_running()
        return check(name, injected, ward, traffic)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--drill", choices=["all", *DRILLS], default="all")
    p.add_argument("--residents", type=int, default=40)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--press-every", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    names = list(DRILLS) if args.drill == "all" else [args.drill]
    print(
        "| drill | injected | presses | paged | lost | paged twice | p50 / p99 press to page |"
        " samples | lost | duplicated | up |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    failed = False
    for name in names:
        o = run(name, args.residents, args.seconds, args.press_every, args.seed)
        failed |= o.paged < o.presses or o.twice > 0 or o.lost > 0 or o.duplicated > 0 or not o.up
        print(
            f"| {o.drill} | {o.injected} | {o.presses} | {o.paged} | {o.presses - o.paged} |"
            f" {o.twice} | {o.p50_ms:.0f} / {o.p99_ms:.0f} ms | {o.samples:,} | {o.lost} |"
            f" {o.duplicated} | {'yes' if o.up else 'NO'} |",
            flush=True,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
