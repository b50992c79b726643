"""Fault drills: the real service under faults, with a ward pressing SOS, checked for its promises.

Each drill runs `bedwatch run` as a process of its own on a private Mosquitto (with persistence)
and a private PostgreSQL server, with a ward of pads streaming telemetry at QoS 1 and one press
every `press_every_s` seconds, each from another resident's wristband and each opening an
alert: SOS and fall by turns. A fault is injected while that goes on; then the traffic stops, the
service is made sure to run (started again after a kill), and the drill checks:

- every press paged to tier 1 (the care worker's working channel), and no contact paged twice
  for one press (reminders aside);
- every telemetry sample the broker acknowledged to a pad stored exactly once;
- the service up at the end;
- what the drill itself promises (the ladder drill: nobody paged past the shortened ladder).

Every care team has a channel that never answers and one that answers HTTP 500, in every drill.
`bench/drills.py` runs the full drills; tests/drills/ a short version of them.
"""

from __future__ import annotations

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
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from bedwatch.migrate import migrate
from bedwatch.settings import Settings
from bedwatch.site import load_site_into_db
from tests.alerts.receivers import HttpReceiver
from tests.ingest.fuzz import payloads
from tests.support import (
    Mosquitto,
    PrivatePostgres,
    free_port,
    healthy,
    private_postgres,
    query,
    service_env,
    wait_for_port,
    wait_until,
)

ROOM = re.compile(r"(?:哪里：|Where: )病区 (\d+)")
FIRST_NOTICE = re.compile(r"SOS|跌倒|Fall")  # the title of a press's page (a reminder says 提醒)
HOSTILE_TARGET = 9999  # the resident whose devices the hostile payloads name: never pressed
# Escalation in seconds for the ladder drill: doctor after 3 s, the emergency contact after 6 s.
LADDER = """
[alerts.ladders.critical]
remind_every_s = 0
steps = [
  { after_s = 0, roles = ["care_staff", "family"] },
  { after_s = 3, roles = ["family_doctor"] },
  { after_s = 6, roles = ["emergency"] },
]
"""
REMIND_S = 30  # the shortest reminder period a site may set
SHORT_LADDER = f"""
[alerts.ladders.critical]
remind_every_s = {REMIND_S}
steps = [{{ after_s = 0, roles = ["care_staff", "family"] }}]
"""


@dataclass(frozen=True)
class Plan:
    """How long and how hard: the full drills in bench/drills.py, a short version in tests."""

    residents: int = 30
    seconds: float = 20.0  # of fault, with traffic flowing
    press_every_s: float = 0.5
    kills: int = 5  # kill-service
    outage_s: float = 60.0  # db-outage
    hostile_rate: int = 500  # msg/s
    seed: int = 1


@dataclass
class Ward:
    """The broker, the database server, the receiver and the service process of one drill."""

    tmp: Path
    postgres: PrivatePostgres
    http: HttpReceiver
    residents: int
    alerts: str = ""  # the site file's [alerts] table to start with
    prefix: str = field(default_factory=lambda: f"drill/{uuid.uuid4().hex[:8]}/bedwatch/v1")
    broker: Mosquitto = field(init=False)
    db: str = field(init=False)
    service: subprocess.Popen[bytes] | None = None
    http_port: int = field(default_factory=free_port)
    problems: list[str] = field(default_factory=list)  # what a drill's own check found

    def __post_init__(self) -> None:
        self.db = self.postgres.url("bedwatch")
        with psycopg.connect(self.postgres.url(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE bedwatch")
        self.broker = Mosquitto(self.tmp / "broker", persistence=True)
        self.broker.start()
        migrate(Settings().replace("database", url=self.db, create_database=False))
        self.load_site(self.alerts)

    def load_site(self, alerts: str = "") -> None:
        """The ward's site file, with `alerts` (an [alerts] table) if given, loaded as an
        operator would; the running service picks it up within seconds."""
        contacts = [
            ("c-staff", "care_staff", self.http.url("ok", "staff")),
            ("f-family", "family", self.http.url("fail", "family")),  # always HTTP 500
            ("c-hung", "care_staff", self.http.url("hang", "hung")),  # never answers
            ("d-doctor", "family_doctor", self.http.url("ok", "doctor")),
            ("e-centre", "emergency", self.http.url("ok", "emergency")),
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
                'care_team = ["c-hung", "c-staff", "f-family", "d-doctor", "e-centre"]\n',
            ]
        site = self.tmp / "site.toml"
        site.write_text(alerts + "\n" + "\n".join(lines), encoding="utf-8")
        load_site_into_db(self.db, site)  # what `bedwatch registry load` does

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

    def start(self) -> None:
        with (self.tmp / "service.log").open("ab") as log:
            self.service = subprocess.Popen(
                [sys.executable, "-m", "bedwatch.cli", "run"],
                env=self.env(),
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        wait_for_port(self.http_port, 60)
        # Subscribed: the broker keeps the service's sessions from now on, whatever happens.
        wait_until(lambda: healthy(f"127.0.0.1:{self.http_port}"), 60, 0.1)

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
        try:
            if self.service is not None and self.service.poll() is None:
                self.service.send_signal(signal.SIGTERM)
                try:
                    self.service.wait(60)
                except subprocess.TimeoutExpired:
                    self.service.kill()
                    self.service.wait(10)
        finally:
            if self.service is not None and self.service.poll() is None:
                self.service.kill()
            self.broker.stop()


class Traffic:
    """Pads at QoS 1 (what the broker acknowledged is counted) and presses, on a thread."""

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
            while time.monotonic() >= next_press and presser < self.ward.residents:
                now = int(time.time() * 1000)
                kind = "sos" if presser % 2 == 0 else "fall"
                event = json.dumps({"seq": 1, "ts": now, "type": kind})
                self.pressed[presser] = time.perf_counter()
                self.client.publish(f"{self.ward.prefix}/band-{presser:04d}/event", event, qos=1)
                presser += 1
                next_press += self.press_every_s
            time.sleep(0.5)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        # What is in flight goes through a broker restart too; what was published while the
        # broker was away (paho says so at once) is not waited for, nor counted as acknowledged.
        taken = [i for i, _ in self._sent if i.rc == paho.MQTT_ERR_SUCCESS]
        deadline = time.monotonic() + 60
        while not all(_published(i) for i in taken) and time.monotonic() < deadline:
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
    problems: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(
            self.paged < self.presses
            or self.twice
            or self.lost
            or self.duplicated
            or not self.up
            or self.problems
        )

    def row(self) -> str:
        return (
            f"| {self.drill} | {self.injected} | {self.presses} | {self.paged} |"
            f" {self.presses - self.paged} | {self.twice} | {self.p50_ms:,.0f} / {self.p99_ms:,.0f}"
            f" ms | {self.samples:,} | {self.lost} | {self.duplicated} |"
            f" {'yes' if self.up else 'NO'} | {'; '.join(self.problems) or '-'} |"
        )


TABLE_HEAD = (
    "| drill | injected | presses | paged | lost | paged twice | p50 / p99 press to page |"
    " samples acked | lost | duplicated | up | other findings |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def pages(ward: Ward, name: str) -> list[tuple[int, str, float]]:
    """(room, title, arrival) of what reached one receiver, in order."""
    with ward.http.lock:
        got = list(
            zip(ward.http.received.get(name, []), ward.http.arrival_s.get(name, []), strict=True)
        )
    out = []
    for message, at in got:
        match = ROOM.search(message.get("message", ""))
        if match:
            out.append((int(match.group(1)), message.get("title", ""), at))
    return out


def first_notices(ward: Ward, name: str) -> list[tuple[int, float]]:
    return [
        (room, at)
        for room, title, at in pages(ward, name)
        if FIRST_NOTICE.search(title) and "提醒" not in title and "reminder" not in title
    ]


def check(drill: str, injected: str, ward: Ward, traffic: Traffic) -> Outcome:
    out = Outcome(drill, injected, presses=len(traffic.pressed), problems=ward.problems)

    def first_pages() -> dict[int, float]:
        found: dict[int, float] = {}
        for room, at in first_notices(ward, "staff"):
            found.setdefault(room, at)
        return found

    with contextlib.suppress(AssertionError):
        wait_until(lambda: len(first_pages()) >= out.presses, 90, 0.2)
    paged = first_pages()
    out.paged = sum(1 for r in traffic.pressed if r in paged)
    opened = Counter(room for room, _ in first_notices(ward, "staff"))
    out.twice = sum(1 for r, n in opened.items() if n > 1 and r in traffic.pressed)
    delays = sorted((paged[r] - t) * 1000 for r, t in traffic.pressed.items() if r in paged)
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


def kill_service(ward: Ward, plan: Plan, rng: random.Random) -> str:
    for _ in range(plan.kills):
        time.sleep(rng.uniform(0.5, plan.seconds / plan.kills))
        ward.signal(signal.SIGKILL)
        ward.start()
    return f"SIGKILL of the service x{plan.kills} at random moments, started again each time"


def kill_worker(ward: Ward, plan: Plan, rng: random.Random) -> str:
    time.sleep(plan.seconds / 3)
    os.kill(ward.worker_pid(), signal.SIGKILL)
    time.sleep(plan.seconds / 3)
    os.kill(ward.worker_pid(), signal.SIGKILL)
    time.sleep(plan.seconds / 3)
    return "SIGKILL of the detector worker x2"


def stop_worker(ward: Ward, plan: Plan, rng: random.Random) -> str:
    time.sleep(plan.seconds / 4)
    pid = ward.worker_pid()
    os.kill(pid, signal.SIGSTOP)
    time.sleep(plan.seconds / 2)
    with contextlib.suppress(ProcessLookupError):  # the watchdog killed and replaced it
        os.kill(pid, signal.SIGCONT)
    time.sleep(plan.seconds / 4)
    return f"SIGSTOP of the detector worker for {plan.seconds / 2:.0f} s"


def sigterm(ward: Ward, plan: Plan, rng: random.Random) -> str:
    time.sleep(plan.seconds / 2)
    ward.signal(signal.SIGTERM)
    time.sleep(1.0)
    ward.start()
    time.sleep(plan.seconds / 2)
    return "SIGTERM during the presses, started again 1 s after it exits"


def restart_broker(ward: Ward, plan: Plan, rng: random.Random) -> str:
    time.sleep(plan.seconds / 2)
    ward.broker.stop()
    time.sleep(2.0)
    ward.broker.start()
    time.sleep(plan.seconds / 2)
    return "Mosquitto stopped for 2 s and started again (persistence on)"


def db_outage(ward: Ward, plan: Plan, rng: random.Random) -> str:
    time.sleep(plan.seconds / 4)
    ward.postgres.stop()  # every connection refused, open ones closed
    time.sleep(plan.outage_s)
    ward.postgres.start()
    time.sleep(plan.seconds * 3 / 4)
    return f"PostgreSQL stopped for {plan.outage_s:.0f} s (connections refused), then started"


def shorten_ladder(ward: Ward, plan: Plan, rng: random.Random) -> str:
    """Alerts climb a ladder of seconds (the ward starts with it); after a while a site reload
    cuts it to its first step. The alerts already on later steps stay on the last one left:
    nobody new is paged past it once the reload is in, reminders (30 s) go to the steps left,
    and the escalation pass goes on for everyone."""
    time.sleep(max(plan.seconds / 2, 8.0))  # the first presses reach the last step (6 s)
    climbed = {room for room, _ in first_notices(ward, "emergency")}
    ward.load_site(SHORT_LADDER)
    reloaded = time.perf_counter()

    def reminded() -> set[int]:
        return {room for room, title, _ in pages(ward, "staff") if "提醒" in title}

    time.sleep(plan.seconds / 2)
    with contextlib.suppress(AssertionError):  # each is reminded 30 s after its last page
        wait_until(lambda: climbed <= reminded(), REMIND_S + 15, 0.5)
    settled = reloaded + 12.0  # both the registry and the routing are read again every 5 s
    late = [
        notice
        for who in ("doctor", "emergency")
        for notice in first_notices(ward, who)
        if notice[1] > settled
    ]
    if not climbed:
        ward.problems.append("no alert reached the emergency step before the reload")
    if late:
        ward.problems.append(f"{len(late)} first pages past the shortened ladder")
    if climbed - reminded():
        ward.problems.append(f"{len(climbed - reminded())} alerts past the ladder not reminded")
    # The pass goes on for everyone: the family's failing channel has its retries sent when due,
    # and no alert failed a step.
    [(overdue, failed)] = query(
        ward.db,
        "SELECT (SELECT count(*) FROM notifications WHERE result = 'pending'"
        "        AND due_at < now() - interval '5 seconds'),"
        "       (SELECT count(*) FROM alert_audit WHERE action = 'step_failed')",
    )
    if overdue or failed:
        ward.problems.append(f"{overdue} notifications overdue, {failed} failed steps")
    return f"ladder of 0/3/6 s cut to one step, {len(climbed)} alerts on its last step"


def hostile(ward: Ward, plan: Plan, rng: random.Random) -> str:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="drill-hostile")
    client.connect("127.0.0.1", ward.broker.port)
    client.loop_start()
    sent, started, rate = 0, time.monotonic(), plan.hostile_rate
    huge = {  # one in a hundred: 5 MB (this broker, unlike the shipped one, lets them through)
        "status": b'{"fw": "' + b"A" * 5_000_000 + b'"}',
        "telemetry": b'{"samples": [' + b"[" * 5_000_000,
        "event": rng.randbytes(5_000_000),
    }
    try:
        for suffix, generated in payloads(
            seed=3, count=int(rate * plan.seconds), now_ms=int(time.time() * 1000)
        ):
            device = suffix.split("/")[0].replace("-0001", f"-{HOSTILE_TARGET}")
            channel = suffix.split("/", 1)[1] if "/" in suffix else "telemetry"
            payload = generated
            if sent % 100 == 99:
                channel = list(huge)[sent // 100 % len(huge)]
                payload = huge[channel]
            client.publish(f"{ward.prefix}/{device}/{channel}", payload, qos=0)
            sent += 1
            ahead = sent / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    finally:
        client.loop_stop()
        client.disconnect()
    return (
        f"{sent:,} generated hostile payloads (NUL, deep nesting, bad UTF-8, 1 % of 5 MB) at"
        f" {rate} msg/s beside the traffic"
    )


def nothing(ward: Ward, plan: Plan, rng: random.Random) -> str:
    time.sleep(plan.seconds)
    return "none (baseline)"


DRILLS: dict[str, Callable[[Ward, Plan, random.Random], str]] = {
    "baseline": nothing,
    "kill-service": kill_service,
    "kill-worker": kill_worker,
    "stop-worker": stop_worker,
    "sigterm": sigterm,
    "broker-restart": restart_broker,
    "db-outage": db_outage,
    "shorten-ladder": shorten_ladder,
    "hostile": hostile,
}


# The [alerts] table a drill's ward starts with.
SITE_ALERTS = {"shorten-ladder": LADDER}


@contextlib.contextmanager
def ward_for(residents: int, alerts: str = "") -> Iterator[Ward]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        private_postgres() as postgres,
        HttpReceiver() as http,
    ):
        ward = Ward(Path(tmp), postgres, http, residents, alerts)
        try:
            ward.start()
            yield ward
        finally:
            ward.close()


def run(name: str, plan: Plan) -> Outcome:
    with ward_for(plan.residents, SITE_ALERTS.get(name, "")) as ward:
        traffic = Traffic(ward, plan.press_every_s)
        traffic.start()
        try:
            injected = DRILLS[name](ward, plan, random.Random(plan.seed))
        finally:
            traffic.stop()
        ward.ensure_running()
        return check(name, injected, ward, traffic)
