"""Cluster drills: BedWatch on a three-node NATS JetStream cluster under faults, with a ward of
pads and bands streaming and pressing SOS, checked for the promises of the scale-out.

One run sets up, on loopback only: three NATS nodes of its own (tests/nats.py), a private
Mosquitto with persistence, a fresh PostgreSQL database, an HTTP receiver as the page channel,
`bedwatch bridge` x2, `bedwatch worker` x3 and `bedwatch engine` as processes. The ward's pads
send 10-sample telemetry and its bands telemetry every third slot (QoS 1, at `rate_per_s`), some
residents' hearts slow to 35 bpm (a bradycardia finding each), and each drill presses SOS on
wristbands around its fault. The drills run one after the other while the ward streams:

1. steady: each partition (so each resident) written by one worker, its position only growing;
2. join: a fourth worker; about a quarter of the partitions move, none written under two epochs;
3. sigterm: a worker stopped; its partitions owned again (measured from the lease log);
4. sigkill: a worker killed; its partitions taken over after the lease (measured);
5. leader-kill and bridge-node-kill: the stream leader's node SIGKILLed, then a bridge with the
   node it is connected to; every message the broker acknowledged to a device in the stream once;
6. rolling-restart and full-restart: every NATS node restarted in turn, then all at once;
   processing goes on from the checkpoints;
7. direct-capture (apart, `direct_capture`): no bridge, a stream capturing NATS's own MQTT
   subjects, devices on NATS's MQTT listener, the leader killed: the same check counts the loss.

Then the ward stops and the run checks, per drill (by when a message was sent): samples
acknowledged to a device but not stored, stored twice (in the stream or the database), SOS pages
(first notices) per press; and for the whole run: every checkpoint under the partition's
current epoch with its position never going back (a log the drill's triggers keep of every
lease change and checkpoint), no late findings, and the findings of the data identical to a
fault-free run's (the same acknowledged messages through the same decoder and detectors, in
this process). `bench/cluster_drills.py` runs them at full size; tests/bedwatch/
test_cluster_drills.py a short version.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import nats
import paho.mqtt.client as paho
import psycopg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy, StorageType, StreamConfig
from paho.mqtt.enums import CallbackAPIVersion

from bedwatch.cluster.bridge import STREAM, TOPIC_HEADER, BridgeSettings, ensure_stream
from bedwatch.cluster.partitions import assignment
from bedwatch.detector_store import load_resident_configs
from bedwatch.migrate import migrate
from bedwatch.site import parse_site
from detectors.findings import Finding
from detectors.runner import DetectorRunner
from ingest.intake import InOrder
from ingest.protocol import Decoder
from ingest.records import EpochMs
from ingest.registry import load_devices, store_site
from tests.alerts.receivers import HttpReceiver
from tests.drills import FIRST_NOTICE, ROOM
from tests.nats import NatsServer, nats_servers
from tests.support import (
    Mosquitto,
    free_port,
    fresh_database,
    query,
    service_env,
    settings_for,
    wait_until,
)

PREFIX = "bedwatch/v1"
SLOT_MS = 10_000  # a pad's message: 10 one-second samples
BAND_EVERY = 3  # a band's telemetry every third slot (every 30 s of device time)
BRADY_FROM_SLOT = 2
# Findings decided on the service's clock or on the emergency lane: not in the fault-free
# reference, which feeds the data alone.
NOT_FROM_DATA = ("sos", "fall", "device_silent", "wristband_removed", "low_battery")


@dataclass(frozen=True)
class ClusterPlan:
    """How big and how long: the full drills in bench/cluster_drills.py, a short version in
    the tests."""

    residents: int = 500
    rate_per_s: float = 300.0  # messages a second from the ward, pads and bands together
    lease_ttl_s: float = 10.0
    checkpoint_every_s: float = 1.0
    settle_s: float = 10.0  # of traffic in each drill besides its fault
    presses: int = 4  # SOS presses in each drill
    down_s: float = 5.0  # a killed node (and bridge) stays away this long
    brady_every: int = 10  # every tenth resident's heart slows to 35 bpm
    control_messages: int = 2_400  # the direct-capture control's device
    control_rate_per_s: float = 150.0
    control_kill_at: int = 600


@dataclass
class Outcome:
    drill: str
    injected: str = ""
    takeover_s: float | None = None  # what it measures: `measured`
    measured: str = ""
    samples: int = 0  # acknowledged to a device while the drill ran
    lost: int = 0
    duplicated: int = 0
    sos: int = 0
    paged: int = 0
    twice: int = 0
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.lost or self.duplicated or self.sos - self.paged or self.twice
                    or self.problems)  # fmt: skip

    def row(self) -> str:
        took = "-" if self.takeover_s is None else f"{self.takeover_s:.2f} s ({self.measured})"
        return (
            f"| {self.drill} | {self.injected} | {took} | {self.samples:,} | {self.lost}"
            f" | {self.duplicated} | {self.sos} / {self.paged} / {self.sos - self.paged}"
            f" / {self.twice} | {'; '.join(self.notes + self.problems) or '-'} |"
        )


TABLE_HEAD = (
    "| drill | injected | take-over | samples acked | lost | duplicated"
    " | SOS pressed / paged / lost / twice | notes |\n|---|---|---|---|---|---|---|---|"
)


# --- the ward ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Sent:
    info: paho.MQTTMessageInfo
    topic: str
    payload: bytes
    drill: str
    samples: list[tuple[str, int]]  # (device, device time) of each sample in it
    sent_ms: int


class Ward:
    """The ward's devices on one QoS 1 session with a persistent session, on a thread of its own:
    pads every slot, bands every third, at `rate_per_s`; SOS presses when asked."""

    def __init__(self, port: int, plan: ClusterPlan, *, topic_prefix: str = PREFIX) -> None:
        self.plan = plan
        self.prefix = topic_prefix
        self.drill = "start"
        self.t0_ms = (int(time.time()) - 3600) * 1000  # device time: an hour behind, as if queued
        self.sent: list[Sent] = []
        self.pressed: dict[int, str] = {}  # resident -> drill
        self.slot = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id="drill-ward", clean_session=False
        )
        self.client.max_inflight_messages_set(500)
        self.client.max_queued_messages_set(0)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._run, name="ward", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def brady(self, resident: int) -> bool:
        return resident % self.plan.brady_every == 3

    def _run(self) -> None:
        began, n = time.monotonic(), 0
        while not self._stop.is_set():
            for i in range(self.plan.residents):
                self._publish(*self._pad(i, self.slot))
                n += 1
                if self.slot % BAND_EVERY == 0:
                    self._publish(*self._band(i, self.slot))
                    n += 1
                ahead = n / self.plan.rate_per_s - (time.monotonic() - began)
                if ahead > 0:
                    time.sleep(ahead)
                if self._stop.is_set():
                    return
            self.slot += 1

    def _pad(self, i: int, slot: int) -> tuple[str, bytes, list[tuple[str, int]]]:
        rate = 35 if self.brady(i) and slot >= BRADY_FROM_SLOT else 60 + i % 7
        start = self.t0_ms + slot * SLOT_MS
        samples = [
            {"ts": start + k * 1000, "hr": rate, "rr": 14, "move": 0, "occ": 1, "sq": 90}
            for k in range(10)
        ]
        device = f"mat-{i:04d}"
        body = json.dumps({"seq": slot, "samples": samples}).encode()
        return device + "/telemetry", body, [(device, int(s["ts"])) for s in samples]

    def _band(self, i: int, slot: int) -> tuple[str, bytes, list[tuple[str, int]]]:
        device, ts = f"band-{i:04d}", self.t0_ms + slot * SLOT_MS + 500
        body = {"seq": slot, "ts": ts, "hr": 70, "spo2": 97, "bat": 80, "worn": 1, "steps": slot}
        return device + "/telemetry", json.dumps(body).encode(), [(device, ts)]

    def _publish(self, where: str, payload: bytes, samples: list[tuple[str, int]]) -> None:
        topic = f"{self.prefix}/{where}"
        with self._lock:  # the list in publish order
            info = self.client.publish(topic, payload, qos=1)
            self.sent.append(
                Sent(info, topic, payload, self.drill, samples, int(time.time() * 1000))
            )

    def press(self, count: int) -> None:
        """SOS on the wristbands of `count` residents not pressed before."""
        for _ in range(count):
            i = len(self.pressed)
            ts = self.t0_ms + self.slot * SLOT_MS + 700
            body = json.dumps({"seq": 100_000 + i, "ts": ts, "type": "sos"}).encode()
            self._publish(f"band-{i:04d}/event", body, [])
            self.pressed[i] = self.drill

    def stop(self) -> list[Sent]:
        """No more; what is in flight is waited for. The messages the broker acknowledged."""
        self._stop.set()
        self._thread.join(30)
        deadline = time.monotonic() + 120
        while not all(_published(s.info) for s in self.sent) and time.monotonic() < deadline:
            time.sleep(0.2)
        self.client.disconnect()
        self.client.loop_stop()
        return [s for s in self.sent if _published(s.info)]


def _published(info: paho.MQTTMessageInfo) -> bool:
    try:
        return info.is_published()
    except RuntimeError:  # never sent: not acknowledged either
        return False


def site(plan: ClusterPlan, hook: str) -> str:
    staff = '[[contacts]]\nid = "c-staff"\nname = "Staff"\nrole = "care_staff"\n'
    staff += f'channels = ["{hook}"]\n'
    return staff + "\n".join(
        f'[[residents]]\nid = "r-{i:04d}"\nname = "r{i}"\nroom = "病区 {i}"\n'
        f'care_team = ["c-staff"]\n'
        f'devices = [{{ id = "mat-{i:04d}", kind = "mattress" }},'
        f' {{ id = "band-{i:04d}", kind = "wristband" }}]\n'
        for i in range(plan.residents)
    )


# Every change of a partition's lease and every checkpoint, as the database saw them, for the
# checks (the drill's own: not part of BedWatch's schema).
LEASE_LOG = """
CREATE TABLE drill_lease_log (
    id bigserial PRIMARY KEY, partition integer NOT NULL, owner text, old_owner text,
    epoch bigint NOT NULL, old_epoch bigint NOT NULL, position bigint NOT NULL,
    old_position bigint NOT NULL, events_at bigint NOT NULL, old_events_at bigint NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE FUNCTION drill_log_lease() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.epoch <> OLD.epoch OR NEW.owner IS DISTINCT FROM OLD.owner
       OR NEW.updated_at <> OLD.updated_at THEN
        INSERT INTO drill_lease_log (partition, owner, old_owner, epoch, old_epoch, position,
                                     old_position, events_at, old_events_at)
        VALUES (NEW.partition, NEW.owner, OLD.owner, NEW.epoch, OLD.epoch, NEW.position,
                OLD.position, NEW.events_at, OLD.events_at);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER drill_log_lease AFTER UPDATE ON partition_leases
    FOR EACH ROW EXECUTE FUNCTION drill_log_lease();
"""


# --- the cluster ------------------------------------------------------------------------------


class Cluster:
    """NATS nodes, the broker, the database, the receiver and the BedWatch roles of one run."""

    def __init__(
        self, plan: ClusterPlan, folder: Path, db: str, nodes: list[NatsServer], http: HttpReceiver
    ) -> None:
        self.plan = plan
        self.folder = folder
        self.db = db
        self.nodes = nodes
        self.http = http
        self.broker = Mosquitto(folder / "mqtt", persistence=True)
        self.roles: dict[str, subprocess.Popen[bytes]] = {}
        self.http_port = free_port()
        migrate(settings_for(db, "mqtt://127.0.0.1:1", PREFIX))
        with psycopg.connect(db) as conn, conn.transaction():
            store_site(conn, parse_site(site(plan, http.url("ok", "staff"))))
            conn.execute(LEASE_LOG)
        self.broker.start()

    @property
    def nats_url(self) -> str:
        return ",".join(n.url for n in self.nodes)

    def env(self, **extra: str) -> dict[str, str]:
        settings = {
            "BEDWATCH_DATABASE_URL": self.db,
            "BEDWATCH_DATABASE__CREATE_DATABASE": "false",
            "BEDWATCH_MQTT_URL": self.broker.url,
            "BEDWATCH_NATS_URL": self.nats_url,
            "BEDWATCH_CLUSTER__REPLICAS": "3",
            "BEDWATCH_CLUSTER__LEASE_TTL_S": str(self.plan.lease_ttl_s),
            "BEDWATCH_CLUSTER__CHECKPOINT_EVERY_S": str(self.plan.checkpoint_every_s),
            "BEDWATCH_MQTT__CLIENT_ID": "bw-drill",
            "BEDWATCH_HTTP_ADDR": f"127.0.0.1:{self.http_port}",
            "BEDWATCH_ALERTS__DELIVERY_TIMEOUT_S": "5",
        }
        return service_env(**(settings | extra))

    def start(self, name: str, *args: str, **env: str) -> None:
        with (self.folder / f"{name}.log").open("ab") as log:
            self.roles[name] = subprocess.Popen(
                [sys.executable, "-m", "bedwatch.cli", "-v", *args],
                env=self.env(**env), stdout=log, stderr=log,
            )  # fmt: skip

    def start_bridge(self, name: str) -> None:
        log = self.folder / f"{name}.log"
        before = log.read_text(errors="replace").count("MQTT connected") if log.exists() else 0
        self.start(name, "bridge", BEDWATCH_MQTT__CLIENT_ID=f"bw-drill-{name}")
        # Both of its sessions subscribed: the broker keeps the ward's messages for it from now.
        wait_until(
            lambda: log.read_text(errors="replace").count("MQTT connected") >= before + 2, 90, 0.2
        )

    def start_worker(self, name: str) -> None:
        self.start(name, "worker", "--id", name)

    def signal(self, name: str, sig: int) -> None:
        process = self.roles[name]
        process.send_signal(sig)
        process.wait(60)

    def workers(self) -> list[str]:
        return sorted(n for n, p in self.roles.items() if n.startswith("w") and p.poll() is None)

    def owners(self) -> dict[int, str]:
        """Each partition's owner whose lease runs now."""
        rows = query(
            self.db,
            "SELECT partition, owner FROM partition_leases"
            " WHERE owner IS NOT NULL AND expires_at > now()",
        )
        return {int(p): str(o) for p, o in rows}

    def balanced(self, timeout_s: float = 90.0) -> dict[int, str]:
        """Once every partition is owned as rendezvous hashing over the live workers says."""
        want = assignment(self.workers())
        wait_until(lambda: self.owners() == want, timeout_s, 0.1)
        return want

    def db_now(self) -> datetime:
        [(now,)] = query(self.db, "SELECT clock_timestamp()")
        return now  # type: ignore[no-any-return]

    def taken_over(self, partitions: list[int], victim: str, since: datetime) -> float:
        """Seconds from `since` until the last of these partitions was acquired by another
        worker (the lease log's time of its acquisition)."""
        rows = query(
            self.db,
            "SELECT partition, min(at) FROM drill_lease_log WHERE at >= %s AND epoch > old_epoch"
            " AND owner <> %s AND partition = ANY(%s) GROUP BY 1",
            since, victim, partitions,
        )  # fmt: skip
        assert len(rows) == len(partitions), "not every partition was taken over"
        return float(max((at - since).total_seconds() for _, at in rows))

    def node_of(self, connection: str) -> NatsServer:
        """The NATS node a role's connection is on (its monitoring's connections)."""
        for node in self.nodes:
            if not node.running:
                continue
            names = {c.get("name") for c in node.monitor("connz?limit=1000").get("connections", [])}
            if connection in names:
                return node
        raise LookupError(f"no node has a connection named {connection}")

    def close(self) -> None:
        try:
            end(list(self.roles.values()))
        finally:
            self.broker.stop()


def end(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to those still running, SIGKILL for any that has not ended within 30 s."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- NATS -------------------------------------------------------------------------------------


def on_nats(
    urls: list[str], step: Callable[[JetStreamContext], Any], timeout_s: float = 120
) -> Any:
    """Run `step(js)` (a coroutine function) on a connection of its own, for the drill's looks."""

    async def main() -> Any:
        nc = await nats.connect(urls, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
        try:
            async with asyncio.timeout(timeout_s):
                return await step(nc.jetstream(timeout=5))
        finally:
            with contextlib.suppress(Exception):
                await nc.close()

    return asyncio.run(main())


async def stream_ready(js: JetStreamContext, stream: str, timeout_s: float = 60.0) -> str:
    """Once the stream has a leader and both of its followers are current: the leader's name."""
    async with asyncio.timeout(timeout_s):
        while True:
            with contextlib.suppress(Exception):
                info = await js.stream_info(stream)
                c = info.cluster
                replicas = (c.replicas or []) if c is not None else []
                if (
                    c is not None
                    and c.leader
                    and len(replicas) == 2
                    and all(r.current for r in replicas)
                ):
                    return str(c.leader)
            await asyncio.sleep(0.2)


Message = tuple[str, bytes]  # an MQTT topic and payload


def bridged_topic(msg: Any) -> str:
    return str((msg.headers or {}).get(TOPIC_HEADER, ""))


def captured_topic(msg: Any) -> str:
    return str(msg.subject).replace(".", "/")


async def stream_messages(
    js: JetStreamContext, stream: str, subject: str, topic_of: Callable[[Any], str]
) -> list[Message]:
    """Every message in the stream as (MQTT topic, payload), in order (an ordered consumer up to
    the last sequence)."""
    info = await js.stream_info(stream)
    last, got = info.state.last_seq, []
    if info.state.messages == 0:
        return []
    done = asyncio.Event()

    async def on_message(msg: Any) -> None:
        got.append((topic_of(msg), msg.data))
        if msg.metadata.sequence.stream >= last:
            done.set()

    sub = await js.subscribe(
        subject, ordered_consumer=True, cb=on_message, deliver_policy=DeliverPolicy.ALL
    )
    try:
        await done.wait()
    finally:
        await sub.unsubscribe()
    return got


def delivery(
    acked: Iterable[Message], stored: Iterable[Message]
) -> tuple[set[Message], set[Message]]:
    """The check of drills 5 and 7: of the messages acknowledged to a device, those the stream
    does not have (lost), and those it has more than once (duplicated)."""
    counts = Counter(stored)
    wanted = set(acked)
    lost = {p for p in wanted if p not in counts}
    twice = {p for p, n in counts.items() if n > 1}
    return lost, twice


# --- the drills -------------------------------------------------------------------------------


Drill = Callable[[Cluster, Ward, Outcome], None]


def steady(c: Cluster, ward: Ward, out: Outcome) -> None:
    started = c.db_now()
    ward.press(c.plan.presses)
    time.sleep(c.plan.settle_s)
    # Every partition written in the drill by one worker only: its rendezvous owner.
    rows = query(
        c.db,
        "SELECT partition, array_agg(DISTINCT owner) FROM drill_lease_log WHERE at >= %s"
        " AND epoch = old_epoch AND owner IS NOT NULL GROUP BY 1",
        started,
    )
    want = assignment(c.workers())
    shared = [p for p, writers in rows if len(writers) != 1 or writers[0] != want[p]]
    if shared:
        out.problems.append(f"{len(shared)} partitions written by another worker than theirs")
    out.injected = "none: 3 workers, 2 bridges"
    out.notes.append(f"{len(rows)} partitions checkpointed, each by its one owner")


def join(c: Cluster, ward: Ward, out: Outcome) -> None:
    time.sleep(c.plan.settle_s / 2)
    before = c.owners()
    ward.press(c.plan.presses // 2)
    c.start_worker("w4")
    after = c.balanced()
    # From the newcomer's join (its start-up is not the cluster's doing) to its last partition.
    [(took,)] = query(
        c.db,
        "SELECT extract(epoch FROM (SELECT max(at) FROM drill_lease_log WHERE owner = 'w4'"
        " AND epoch > old_epoch) - started_at) FROM cluster_workers WHERE id = 'w4'",
    )
    out.takeover_s, out.measured = float(took), "join to its last partition"
    ward.press(c.plan.presses - c.plan.presses // 2)
    moved = sum(1 for p in after if before.get(p) != after[p])
    out.injected = "a 4th worker started"
    to_new = sum(1 for o in after.values() if o == "w4")
    out.notes.append(f"{moved} of 256 partitions moved, {to_new} of them to w4")
    if not 40 <= moved <= 90:
        out.problems.append(f"{moved} partitions moved, not about a quarter")
    time.sleep(c.plan.settle_s / 2)


def _stop_worker(c: Cluster, ward: Ward, out: Outcome, name: str, sig: int) -> None:
    time.sleep(c.plan.settle_s / 2)
    ward.press(c.plan.presses // 2)
    held = [p for p, o in c.owners().items() if o == name]
    since = c.db_now()
    c.signal(name, sig)
    ward.press(c.plan.presses - c.plan.presses // 2)
    c.balanced(c.plan.lease_ttl_s * 3 + 30)
    out.takeover_s = c.taken_over(held, name, since)
    out.notes.append(f"{len(held)} partitions")
    time.sleep(c.plan.settle_s / 2)


def sigterm(c: Cluster, ward: Ward, out: Outcome) -> None:
    _stop_worker(c, ward, out, "w2", signal.SIGTERM)
    out.injected, out.measured = "SIGTERM of a worker (w2)", "signal to last partition owned"
    if out.takeover_s is not None and out.takeover_s > 2.0:
        out.problems.append(f"hand-off took {out.takeover_s:.2f} s, over 2 s")


def sigkill(c: Cluster, ward: Ward, out: Outcome) -> None:
    _stop_worker(c, ward, out, "w3", signal.SIGKILL)
    ttl = c.plan.lease_ttl_s
    out.injected = f"SIGKILL of a worker (w3), lease {ttl:g} s; a worker (w5) started after"
    out.measured = "kill to last partition owned"
    c.start_worker("w5")
    c.balanced()


def _kill_node(c: Cluster, node: NatsServer, *also: str) -> None:
    node.stop(kill=True)
    for name in also:
        c.signal(name, signal.SIGKILL)
    time.sleep(c.plan.down_s)
    node.start()
    urls = [n.url for n in c.nodes]
    on_nats(urls, lambda js: stream_ready(js, STREAM))


def leader_kill(c: Cluster, ward: Ward, out: Outcome) -> None:
    time.sleep(c.plan.settle_s / 2)
    urls = [n.url for n in c.nodes]
    name = on_nats(urls, lambda js: stream_ready(js, STREAM))
    ward.press(c.plan.presses // 2)
    began = time.monotonic()
    node = next(n for n in c.nodes if n.name == name)
    node.stop(kill=True)
    new = on_nats([n.url for n in c.nodes if n.running], lambda js: _new_leader(js, name))
    out.takeover_s, out.measured = time.monotonic() - began, "kill to a new stream leader"
    ward.press(c.plan.presses - c.plan.presses // 2)
    time.sleep(c.plan.down_s)
    node.start()
    on_nats(urls, lambda js: stream_ready(js, STREAM))
    out.injected = f"SIGKILL of the stream leader's node ({name}; {new} took over), back after"
    out.injected += f" {c.plan.down_s:g} s"
    time.sleep(c.plan.settle_s / 2)


async def _new_leader(js: JetStreamContext, old: str) -> str:
    while True:
        with contextlib.suppress(Exception):
            info = await js.stream_info(STREAM)
            if info.cluster is not None and info.cluster.leader not in (None, old):
                return str(info.cluster.leader)
        await asyncio.sleep(0.05)


def bridge_node_kill(c: Cluster, ward: Ward, out: Outcome) -> None:
    time.sleep(c.plan.settle_s / 2)
    node = c.node_of("bw-drill-b1-bridge")
    ward.press(c.plan.presses // 2)
    _kill_node(c, node, "b1")
    ward.press(c.plan.presses - c.plan.presses // 2)
    c.start_bridge("b1")
    out.injected = f"SIGKILL of bridge b1 and its NATS node ({node.name}), both back after"
    out.injected += f" {c.plan.down_s:g} s"
    time.sleep(c.plan.settle_s / 2)


def rolling_restart(c: Cluster, ward: Ward, out: Outcome) -> None:
    urls = [n.url for n in c.nodes]
    began = time.monotonic()
    for i, node in enumerate(c.nodes):
        if i < c.plan.presses:
            ward.press(1)
        node.stop()
        node.start()
        on_nats(urls, lambda js: stream_ready(js, STREAM))
    out.takeover_s, out.measured = time.monotonic() - began, "all three restarted in turn"
    ward.press(max(0, c.plan.presses - len(c.nodes)))
    out.injected = "every NATS node stopped (SIGTERM) and started in turn"
    time.sleep(c.plan.settle_s / 2)


def full_restart(c: Cluster, ward: Ward, out: Outcome) -> None:
    time.sleep(c.plan.settle_s / 2)
    ward.press(c.plan.presses // 2)
    for node in c.nodes:
        node.stop()
    stopped = c.db_now()
    time.sleep(c.plan.down_s)
    ward.press(c.plan.presses - c.plan.presses // 2)
    for node in c.nodes:
        node.start(healthy=False)
    for node in c.nodes:
        node.wait_healthy(60)
    back = c.db_now()
    on_nats([n.url for n in c.nodes], lambda js: stream_ready(js, STREAM))
    # Resumed: a checkpoint moved a partition's position on after the cluster came back.
    resumed: datetime = wait_until(lambda: _progress_since(c.db, back), 90, 0.2)
    out.takeover_s = (resumed - back).total_seconds()
    out.measured = "cluster up to the first checkpoint moving on"
    out.injected = f"all three NATS nodes stopped for {c.plan.down_s:g} s and started"
    out.notes.append(f"NATS away {(back - stopped).total_seconds():.1f} s")
    time.sleep(c.plan.settle_s / 2)


def _progress_since(db: str, since: datetime) -> datetime | None:
    [(at,)] = query(
        db,
        "SELECT min(at) FROM drill_lease_log WHERE at > %s AND epoch = old_epoch"
        " AND position > old_position",
        since,
    )
    return at  # type: ignore[no-any-return]


DRILLS: dict[str, Drill] = {
    "steady": steady,
    "join": join,
    "sigterm": sigterm,
    "sigkill": sigkill,
    "leader-kill": leader_kill,
    "bridge-node-kill": bridge_node_kill,
    "rolling-restart": rolling_restart,
    "full-restart": full_restart,
}


# --- a run ------------------------------------------------------------------------------------


@dataclass
class Report:
    outcomes: list[Outcome]
    findings_expected: int = 0
    findings_missing: int = 0
    findings_extra: int = 0
    late_findings: int = 0
    stale_writes: int = 0  # checkpoints under an epoch other than the partition's latest
    position_back: int = 0  # checkpoints that moved a position back
    fenced: int = 0
    messages: int = 0

    @property
    def failed(self) -> bool:
        return bool(
            any(o.failed for o in self.outcomes) or self.findings_missing or self.findings_extra
            or self.late_findings or self.stale_writes or self.position_back
        )  # fmt: skip

    def summary(self) -> str:
        return (
            f"findings of the data: {self.findings_expected} as in a run without faults,"
            f" {self.findings_missing} missing, {self.findings_extra} more, {self.late_findings}"
            f" late; checkpoints under a superseded epoch: {self.stale_writes}; positions moved"
            f" back: {self.position_back}; writes fenced: {self.fenced}; {self.messages:,}"
            " messages acknowledged to devices"
        )


@contextlib.contextmanager
def cluster(plan: ClusterPlan, folder: Path) -> Iterator[Cluster]:
    with (
        HttpReceiver() as http,
        fresh_database() as db,
        nats_servers(folder / "nats", 3) as nodes,
    ):
        c = Cluster(plan, folder, db, nodes, http)
        try:
            shared = BridgeSettings(nats_url=c.nats_url, replicas=3)
            on_nats([n.url for n in nodes], lambda js: _stream_made(js, shared))
            for name in ("b1", "b2"):
                c.start_bridge(name)
            for name in ("w1", "w2", "w3"):
                c.start_worker(name)
            c.start("engine", "engine")
            c.balanced()
            yield c
        finally:
            c.close()


async def _stream_made(js: JetStreamContext, shared: BridgeSettings) -> None:
    async with asyncio.timeout(60):
        while True:
            try:
                await ensure_stream(js, shared)
                break
            except Exception:  # no meta leader yet
                await asyncio.sleep(0.3)
    await stream_ready(js, STREAM)


def run(plan: ClusterPlan, folder: Path, names: Iterable[str] = DRILLS) -> Report:
    with cluster(plan, folder) as c:
        names = list(names)
        ward = Ward(c.broker.port, plan)
        ward.drill = names[0]
        ward.start()
        outcomes = []
        try:
            for name in names:
                ward.drill = name
                out = Outcome(name)
                try:
                    DRILLS[name](c, ward, out)
                except Exception as exc:
                    out.problems.append(f"drill failed: {exc!r}")
                outcomes.append(out)
        finally:
            acked = ward.stop()
        return check(c, ward, acked, outcomes)


def check(c: Cluster, ward: Ward, acked: list[Sent], outcomes: list[Outcome]) -> Report:
    by_name = {o.drill: o for o in outcomes}
    report = Report(outcomes, messages=len(acked))
    samples = {key: s.drill for s in acked for key in s.samples}
    with contextlib.suppress(AssertionError):
        wait_until(lambda: len(samples.keys() - stored_samples(c.db)) == 0, 180, 1.0)
    missing = samples.keys() - stored_samples(c.db)
    for drill in samples.values():
        by_name[drill].samples += 1
    for key in missing:
        by_name[samples[key]].lost += 1
    # In the stream: every acknowledged message once.
    drill_of = {(s.topic, s.payload): s.drill for s in acked}
    stored = on_nats(
        [n.url for n in c.nodes], lambda js: stream_messages(js, STREAM, "bw.>", bridged_topic)
    )
    _lost, twice = delivery(drill_of, stored)
    for message in twice:
        if message in drill_of:
            by_name[drill_of[message]].duplicated += 1
    pressed = dict(ward.pressed)
    with contextlib.suppress(AssertionError):
        wait_until(lambda: pressed.keys() <= first_pages(c.http).keys(), 90, 0.5)
    pages = first_pages(c.http)
    for i, drill in pressed.items():
        out = by_name[drill]
        out.sos += 1
        out.paged += i in pages
        out.twice += pages.get(i, 0) > 1
    leases_checked(c.db, report)
    findings_checked(c, ward, acked, report)
    return report


def stored_samples(db: str) -> set[tuple[str, int]]:
    rows = query(
        db,
        "SELECT device_id, (extract(epoch FROM time) * 1000)::int8 FROM mattress_samples"
        " WHERE source = 'device' UNION ALL"
        " SELECT device_id, (extract(epoch FROM time) * 1000)::int8 FROM wristband_samples",
    )
    return {(str(d), int(t)) for d, t in rows}


def first_pages(http: HttpReceiver) -> dict[int, int]:
    """Resident -> first notices paged for them (reminders aside)."""
    found: Counter[int] = Counter()
    for message in http.got("staff"):
        match = ROOM.search(message.get("message", ""))
        title = message.get("title", "")
        if match and FIRST_NOTICE.search(title) and "提醒" not in title and "eminder" not in title:
            found[int(match.group(1))] += 1
    return dict(found)


def leases_checked(db: str, report: Report) -> None:
    """From the lease log: each checkpoint under the partition's latest epoch, positions only
    moving on."""
    rows = query(
        db,
        "SELECT partition, owner, old_owner, epoch, old_epoch, position, old_position,"
        " events_at, old_events_at FROM drill_lease_log ORDER BY id",
    )
    latest: dict[int, int] = defaultdict(int)
    for part, owner, _old_owner, epoch, old_epoch, pos, old_pos, ev, old_ev in rows:
        if epoch != old_epoch:
            latest[part] = max(latest[part], epoch)
            continue
        if owner is None:
            continue  # a release
        report.stale_writes += epoch != latest[part] and latest[part] != 0
        report.position_back += pos < old_pos or ev < old_ev
    [(report.fenced,)] = query(db, "SELECT count(*) FROM partition_fenced")


def findings_checked(c: Cluster, ward: Ward, acked: list[Sent], report: Report) -> None:
    """The findings of the data against a run without faults: the same acknowledged messages,
    in the order the ward sent them, through the decoder and the detectors in this process."""
    want = reference_findings(c.db, acked)
    report.findings_expected = len(want)

    def got() -> set[tuple[str, str, int, int, bool]]:
        rows = query(
            c.db,
            "SELECT resident_id, kind, (extract(epoch FROM started_at) * 1000)::int8,"
            " (extract(epoch FROM at) * 1000)::int8, cleared FROM findings"
            " WHERE kind <> ALL(%s)",
            list(NOT_FROM_DATA),
        )
        return {(str(r), str(k), int(s), int(a), bool(cl)) for r, k, s, a, cl in rows}

    with contextlib.suppress(AssertionError):
        wait_until(lambda: want <= got(), 60, 0.5)
    found = got()
    report.findings_missing = len(want - found)
    report.findings_extra = len(found - want)
    [(report.late_findings,)] = query(c.db, "SELECT count(*) FROM findings WHERE late")


def reference_findings(db: str, acked: list[Sent]) -> set[tuple[str, str, int, int, bool]]:
    with psycopg.connect(db) as conn:
        devices, configs = load_devices(conn), load_resident_configs(conn)
    found: list[Finding] = []
    runner = DetectorRunner(residents=configs, on_finding=found.append, on_derived=lambda _: None)
    in_order, decoder = InOrder(runner), Decoder(devices, prefix=PREFIX)
    for s in acked:
        in_order.feed(decoder.decode(s.topic, s.payload, EpochMs(s.sent_ms)))
    return {
        (f.resident_id, f.kind.value, f.started_ms, f.at_ms, f.cleared)
        for f in found
        if f.kind.value not in NOT_FROM_DATA
    }


# --- 7: the negative control ------------------------------------------------------------------

CAPTURE = "MQTT_CAPTURE"


def direct_capture(plan: ClusterPlan, folder: Path) -> Outcome:
    """No bridge: a stream capturing NATS's MQTT subjects, a device on a node's MQTT listener
    (not the stream leader's), the leader SIGKILLed after `control_kill_at` acknowledgements.
    The same check as drill 5: acknowledged messages missing from the stream, or stored twice."""
    out = Outcome("direct-capture")
    with nats_servers(folder / "control", 3, mqtt=True) as nodes:
        urls = [n.url for n in nodes]
        leader = on_nats(urls, _capture_made)
        device_node = next(n for n in nodes if n.name != leader)
        victim = next(n for n in nodes if n.name == leader)
        killed = threading.Event()
        # Back after down_s, as in drill 5 (started apart: the device keeps publishing).
        back = threading.Timer(plan.down_s, lambda: victim.start(healthy=False))

        def on_acked(n: int) -> None:
            if n >= plan.control_kill_at and not killed.is_set():
                killed.set()
                victim.stop(kill=True)
                back.start()

        assert device_node.mqtt_port is not None
        try:
            acked = publish_steadily(device_node.mqtt_port, plan, on_acked)
        finally:
            if killed.is_set():
                back.join()  # started (a node back from a kill may report unhealthy for long)
        stored = on_nats(urls, lambda js: _settled(js, CAPTURE, "bedwatch.v1.>"))
        lost, twice = delivery(acked, stored)
    out.injected = f"SIGKILL of the stream leader's node ({leader}) after {plan.control_kill_at}"
    out.injected += f" acknowledgements, back after {plan.down_s:g} s; a device on NATS's MQTT"
    out.injected += " listener, no bridge"
    out.samples, out.lost, out.duplicated = len(acked), len(lost), len(twice)
    out.notes.append(
        f"{len(acked)} messages acknowledged by NATS, {len(set(stored))} in the stream"
    )
    return out


async def _capture_made(js: JetStreamContext) -> str:
    config = StreamConfig(
        name=CAPTURE, subjects=["bedwatch.v1.>"], storage=StorageType.FILE, num_replicas=3
    )
    async with asyncio.timeout(60):
        while True:
            try:
                await js.add_stream(config)
                break
            except Exception:  # no meta leader yet
                await asyncio.sleep(0.3)
    return await stream_ready(js, CAPTURE)


async def _settled(js: JetStreamContext, stream: str, subject: str) -> list[Message]:
    """The stream's messages once it has a leader and its count stopped growing for 3 s."""
    last, since = -1, time.monotonic()
    while time.monotonic() - since < 3.0:
        with contextlib.suppress(Exception):
            count = (await js.stream_info(stream)).state.messages
            if count != last:
                last, since = count, time.monotonic()
        await asyncio.sleep(0.2)
    return await stream_messages(js, stream, subject, captured_topic)


def publish_steadily(
    port: int, plan: ClusterPlan, on_acked: Callable[[int], None]
) -> list[Message]:
    """As a device: QoS 1 at a steady rate until `control_messages` were acknowledged (or 60 s);
    `on_acked(n)` after each. The payloads acknowledged (one not acknowledged would be sent again
    by the device, so it is not counted)."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="dev-ctl", clean_session=True)
    client.connect("127.0.0.1", port)
    client.loop_start()
    acked: list[Message] = []
    topic = f"{PREFIX}/mat-0001/telemetry"
    i, deadline = 0, time.monotonic() + 60 + plan.control_messages / plan.control_rate_per_s
    try:
        while len(acked) < plan.control_messages and time.monotonic() < deadline:
            i += 1
            body = json.dumps({"seq": i, "ts": 1_764_194_400_000 + i * 1000, "hr": 60}).encode()
            try:
                info = client.publish(topic, body, qos=1)
                info.wait_for_publish(10)
                published = info.is_published()
            except (RuntimeError, ValueError):
                published = False  # not connected just now
            if published:
                acked.append((topic, body))
                on_acked(len(acked))
            time.sleep(1 / plan.control_rate_per_s)
    finally:
        client.disconnect()
        client.loop_stop()
    return acked


def result(report: Report, control: Outcome | None) -> dict[str, Any]:
    """The run as one JSON object (bench/cluster_drills.py's RESULT line)."""
    rows = [*report.outcomes, *([control] if control else [])]
    return {
        "drills": [
            {
                "drill": o.drill,
                "takeover_s": o.takeover_s,
                "measured": o.measured,
                "samples": o.samples,
                "lost": o.lost,
                "duplicated": o.duplicated,
                "sos": o.sos,
                "paged": o.paged,
                "twice": o.twice,
                "problems": o.problems,
            }
            for o in rows
        ],
        "findings_expected": report.findings_expected,
        "findings_missing": report.findings_missing,
        "findings_extra": report.findings_extra,
        "late_findings": report.late_findings,
        "stale_writes": report.stale_writes,
        "position_back": report.position_back,
        "fenced": report.fenced,
        "messages": report.messages,
        "cpus": os.cpu_count(),
    }
