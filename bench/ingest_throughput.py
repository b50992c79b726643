"""Benchmark: end-to-end ingest throughput and delay, against the raw broker and raw COPY rates.

Everything runs on this machine: a private Mosquitto (the deployment settings of tests/support.py),
a fresh database (dropped at the end), publisher processes and the service as `bedwatch run` in a
process of its own. One stream of mattress telemetry (many beds, batches of samples, QoS 1) is
generated before any timing starts and played in these phases:

  A  raw broker: mosquitto_sub (QoS 1) consumes the stream as fast as the publishers send it.
  R  bare paho:  the same stream into a bare paho-mqtt 2 subscriber in a process of its own, set
                 up as the service's client (ingest/mqtt.py, the defaults of MqttSettings: MQTT 5,
                 clean_start False, session expiry, receive-maximum 10,000, QoS 1 subscription to
                 <prefix>/# with noLocal, manual_ack with client.ack() right in on_message, the
                 threaded loop of loop_start) that does nothing per message but count: the ceiling
                 of the MQTT client library on this machine. It leaves no session behind (session
                 expiry 0 on DISCONNECT), so the broker queues nothing for it in later phases.
  T  tutorial:   the stream's first --tutorial-messages into the bridge of MQTT-to-database
                 tutorials (paho's defaults, json.loads, an INSERT per sample, a COMMIT per
                 message), a process of its own: stored rows/s.
  B  service:    the same stream, flat out, into the BedWatch service: stored samples/s.
  P  paced:      a second stream (later device time) at a fixed rate (--rate msg/s): the delay
                 from publish to committed row at a rate the service is meant to sustain.
  C  raw COPY:   the rows of the stream, binary COPY in batches of 10,000 (a commit each) into a
                 fresh copy of mattress_samples (same columns, key and indexes).

A and R are short (the broker and a bare client are fast): each is run --broker-repeats times and
the median run is reported. CPU seconds per phase, from /proc: the broker, the consumer (the
mosquitto_sub or bare paho process in A and R, the service process and its detectors' worker in
B and P), the PostgreSQL backends (the service's in B and P, the COPY connection's in C), the
publishers, and the busy cores of the whole machine (other users included). The report turns
them into CPU per message and an estimate of the cores the whole pipeline would need at 0.3 x A
(the project's target). In B and P the service also reports its CPU per message by part of the
hot path (HotPathClock: thread CPU clocks around its functions, read on SIGUSR1).

Delay: each message carries its publish wall time (ms) as `seq` (the decoder keeps it; unknown to
detection). The service process runs with hooks that change none of its work (Store.write
wrapped, and the clocks above): when a batch's transaction has committed it notes, for every
message in it, publish time and commit time. Publish time is taken when the publisher hands
the packet to the socket.

Publishers speak MQTT 3.1.1 over a plain socket with pre-encoded packets (only the 13-digit
publish time is filled in at send time), QoS 1 with a window of unacknowledged messages, so that
they cost the shared CPUs little. Each publisher carries the beds b with b % publishers == p on
one connection: the broker's per-message work is that of a fleet, not its connection count.

    uv run python bench/ingest_throughput.py [--beds 2000] [--messages 50000] [--batch 10]
        [--publishers 4] [--rate 5000] [--paced-seconds 10] [--broker-repeats 3]
        [--tutorial-messages 3000] [--profile stacks.txt]
"""

from __future__ import annotations

import argparse
import array
import contextlib
import datetime as dt
import gc
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import paho.mqtt.client as paho
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CLK_TCK = os.sysconf("SC_CLK_TCK")
DAY_MS = 86_400_000
COPY_BATCH = 10_000
PROBE_DEVICE = "mat-0001"
MATTRESS_TYPES = ["timestamptz", "text", "text", "float4", "float4", "int2", "int2", "int2", "text"]


# --------------------------------------------------------------------------- stream


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """One publisher's share of a stream: message i of the stream goes to bed i % beds."""

    port: int
    prefix: str
    beds: int
    messages: int  # in the whole stream
    batch: int
    base_ms: int  # device time of the first sample of each bed
    spacing_ms: int  # device time between two samples of a bed
    publishers: int
    index: int  # this publisher
    rate: float  # messages/s for this publisher; 0 = as fast as the window allows
    window: int  # unacknowledged QoS 1 messages at most


def spacing_for(beds: int, messages: int, batch: int) -> int:
    """Sample spacing (ms): 1 s (a 1 Hz pad), less if a bed's samples would span over a day."""
    return max(1, min(1000, DAY_MS // max(1, per_bed(beds, messages, batch))))


def per_bed(beds: int, messages: int, batch: int) -> int:
    """Samples of the bed with the most messages."""
    return -(-messages // beds) * batch


def sample_json(ts: int, i: int) -> str:
    hr, rr, move, sq = 55 + i % 30, 12 + i % 8, i % 5, 80 + i % 20
    return f'{{"ts":{ts},"hr":{hr},"rr":{rr},"move":{move},"occ":1,"sq":{sq}}}'


def my_messages(spec: StreamSpec) -> Iterator[tuple[int, int]]:
    """(bed, k-th message of that bed) for this publisher's messages, in stream order."""
    for i in range(spec.messages):
        bed = i % spec.beds
        if bed % spec.publishers == spec.index:
            yield bed, i // spec.beds


def device_id(bed: int) -> str:
    return f"mat-{bed + 1:04d}"


def stream_rows(spec: StreamSpec) -> list[tuple[object, ...]]:
    """The rows the whole stream stores (as the service writes them), for the COPY phase."""
    residents = [f"r-{bed + 1:04d}" for bed in range(spec.beds)]
    devices = [device_id(bed) for bed in range(spec.beds)]
    rows: list[tuple[object, ...]] = []
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    for i in range(spec.messages):
        bed, k = i % spec.beds, i // spec.beds
        for s in range(spec.batch):
            n = k * spec.batch + s
            ts = spec.base_ms + n * spec.spacing_ms
            rows.append(
                (
                    epoch + dt.timedelta(milliseconds=ts),
                    devices[bed],
                    residents[bed],
                    float(55 + n % 30),
                    float(12 + n % 8),
                    n % 5,
                    1,
                    80 + n % 20,
                    "device",
                )
            )
    return rows


# --------------------------------------------------------------------------- raw MQTT publisher


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        digit, n = n % 128, n // 128
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _mqtt_str(s: str) -> bytes:
    b = s.encode()
    return len(b).to_bytes(2, "big") + b


def connect_packet(client_id: str) -> bytes:
    # MQTT 3.1.1, clean session, keepalive 0 (no pings needed during a bounded run).
    body = _mqtt_str("MQTT") + bytes([4, 0x02, 0, 0]) + _mqtt_str(client_id)
    return b"\x10" + _remaining_length(len(body)) + body


def encoded_stream(spec: StreamSpec) -> list[tuple[bytes, bytes]]:
    """Each message as (bytes before the 13-digit publish time, bytes after it)."""
    out: list[tuple[bytes, bytes]] = []
    for pid0, (bed, k) in enumerate(my_messages(spec)):
        topic = _mqtt_str(f"{spec.prefix}/{device_id(bed)}/telemetry")
        first = k * spec.batch
        samples = ",".join(
            sample_json(spec.base_ms + (first + s) * spec.spacing_ms, first + s)
            for s in range(spec.batch)
        )
        head = b'{"seq":'
        tail = f',"samples":[{samples}]}}'.encode()
        packet_id = (pid0 % 65_535 + 1).to_bytes(2, "big")
        length = len(topic) + 2 + len(head) + 13 + len(tail)
        prefix = b"\x32" + _remaining_length(length) + topic + packet_id + head
        out.append((prefix, tail))
    return out


class AckCounter(threading.Thread):
    """Reads PUBACKs (4 bytes each, the only packets the broker sends after CONNACK)."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.acked = 0
        self.error: str | None = None
        self.cond = threading.Condition()

    def run(self) -> None:
        buf = b""
        while True:
            try:
                data = self.sock.recv(65_536)
            except OSError as exc:
                self.error = str(exc)
                data = b""
            if not data:
                with self.cond:
                    self.error = self.error or "connection closed by the broker"
                    self.cond.notify_all()
                return
            buf += data
            whole = len(buf) // 4 * 4
            packets, buf = buf[:whole], buf[whole:]
            if packets[::4].strip(b"\x40"):
                with self.cond:
                    self.error = f"unexpected packet from the broker: {packets[:8]!r}"
                    self.cond.notify_all()
                return
            with self.cond:
                self.acked += whole // 4
                self.cond.notify_all()


def publisher_main() -> int:
    """A publisher process: spec on stdin, `ready`, then `go`, then a JSON result line."""
    spec = StreamSpec(**json.loads(sys.stdin.readline()))
    stream = encoded_stream(spec)
    sock = socket.create_connection(("127.0.0.1", spec.port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(connect_packet(f"bench-pub-{spec.index}-{uuid.uuid4().hex[:6]}"))
    connack = sock.recv(4)
    if connack[:1] != b"\x20" or connack[3:4] != b"\x00":
        print(json.dumps({"error": f"CONNACK {connack!r}"}), flush=True)
        return 1
    acks = AckCounter(sock)
    acks.start()
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    cpu0 = os.times()
    started = time.time()
    chunk_max = 200 if spec.rate <= 0 else max(1, int(spec.rate * 0.005))
    sent = 0
    total = len(stream)
    while sent < total:
        if spec.rate > 0:
            due = started + sent / spec.rate
            pause = due - time.time()
            if pause > 0:
                time.sleep(pause)
        with acks.cond:
            while sent - acks.acked >= spec.window and acks.error is None:
                acks.cond.wait(1.0)
            if acks.error is not None:
                break
            n = min(chunk_max, total - sent, spec.window - (sent - acks.acked))
        stamp = str(time.time_ns() // 1_000_000).encode()
        parts: list[bytes] = []
        for prefix, tail in stream[sent : sent + n]:
            parts += (prefix, stamp, tail)
        sock.sendall(b"".join(parts))
        sent += n
    last_send = time.time()
    with acks.cond:
        deadline = time.monotonic() + 60
        while acks.acked < sent and acks.error is None and time.monotonic() < deadline:
            acks.cond.wait(1.0)
    all_acked = time.time()
    error = acks.error  # before the DISCONNECT, after which the broker closes the connection
    with contextlib.suppress(OSError):
        sock.sendall(b"\xe0\x00")
        sock.close()
    cpu1 = os.times()
    result = {
        "sent": sent,
        "acked": acks.acked,
        "error": error,
        "last_send": last_send,
        "all_acked": all_acked,
        "cpu_s": (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system),
    }
    print(json.dumps(result), flush=True)
    return 0


class Publishers:
    """Publisher processes for one phase: generate and connect, then all start on go()."""

    def __init__(self, specs: Sequence[StreamSpec]) -> None:
        self.procs = [
            subprocess.Popen(
                [sys.executable, __file__, "_publish"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in specs
        ]
        for proc, spec in zip(self.procs, specs, strict=True):
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(asdict(spec)) + "\n")
            proc.stdin.flush()
        for proc in self.procs:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if line != "ready":
                self.kill()
                raise RuntimeError(f"publisher did not start: {line!r}")

    def go(self) -> float:
        started = time.time()
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        return started

    def results(self, timeout_s: float) -> list[dict[str, Any]]:
        out = []
        for proc in self.procs:
            stdout, _ = proc.communicate(timeout=timeout_s)
            out.append(json.loads(stdout.strip().splitlines()[-1]))
        return out

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def specs_for(
    args: argparse.Namespace, port: int, prefix: str, base_ms: int, messages: int, rate: float
) -> list[StreamSpec]:
    spacing = spacing_for(args.beds, messages, args.batch)
    return [
        StreamSpec(
            port=port,
            prefix=prefix,
            beds=args.beds,
            messages=messages,
            batch=args.batch,
            base_ms=base_ms,
            spacing_ms=spacing,
            publishers=args.publishers,
            index=p,
            rate=rate / args.publishers,
            window=args.window,
        )
        for p in range(args.publishers)
    ]


# --------------------------------------------------------------------------- bare paho subscriber


class BareCounter:
    """Phase R's paho callbacks: per message, client.ack(mid, qos) and a count, nothing else."""

    def __init__(self, prefix: str, target: int) -> None:
        self.prefix = prefix
        self.target = target
        self.got = 0
        self.last = 0.0
        self.probed = False
        self.done = threading.Event()
        self.gone = threading.Event()

    def on_connect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            print(json.dumps({"error": f"CONNACK {reason}"}), flush=True)
            return
        self.subscribe(client)

    def subscribe(self, client: paho.Client) -> None:
        from paho.mqtt.subscribeoptions import SubscribeOptions

        client.subscribe(f"{self.prefix}/#", options=SubscribeOptions(qos=1, noLocal=True))

    def on_disconnect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.gone.set()

    def on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        client.ack(msg.mid, msg.qos)
        if msg._topic.endswith(b"/telemetry"):
            self.got += 1
            if self.got == self.target:
                self.last = time.time()
                self.done.set()
        elif not self.probed:
            self.probed = True
            print("subscribed", flush=True)


class TutorialBridge(BareCounter):
    """Phase T's callbacks: the bridge of MQTT-to-database tutorials. paho's defaults (the
    message acknowledged when the callback returns), json.loads, one INSERT per sample and a
    COMMIT per message, into a copy of mattress_samples."""

    def __init__(self, prefix: str, target: int, database_url: str) -> None:
        import psycopg

        super().__init__(prefix, target)
        self.conn = psycopg.connect(database_url)
        self.rows = 0

    def subscribe(self, client: paho.Client) -> None:
        client.subscribe(f"{self.prefix}/#", qos=1)  # MQTT 3.1.1: no subscription options

    def on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        if not msg.topic.endswith("/telemetry"):
            if not self.probed:
                self.probed = True
                print("subscribed", flush=True)
            return
        data = json.loads(msg.payload)
        device = msg.topic.split("/")[-2]
        with self.conn.cursor() as cur:
            for s in data.get("samples", [data]):
                cur.execute(
                    "INSERT INTO bench_tutorial (time, device_id, resident_id, hr, rr, move, occ,"
                    " sq) VALUES (to_timestamp(%s / 1000.0), %s, %s, %s, %s, %s, %s, %s)",
                    (
                        s["ts"],
                        device,
                        "r-" + device[4:],
                        s["hr"],
                        s["rr"],
                        s["move"],
                        s["occ"],
                        s["sq"],
                    ),
                )
                self.rows += 1
        self.conn.commit()
        self.got += 1
        if self.got == self.target:
            self.last = time.time()
            self.done.set()


def tutorial_main() -> int:
    """Phase T's subscriber process (TutorialBridge), driven as paho_main is."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    spec = json.loads(sys.stdin.readline())
    bridge = TutorialBridge(str(spec["prefix"]), int(spec["messages"]), str(spec["database_url"]))
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-tut-{uuid.uuid4().hex[:8]}")
    client.on_connect = bridge.on_connect
    client.on_disconnect = bridge.on_disconnect
    client.on_message = bridge.on_message
    client.connect_async("127.0.0.1", int(spec["port"]))
    client.loop_start()
    try:
        if sys.stdin.readline().strip() != "go":
            return 1
        bridge.done.wait(float(spec["timeout"]))
        result = {"got": bridge.got, "rows": bridge.rows, "last": bridge.last or time.time()}
        print(json.dumps(result), flush=True)
        sys.stdin.read()
    finally:
        if client.disconnect() == paho.MQTT_ERR_SUCCESS:
            bridge.gone.wait(5)
        client.loop_stop()
        bridge.conn.close()
    return 0


def paho_main() -> int:
    """Phase R's subscriber process: a bare paho client set up as the service's (ingest/mqtt.py).

    Spec (port, prefix, messages, timeout) on stdin. Prints `subscribed` once a message on a
    status topic came back (the parent's probe), counts telemetry messages from `go` until
    `messages` (or the timeout), prints a JSON result line, and at the end of stdin disconnects
    with session expiry 0 and exits.
    """
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from ingest.settings import MqttSettings

    spec = json.loads(sys.stdin.readline())
    counter = BareCounter(str(spec["prefix"]), int(spec["messages"]))
    settings = MqttSettings()  # the service's defaults: the bench's service changes none of these
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"bench-paho-{uuid.uuid4().hex[:8]}",
        protocol=paho.MQTTv5,
        clean_session=None,
        manual_ack=True,
    )
    client.on_connect = counter.on_connect
    client.on_disconnect = counter.on_disconnect
    client.on_message = counter.on_message
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = settings.session_expiry_s
    properties.ReceiveMaximum = settings.receive_maximum
    client.connect_async(
        "127.0.0.1",
        int(spec["port"]),
        keepalive=settings.keepalive_s,
        clean_start=False,
        properties=properties,
    )
    client.loop_start()
    try:
        if sys.stdin.readline().strip() != "go":
            return 1
        counter.done.wait(float(spec["timeout"]))
        print(json.dumps({"got": counter.got, "last": counter.last or time.time()}), flush=True)
        sys.stdin.read()  # until the parent has read this process's CPU time and closes stdin
    finally:
        # The session is persistent (as the service's): expiry 0 now, so that the broker drops it.
        bye = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
        bye.SessionExpiryInterval = 0
        if client.disconnect(properties=bye) == paho.MQTT_ERR_SUCCESS:
            counter.gone.wait(5)
        client.loop_stop()
    return 0


# --------------------------------------------------------------------------- the service process


class HotPathClock:
    """CPU time of the service's hot path by part, in the service process: the functions named
    in PARTS_TIMED timed by their thread's CPU clock, and every thread's CPU time by name.

    `dump` writes both, as JSON, when the bench sends SIGUSR1; `hot_path_parts` turns two dumps
    into CPU by part (what each part is: see there). A function missing from this version of
    the service is left out of its part.
    """

    PARTS_TIMED = (
        ("ingest.protocol", "Decoder", "decode"),
        ("ingest.intake", "Intake", "on_message"),
        ("ingest.mqtt", "MqttSession", "ack"),
        ("ingest.mqtt", "MqttSession", "ack_many"),
        ("paho.mqtt.client", "Client", "_packet_write"),
        ("ingest.store", "Store", "write"),
        ("bedwatch.detector_process", "DetectorProcess", "feed"),
    )

    def __init__(self) -> None:
        import importlib

        self.ns: dict[str, int] = {}
        self._lock = threading.Lock()
        for module, owner, name in self.PARTS_TIMED:
            cls = getattr(importlib.import_module(module), owner)
            if hasattr(cls, name):
                self._wrap(cls, name)
        self.ns["gc"] = 0
        self._gc_started = 0
        gc.callbacks.append(self._gc)

    def _gc(self, phase: str, info: dict[str, int]) -> None:
        """The cyclic collector's time (within whichever part it interrupted)."""
        if phase == "start":
            self._gc_started = time.thread_time_ns()
        else:
            self.ns["gc"] += time.thread_time_ns() - self._gc_started

    def _wrap(self, cls: type, name: str) -> None:
        original = getattr(cls, name)
        clock, lock, ns = time.thread_time_ns, self._lock, self.ns
        ns[name] = 0

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = clock()
            try:
                return original(*args, **kwargs)
            finally:
                spent = clock() - started
                with lock:
                    ns[name] += spent

        setattr(cls, name, timed)

    def dump(self, path: Path) -> None:
        threads: dict[str, float] = {}
        for thread in threading.enumerate():
            cpu = proc_cpu_s(os.getpid(), thread.native_id)
            if not math.isnan(cpu):
                threads[thread.name] = threads.get(thread.name, 0.0) + cpu
        with self._lock:
            timed = {k: v / 1e9 for k, v in self.ns.items()}
        path.write_text(json.dumps({"timed": timed, "threads": threads}))


def hot_path_parts(
    before: dict[str, Any], after: dict[str, Any], process_s: float, worker_s: float
) -> dict[str, float]:
    """CPU seconds by part of the hot path between two HotPathClock dumps.

    receive: the MQTT threads (paho's loop: socket reads, packet parsing) less the rest of
    what runs on them; decode: Decoder.decode; intake: Intake.on_message less decode; ack:
    acknowledging (MqttSession.ack/ack_many on the event loop, paho writing the packets on its
    thread); store: Store.write (in the writer thread); hand-off: giving messages to the
    detector process (DetectorProcess.feed and its send and read threads); detect: the detector
    process; other: the rest of the service process (the event loop's scheduling, timers, the
    alert engine, the console, logging).
    """

    def timed(name: str) -> float:
        return float(after["timed"].get(name, 0.0) - before["timed"].get(name, 0.0))

    def threads(match: Callable[[str], bool]) -> float:
        names = [n for n in after["threads"] if match(n)]
        return float(sum(after["threads"][n] - before["threads"].get(n, 0.0) for n in names))

    paho = threads(lambda n: n.startswith("paho-mqtt-client"))
    on_message, decode = timed("on_message"), timed("decode")
    packet_write = timed("_packet_write")
    helpers = threads(lambda n: n in ("detect-send", "detect-read"))
    parts = {
        "receive": paho - on_message - packet_write,
        "decode": decode,
        "intake": on_message - decode,
        "ack": timed("ack") + timed("ack_many") + packet_write,
        "store": timed("write"),
        "hand-off": timed("feed") + helpers,
        "detect": worker_s,
    }
    parts["other"] = process_s + worker_s - sum(parts.values())
    parts["gc (within the above)"] = timed("gc")
    return parts


def service_main() -> int:
    """`bedwatch run` with Store.write wrapped to note commit times (see the module docstring).

    Per committed batch, one line on stdout: `commit_ms messages mattress_rows findings`. At
    exit, the (publish_ms, commit_ms) pairs go to the file named by BENCH_DELAYS_FILE.
    """
    from bedwatch import cli, detector_store
    from bedwatch import service as service_module
    from bedwatch.settings import Settings
    from detectors.findings import Finding
    from detectors.nights import NightSummary
    from ingest.protocol import Decoded
    from ingest.records import Record
    from ingest.store import AlsoWrite, Cursor, Store, WriteResult

    original = Store.write
    original_findings = detector_store.store_findings
    pairs = array.array("q")
    out = sys.stdout
    findings_written = [0]

    def store_findings(
        cur: Cursor,
        findings: Sequence[Finding],
        summaries: Sequence[NightSummary],
        ids: list[int] | None = None,
    ) -> None:
        original_findings(cur, findings, summaries, ids)
        findings_written[0] += len(findings)

    def write(
        self: Store,
        messages: Sequence[Decoded],
        derived: Sequence[Record] = (),
        also: AlsoWrite | None = None,
    ) -> WriteResult:
        findings_written[0] = 0
        result = original(self, messages, derived, also)
        now = time.time_ns() // 1_000_000
        for m in messages:
            if m.seq is not None:
                pairs.append(m.seq)
                pairs.append(now)
        out.write(f"{now} {len(messages)} {result.mattress} {findings_written[0]}\n")
        out.flush()
        return result

    detector_store.store_findings = store_findings
    Store.write = write  # type: ignore[method-assign]
    parts = HotPathClock()
    signal.signal(signal.SIGUSR1, lambda *_: parts.dump(Path(os.environ["BENCH_PARTS_FILE"])))
    run_service = service_module.run_service

    async def run_then_save(settings: Settings) -> int:
        # `bedwatch run` leaves by os._exit once the service has stopped: save before that.
        try:
            return await run_service(settings)
        finally:
            Path(os.environ["BENCH_DELAYS_FILE"]).write_bytes(pairs.tobytes())  # noqa: ASYNC240

    service_module.run_service = run_then_save
    return cli.main(["run"])


class ServiceProcess:
    """The service under test, in its own process; follows its commit lines on a thread."""

    def __init__(self, database_url: str, broker_url: str, prefix: str, work: Path) -> None:
        self.delays_file = work / "delays.bin"
        self.log_file = work / "service.log"
        env = os.environ | {
            "BEDWATCH_DATABASE_URL": database_url,
            "BEDWATCH_MQTT_URL": broker_url,
            "BEDWATCH_TOPIC_PREFIX": prefix,
            "BEDWATCH_MQTT__CLIENT_ID": f"bench-{uuid.uuid4().hex[:8]}",
            "BEDWATCH_DATABASE__CREATE_DATABASE": "false",
            "BENCH_DELAYS_FILE": str(self.delays_file),
            "BENCH_PARTS_FILE": str(work / "parts.json"),
        }
        self.parts_file = work / "parts.json"
        self._log: IO[bytes] = open(self.log_file, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "_service"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self.lock = threading.Lock()
        self.messages = 0
        self.rows = 0
        self.findings = 0
        self.last_commit_ms = 0
        self._reader = threading.Thread(target=self._follow, daemon=True)
        self._reader.start()

    def _follow(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            commit_ms, messages, rows, findings = (int(x) for x in line.split())
            with self.lock:
                self.messages += messages
                self.rows += rows
                self.findings += findings
                self.last_commit_ms = commit_ms

    def snapshot(self) -> tuple[int, int, int]:
        with self.lock:
            return self.messages, self.rows, self.last_commit_ms

    def cpu_s(self) -> float:
        """The service process and its children (the detectors' worker process)."""
        return sum(proc_cpu_s(pid) for pid in [self.proc.pid, *children(self.proc.pid)])

    def clock(self) -> tuple[dict[str, Any], float, float]:
        """The service's HotPathClock dump, its own CPU seconds and its children's."""
        self.parts_file.unlink(missing_ok=True)
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                dump = json.loads(self.parts_file.read_text())
                worker = sum(proc_cpu_s(pid) for pid in children(self.proc.pid))
                return dump, proc_cpu_s(self.proc.pid), worker
            time.sleep(0.01)
        raise RuntimeError("the service did not write its hot path clock")

    def stop(self) -> list[tuple[int, int]]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        self._log.close()
        if not self.delays_file.exists():
            return []
        data = array.array("q")
        data.frombytes(self.delays_file.read_bytes())
        return list(zip(data[0::2], data[1::2], strict=True))

    def log_tail(self) -> str:
        return self.log_file.read_text(errors="replace")[-3000:]


def proc_cpu_s(pid: int, thread: int | None = None) -> float:
    """User + system CPU seconds of a process (and its threads), or of one of its threads,
    from /proc."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    try:
        stat = Path(path).read_text()
    except OSError:
        return float("nan")
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children(pid: int) -> list[int]:
    """Processes whose parent is `pid`, from /proc."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(entry.name))
    return out


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs so far."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def cores_busy_since(before: tuple[int, int]) -> float:
    busy, total = machine_busy()
    return (os.cpu_count() or 1) * (busy - before[0]) / max(1, total - before[1])


def backend_pids(database_url: str) -> list[int]:
    """The PostgreSQL backends connected to the benchmark's database (the service's)."""
    import psycopg

    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return [int(r[0]) for r in rows]


# --------------------------------------------------------------------------- phases


@dataclass(slots=True)
class Phase:
    name: str
    messages: int = 0
    samples: int = 0
    seconds: float = 0.0
    msg_per_s: float = 0.0
    samples_per_s: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    service_cpu_s: float | None = None
    consumer_cpu_s: float | None = None  # the subscriber process of A (mosquitto_sub) or R (paho)
    broker_cpu_s: float | None = None
    db_cpu_s: float | None = None  # PostgreSQL backends: the service's (B, P), the COPY's (C)
    cores_busy: float | None = None  # the whole machine, from /proc/stat
    publisher_cpu_s: float | None = None
    publish_s: float | None = None  # go -> last message handed to the socket
    parts_us_per_msg: dict[str, float] | None = None  # B: the service's CPU by part
    notes: list[str] = field(default_factory=list)


def percentile(values: Sequence[int], q: float) -> float:
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


def publisher_summary(phase: Phase, started: float, results: list[dict[str, Any]]) -> None:
    errors = [r["error"] for r in results if r.get("error")]
    if errors:
        phase.notes.append(f"publisher errors: {errors}")
    sent = sum(r["sent"] for r in results)
    acked = sum(r["acked"] for r in results)
    if acked != sent:
        phase.notes.append(f"publishers: {acked} of {sent} acknowledged by the broker")
    phase.publish_s = max(r["last_send"] for r in results) - started
    phase.publisher_cpu_s = sum(r["cpu_s"] for r in results)


def phase_broker(bench: Bench) -> Phase:
    """A: mosquitto_sub, QoS 1, consumes the stream."""
    args, port, prefix, broker_pid = bench.args, bench.port, bench.prefix, bench.broker_pid
    phase = Phase("A mosquitto_sub")
    binary = shutil.which("mosquitto_sub") or "/usr/bin/mosquitto_sub"
    sub = subprocess.Popen(
        [binary, "-p", str(port), "-q", "1", "-t", f"{prefix}/#", "-F", "%t"],
        stdout=subprocess.PIPE,
    )
    assert sub.stdout is not None
    fd = sub.stdout.fileno()
    os.set_blocking(fd, False)
    probe = connect_probe(port)
    try:
        # Until the subscription is live: a probe on the status channel comes back.
        buf = b""
        deadline = time.monotonic() + 15
        while b"/status" not in buf:
            if time.monotonic() > deadline:
                raise RuntimeError("mosquitto_sub never subscribed")
            publish_probe(probe, f"{prefix}/probe/status")
            buf += read_for(fd, 0.2)
        pubs = Publishers(specs_for(args, port, prefix, bench.base_b, args.messages, 0))
        tail = buf.rsplit(b"\n", 1)[-1]
        got = 0
        cpu_sub = proc_cpu_s(sub.pid)
        cpu_broker = proc_cpu_s(broker_pid)
        busy = machine_busy()
        started = pubs.go()
        last = started
        deadline = time.monotonic() + args.timeout
        while got < args.messages and time.monotonic() < deadline:
            data = read_for(fd, 0.05)
            if data:
                last = time.time()
                n, tail = count_lines(tail + data)
                got += n
        phase.consumer_cpu_s = proc_cpu_s(sub.pid) - cpu_sub
        results = pubs.results(60)
        publisher_summary(phase, started, results)
        phase.broker_cpu_s = proc_cpu_s(broker_pid) - cpu_broker
        phase.cores_busy = cores_busy_since(busy)
        if got < args.messages:
            phase.notes.append(f"timed out: {got} of {args.messages} messages received")
        phase.messages = got
        phase.samples = got * args.batch
        phase.seconds = last - started
    finally:
        probe.close()
        sub.terminate()
        sub.wait(10)
    phase.msg_per_s = phase.messages / phase.seconds
    phase.samples_per_s = phase.samples / phase.seconds
    return phase


def start_paho(bench: Bench, role: str, messages: int) -> subprocess.Popen[bytes]:
    """Phase R's subscriber process (paho_main), or T's (`_tutorial`), once its subscription
    is live."""
    sub = subprocess.Popen(
        [sys.executable, __file__, role], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert sub.stdin is not None
    assert sub.stdout is not None
    args, prefix = bench.args, bench.prefix
    spec = {
        "port": bench.port,
        "prefix": prefix,
        "messages": messages,
        "timeout": args.timeout,
        "database_url": bench.db_url,
    }
    sub.stdin.write(json.dumps(spec).encode() + b"\n")
    sub.stdin.flush()
    os.set_blocking(sub.stdout.fileno(), False)
    probe = connect_probe(bench.port)
    try:
        # Until the subscription is live: a probe on the status channel comes back.
        buf = b""
        deadline = time.monotonic() + 15
        while b"subscribed\n" not in buf:
            if time.monotonic() > deadline or sub.poll() is not None:
                stop_paho(sub)
                raise RuntimeError(f"the bare paho subscriber never subscribed: {buf!r}")
            publish_probe(probe, f"{prefix}/probe/status")
            buf += read_for(sub.stdout.fileno(), 0.2)
    finally:
        probe.close()
    return sub


def stop_paho(sub: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(OSError):
        assert sub.stdin is not None
        sub.stdin.close()  # the subscriber disconnects (dropping its session) and exits
    try:
        sub.wait(10)
    except subprocess.TimeoutExpired:
        sub.kill()
        sub.wait()


def play_to_subscriber(
    bench: Bench, phase: Phase, role: str, messages: int, what: str
) -> tuple[dict[str, Any], float]:
    """Start a subscriber process (`role`: _paho or _tutorial), play the stream's first
    `messages` to it flat out, and note the CPU of the subscriber, the broker, the publishers and
    the machine in `phase`. Returns the subscriber's result line and the start (wall s)."""
    args, broker_pid = bench.args, bench.broker_pid
    sub = start_paho(bench, role, messages)
    assert sub.stdin is not None
    assert sub.stdout is not None
    try:
        pubs = Publishers(specs_for(args, bench.port, bench.prefix, bench.base_b, messages, 0))
        cpu_sub = proc_cpu_s(sub.pid)
        cpu_broker = proc_cpu_s(broker_pid)
        busy = machine_busy()
        started = pubs.go()
        sub.stdin.write(b"go\n")
        sub.stdin.flush()
        buf = b""
        deadline = time.monotonic() + args.timeout + 10
        while b"\n" not in buf and time.monotonic() < deadline and sub.poll() is None:
            buf += read_for(sub.stdout.fileno(), 0.05)
        phase.consumer_cpu_s = proc_cpu_s(sub.pid) - cpu_sub
        publisher_summary(phase, started, pubs.results(60))
        phase.broker_cpu_s = proc_cpu_s(broker_pid) - cpu_broker
        phase.cores_busy = cores_busy_since(busy)
    finally:
        stop_paho(sub)
    if b"\n" not in buf:
        raise RuntimeError(f"the {what} gave no result: {buf!r}")
    done: dict[str, Any] = json.loads(buf.split(b"\n", 1)[0])
    phase.messages = int(done["got"])
    if phase.messages < messages:
        phase.notes.append(f"timed out: {phase.messages} of {messages} messages received")
    phase.seconds = float(done["last"]) - started
    phase.msg_per_s = phase.messages / phase.seconds
    return done, started


def phase_paho(bench: Bench) -> Phase:
    """R: a bare paho subscriber (paho_main, a process of its own) consumes the stream."""
    phase = Phase("R bare paho (MQTT 5, manual ack)")
    play_to_subscriber(bench, phase, "_paho", bench.args.messages, "bare paho subscriber")
    phase.samples = phase.messages * bench.args.batch
    phase.samples_per_s = phase.samples / phase.seconds
    return phase


def phase_tutorial(bench: Bench) -> Phase:
    """T: the tutorials' bridge (tutorial_main, a process of its own) stores the stream's first
    --tutorial-messages messages into a copy of mattress_samples."""
    import psycopg

    phase = Phase("T tutorial bridge (INSERT, COMMIT)")
    with psycopg.connect(bench.db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE bench_tutorial (LIKE mattress_samples INCLUDING ALL)")
    try:
        done, _ = play_to_subscriber(
            bench, phase, "_tutorial", bench.args.tutorial_messages, "tutorial bridge"
        )
    finally:
        with psycopg.connect(bench.db_url, autocommit=True) as conn:
            conn.execute("DROP TABLE bench_tutorial")
    phase.samples = int(done["rows"])
    phase.samples_per_s = phase.samples / phase.seconds
    return phase


def count_lines(data: bytes) -> tuple[int, bytes]:
    """Telemetry lines in data (topics, one a line), and the unfinished last line."""
    *lines, tail = data.split(b"\n")
    return sum(1 for line in lines if line.endswith(b"/telemetry")), tail


def read_for(fd: int, seconds: float) -> bytes:
    import select

    ready, _, _ = select.select([fd], [], [], seconds)
    if not ready:
        return b""
    chunks = []
    with contextlib.suppress(BlockingIOError):
        while True:
            data = os.read(fd, 1 << 20)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


def connect_probe(port: int) -> Any:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=f"bench-probe-{uuid.uuid4().hex[:6]}"
    )
    client.connect("127.0.0.1", port)
    client.loop_start()
    return _Probe(client)


class _Probe:
    def __init__(self, client: Any) -> None:
        self.client = client

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish_probe(probe: _Probe, topic: str, payload: bytes = b"{}") -> None:
    probe.client.publish(topic, payload, qos=1).wait_for_publish(5)


def phase_service(
    bench: Bench,
    name: str,
    service: ServiceProcess,
    base_ms: int,
    messages: int,
    rate: float,
    profile: Path | None,
) -> tuple[Phase, float]:
    """B or P: the service consumes a stream; returns the phase and its start (wall s)."""
    args, broker_pid = bench.args, bench.broker_pid
    phase = Phase(name)
    pubs = Publishers(specs_for(args, bench.port, bench.prefix, base_ms, messages, rate))
    _, rows0, _ = service.snapshot()
    cpu_service = service.cpu_s()
    cpu_broker = proc_cpu_s(broker_pid)
    backends = backend_pids(bench.db_url)
    cpu_db = sum(proc_cpu_s(pid) for pid in backends)
    busy = machine_busy()
    clock_before = service.clock() if profile is None else None
    spy = None
    if profile is not None:
        spy = subprocess.Popen(
            [
                args.py_spy,
                "record",
                "--format",
                "raw",
                "-o",
                str(profile),
                "--pid",
                str(service.proc.pid),
                "--threads",
                "--gil",
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)
    started = pubs.go()
    target = rows0 + messages * args.batch
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        _, rows, _ = service.snapshot()
        if rows >= target or service.proc.poll() is not None:
            break
        time.sleep(0.02)
    _, rows, last_ms = service.snapshot()
    phase.service_cpu_s = service.cpu_s() - cpu_service
    if clock_before is not None:
        dump, process_s, worker_s = service.clock()
        parts = hot_path_parts(
            clock_before[0], dump, process_s - clock_before[1], worker_s - clock_before[2]
        )
    phase.broker_cpu_s = proc_cpu_s(broker_pid) - cpu_broker
    phase.db_cpu_s = sum(proc_cpu_s(pid) for pid in backends) - cpu_db
    phase.cores_busy = cores_busy_since(busy)
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(30)
    publisher_summary(phase, started, pubs.results(60))
    stored = rows - rows0
    if stored < messages * args.batch:
        phase.notes.append(f"timed out: {stored} of {messages * args.batch} samples stored")
    phase.samples = stored
    phase.messages = stored // args.batch
    if clock_before is not None and phase.messages:
        phase.parts_us_per_msg = {k: v / phase.messages * 1e6 for k, v in parts.items()}
    phase.seconds = last_ms / 1000 - started
    phase.samples_per_s = phase.samples / phase.seconds
    phase.msg_per_s = phase.messages / phase.seconds
    return phase, started


def add_delays(phase: Phase, pairs: list[tuple[int, int]]) -> None:
    delays = [commit - published for published, commit in pairs]
    if not delays:
        phase.notes.append("no delays recorded")
        return
    phase.p50_ms = percentile(delays, 0.50)
    phase.p99_ms = percentile(delays, 0.99)
    phase.max_ms = float(max(delays))
    if len(delays) != phase.messages:
        phase.notes.append(f"{len(delays)} delays for {phase.messages} messages")


def phase_copy(database_url: str, rows: list[tuple[object, ...]]) -> Phase:
    """C: binary COPY of the stream's rows into a fresh copy of mattress_samples."""
    import psycopg

    phase = Phase("C binary COPY")
    with psycopg.connect(database_url) as conn:
        conn.execute("CREATE TABLE bench_copy (LIKE mattress_samples INCLUDING ALL)")
        conn.commit()
        backend = conn.info.backend_pid
        cpu_db = proc_cpu_s(backend)
        started = time.perf_counter()
        for i in range(0, len(rows), COPY_BATCH):
            with (
                conn.cursor() as cur,
                cur.copy(
                    "COPY bench_copy (time, device_id, resident_id, hr, rr, move, occ, sq, source)"
                    " FROM STDIN (FORMAT BINARY)"
                ) as copy,
            ):
                copy.set_types(MATTRESS_TYPES)
                for row in rows[i : i + COPY_BATCH]:
                    copy.write_row(row)
            conn.commit()
        phase.seconds = time.perf_counter() - started
        phase.db_cpu_s = proc_cpu_s(backend) - cpu_db
        stored = conn.execute("SELECT count(*) FROM bench_copy").fetchone()
        conn.execute("DROP TABLE bench_copy")
        conn.commit()
    assert stored is not None
    phase.samples = int(stored[0])
    phase.samples_per_s = phase.samples / phase.seconds
    return phase


# --------------------------------------------------------------------------- main


def site_toml(beds: int) -> str:
    lines = []
    for bed in range(beds):
        n = f"{bed + 1:04d}"
        lines += [
            "[[residents]]",
            f'id = "r-{n}"',
            f'name = "bench {n}"',
            f'devices = [{{ id = "mat-{n}", kind = "mattress" }}]',
            "",
        ]
    return "\n".join(lines)


def prepare_database(database_url: str, beds: int) -> None:
    import psycopg

    from bedwatch.migrate import migrate
    from bedwatch.settings import Settings
    from bedwatch.site import parse_site
    from ingest.registry import store_site

    settings = Settings().replace("database", url=database_url, create_database=False)
    migrate(settings)
    with psycopg.connect(database_url) as conn, conn.transaction():
        store_site(conn, parse_site(site_toml(beds)))


def wait_service_subscribed(service: ServiceProcess, port: int, prefix: str) -> None:
    """Until the service's subscription is live: a probe status message is committed."""
    probe = connect_probe(port)
    try:
        deadline = time.monotonic() + 30
        attempt = 0
        while service.snapshot()[0] == 0:
            if time.monotonic() > deadline or service.proc.poll() is not None:
                raise RuntimeError("the service never subscribed:\n" + service.log_tail())
            status = {"state": "online", "ts": int(time.time() * 1000) - 60_000 + attempt}
            publish_probe(probe, f"{prefix}/{PROBE_DEVICE}/status", json.dumps(status).encode())
            attempt += 1
            time.sleep(0.2)
    finally:
        probe.close()


@dataclass(frozen=True, slots=True)
class Bench:
    """What every phase needs: the options, the private broker, the database, the streams."""

    args: argparse.Namespace
    port: int
    broker_url: str
    broker_pid: int
    db_url: str
    prefix: str
    work: Path
    base_b: int  # device time of stream A/B (its first sample of each bed)
    base_p: int  # device time of the paced stream, right after A/B's
    paced_messages: int


def run(args: argparse.Namespace) -> dict[str, Any]:
    from tests.support import Mosquitto, fresh_database

    load_start = Path("/proc/loadavg").read_text().split()[:3]
    busy = machine_busy()
    time.sleep(2.0)
    busy_before = cores_busy_since(busy)
    print(
        f"load average at start (1/5/15 min): {' '.join(load_start)}; cpus: {os.cpu_count()};"
        f" cores busy before start (2 s, others): {busy_before:.2f}"
    )
    paced_messages = int(args.rate * args.paced_seconds)
    # Device time in the recent past, each bed's stream A/B then its paced stream, 1 Hz.
    span_b = per_bed(args.beds, args.messages, args.batch) * spacing_for(
        args.beds, args.messages, args.batch
    )
    span_p = per_bed(args.beds, paced_messages, args.batch) * spacing_for(
        args.beds, paced_messages, args.batch
    )
    base_b = int(time.time() * 1000) - span_b - span_p - 120_000
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp, fresh_database() as db_url:
        work = Path(tmp)
        broker = Mosquitto(work / "broker")
        broker.start()
        try:
            assert broker._proc is not None
            bench = Bench(
                args=args,
                port=broker.port,
                broker_url=broker.url,
                broker_pid=broker._proc.pid,
                db_url=db_url,
                prefix=f"bench/{uuid.uuid4().hex[:10]}/bedwatch/v1",
                work=work,
                base_b=base_b,
                base_p=base_b + span_b,
                paced_messages=paced_messages,
            )
            t = time.perf_counter()
            prepare_database(db_url, args.beds)
            print(f"database ready with {args.beds} beds in {time.perf_counter() - t:.1f} s")
            result = run_phases(bench)
        finally:
            broker.stop()
    result["load_start"] = load_start
    result["cores_busy_before"] = busy_before
    result["load_end"] = Path("/proc/loadavg").read_text().split()[:3]
    return result


def median_run(bench: Bench, phase: Callable[[Bench], Phase]) -> Phase:
    """A short phase, run --broker-repeats times: the run with the median rate."""
    runs = []
    for _ in range(bench.args.broker_repeats):
        runs.append(phase(bench))
        print(f"  {runs[-1].name}: {runs[-1].msg_per_s:,.0f} msg/s")
    runs.sort(key=lambda ph: ph.msg_per_s)
    median = runs[len(runs) // 2]
    median.notes.append(
        f"median of {len(runs)} runs: " + ", ".join(f"{ph.msg_per_s:,.0f}" for ph in runs)
    )
    return median


def per_unit_us(cpu_s: float | None, units: int) -> float | None:
    """CPU microseconds per message or row; None where not measured."""
    if cpu_s is None or math.isnan(cpu_s) or units <= 0:  # nan: the process was gone
        return None
    return cpu_s / units * 1e6


def cpu_budget(a: Phase, r: Phase, b: Phase, c: Phase) -> dict[str, float | None]:
    """CPU per message (per row for PostgreSQL), µs, and the cores the pipeline needs at 0.3 x A.

    The estimate: 0.3 x A msg/s x (broker per message in A + service per message in B +
    its PostgreSQL backends per message in B + publishers per message in B). The bare paho
    client's CPU is part of the service's, so it is not added.
    """
    out = {
        "broker_us_per_msg_a": per_unit_us(a.broker_cpu_s, a.messages),
        "mosquitto_sub_us_per_msg_a": per_unit_us(a.consumer_cpu_s, a.messages),
        "broker_us_per_msg_r": per_unit_us(r.broker_cpu_s, r.messages),
        "paho_us_per_msg_r": per_unit_us(r.consumer_cpu_s, r.messages),
        "broker_us_per_msg_b": per_unit_us(b.broker_cpu_s, b.messages),
        "service_us_per_msg_b": per_unit_us(b.service_cpu_s, b.messages),
        "db_us_per_msg_b": per_unit_us(b.db_cpu_s, b.messages),
        "db_us_per_row_b": per_unit_us(b.db_cpu_s, b.samples),
        "db_us_per_row_c": per_unit_us(c.db_cpu_s, c.samples),
        "publisher_us_per_msg_b": per_unit_us(b.publisher_cpu_s, b.messages),
    }
    parts = [
        out["broker_us_per_msg_a"],
        out["service_us_per_msg_b"],
        out["db_us_per_msg_b"],
        out["publisher_us_per_msg_b"],
    ]
    total = None if None in parts else sum(x for x in parts if x is not None)
    out["pipeline_us_per_msg"] = total
    out["target_msg_per_s"] = 0.3 * a.msg_per_s
    out["cores_at_target"] = None if total is None else 0.3 * a.msg_per_s * total / 1e6
    return out


def run_phases(bench: Bench) -> dict[str, Any]:
    args = bench.args
    # Phases A and R are short (the broker and a bare client are fast): repeated, median run.
    a = median_run(bench, phase_broker)
    r = median_run(bench, phase_paho)
    t = phase_tutorial(bench) if args.tutorial_messages else None
    if t is not None:
        print(f"  {t.name}: {t.samples_per_s:,.0f} rows/s")
    service = ServiceProcess(bench.db_url, bench.broker_url, bench.prefix, bench.work)
    try:
        wait_service_subscribed(service, bench.port, bench.prefix)
        b, _ = phase_service(
            bench, "B service, flat out", service, bench.base_b, args.messages, 0, args.profile
        )
        print(f"  {b.name}: {b.samples_per_s:,.0f} samples/s")
        p: Phase | None = None
        p_started = float("inf")
        if bench.paced_messages:
            time.sleep(1.0)
            p, p_started = phase_service(
                bench,
                f"P service, paced {args.rate:,.0f} msg/s",
                service,
                bench.base_p,
                bench.paced_messages,
                args.rate,
                None,
            )
            print(f"  {p.name}: {p.samples_per_s:,.0f} samples/s")
    finally:
        pairs = service.stop()
    if p is None:
        add_delays(b, pairs)
    else:
        add_delays(b, [x for x in pairs if x[0] < int(p_started * 1000)])
        add_delays(p, [x for x in pairs if x[0] >= int(p_started * 1000)])
    check = verify(bench, service)
    spec = specs_for(args, bench.port, bench.prefix, bench.base_b, args.messages, 0)[0]
    c = phase_copy(bench.db_url, stream_rows(spec))
    print(f"  {c.name}: {c.samples_per_s:,.0f} rows/s")
    phases = [a, r] + ([t] if t is not None else []) + [b] + ([p] if p is not None else []) + [c]
    return {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "check": check,
        "phases": [asdict(x) for x in phases],
        "ratio_service_rows_to_paho_messages": b.samples_per_s / r.msg_per_s,
        "ratio_service_to_tutorial": None if t is None else b.samples_per_s / t.samples_per_s,
        "ratio_paho_to_broker": r.msg_per_s / a.msg_per_s,
        "ratio_service_to_broker": b.msg_per_s / a.msg_per_s,
        "ratio_service_to_paho": b.msg_per_s / r.msg_per_s,
        "ratio_service_to_copy": b.samples_per_s / c.samples_per_s,
        "cpu": cpu_budget(a, r, b, c),
    }


def verify(bench: Bench, service: ServiceProcess) -> dict[str, int]:
    """Every sample stored once, nothing quarantined; findings the detectors wrote."""
    import psycopg

    counts: dict[str, int] = {}
    with psycopg.connect(bench.db_url) as conn:
        for name, table in (
            ("stored", "mattress_samples"),
            ("quarantined", "quarantine"),
            ("findings", "findings"),
        ):
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            assert row is not None
            counts[name] = int(row[0])
    counts["expected"] = (bench.args.messages + bench.paced_messages) * bench.args.batch
    if counts["stored"] != counts["expected"] or counts["quarantined"]:
        print(f"CHECK FAILED: {counts}\n{service.log_tail()}")
    return counts


def fmt(value: float | None, spec: str = ",.0f") -> str:
    return "-" if value is None else format(value, spec)


def report(result: dict[str, Any]) -> None:
    print()
    header = (
        f"{'phase':34} {'msg/s':>8} {'samples/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}"
        f" {'svc CPU s':>9} {'sub s':>5} {'db s':>5} {'broker s':>8} {'pub s':>6} {'cores':>5}"
        f" {'secs':>6}"
    )
    print(header)
    print("-" * len(header))
    for ph in result["phases"]:
        print(
            f"{ph['name']:34} {fmt(ph['msg_per_s'] or None):>8} {fmt(ph['samples_per_s']):>10}"
            f" {fmt(ph['p50_ms']):>7} {fmt(ph['p99_ms']):>7} {fmt(ph['max_ms']):>7}"
            f" {fmt(ph['service_cpu_s'], '.1f'):>9} {fmt(ph['consumer_cpu_s'], '.1f'):>5}"
            f" {fmt(ph['db_cpu_s'], '.1f'):>5}"
            f" {fmt(ph['broker_cpu_s'], '.1f'):>8}"
            f" {fmt(ph['publisher_cpu_s'], '.1f'):>6} {fmt(ph['cores_busy'], '.2f'):>5}"
            f" {ph['seconds']:>6.2f}"
        )
        for note in ph["notes"]:
            print(f"    note: {note}")
    by_letter = {ph["name"][0]: ph for ph in result["phases"]}
    a, b = by_letter["A"], by_letter["B"]
    latency = by_letter.get("P", b)
    cpu = result["cpu"]
    print()
    print(f"bare paho / broker (R/A): {result['ratio_paho_to_broker']:.2f}")
    print(f"service / broker   (B/A): {result['ratio_service_to_broker']:.2f}")
    print(f"service / paho     (B/R): {result['ratio_service_to_paho']:.2f}")
    print(f"service / COPY     (B/C): {result['ratio_service_to_copy']:.2f}")
    print(
        f"CPU per message (µs): broker {fmt(cpu['broker_us_per_msg_a'], '.1f')} (phase A),"
        f" bare paho {fmt(cpu['paho_us_per_msg_r'], '.1f')} (R),"
        f" service {fmt(cpu['service_us_per_msg_b'], '.1f')} (B),"
        f" PostgreSQL per row {fmt(cpu['db_us_per_row_c'], '.2f')} (C)"
        f" / {fmt(cpu['db_us_per_row_b'], '.2f')} (B)"
    )
    print(
        f"  also per message (µs): mosquitto_sub {fmt(cpu['mosquitto_sub_us_per_msg_a'], '.1f')}"
        f" (A); broker {fmt(cpu['broker_us_per_msg_r'], '.1f')} (R),"
        f" {fmt(cpu['broker_us_per_msg_b'], '.1f')} (B);"
        f" PostgreSQL {fmt(cpu['db_us_per_msg_b'], '.1f')} (B);"
        f" publishers {fmt(cpu['publisher_us_per_msg_b'], '.1f')} (B)"
    )
    print(
        f"cores needed at 0.3 × A = {cpu['target_msg_per_s']:,.0f} msg/s: "
        f"{fmt(cpu['cores_at_target'], '.2f')} of {os.cpu_count()} (an estimate from this run's"
        f" measured CPU per message: broker {fmt(cpu['broker_us_per_msg_a'], '.1f')} (A)"
        f" + service {fmt(cpu['service_us_per_msg_b'], '.1f')} (B)"
        f" + PostgreSQL {fmt(cpu['db_us_per_msg_b'], '.1f')} (B)"
        f" + publishers {fmt(cpu['publisher_us_per_msg_b'], '.1f')} (B)"
        f" = {fmt(cpu['pipeline_us_per_msg'], '.1f')} µs/msg)"
    )
    print(f"check: {result['check']}")
    print(
        f"load at start: {' '.join(result['load_start'])}, at end: {' '.join(result['load_end'])};"
        f" cores busy before start: {result['cores_busy_before']:.2f}"
    )
    if b["parts_us_per_msg"]:
        parts = b["parts_us_per_msg"]
        print(
            "service CPU per message by part (µs, phase B): "
            + ", ".join(f"{k} {v:.1f}" for k, v in parts.items())
            + f"; total {sum(v for k, v in parts.items() if not k.startswith('gc')):.1f}"
        )
    tutorial = result["ratio_service_to_tutorial"]
    if tutorial is not None:
        print(f"service / tutorial bridge, rows/s (B/T): {tutorial:.1f}")
    print(
        "service rows/s / bare paho msg/s (B/R):"
        f" {result['ratio_service_rows_to_paho_messages']:.2f}"
    )
    c = by_letter["C"]
    service_us = cpu["service_us_per_msg_b"]
    targets: list[tuple[str, bool | None]]
    if result["args"]["batch"] == 1:
        targets = [
            (
                "rows/s >= 0.7 x bare paho msg/s",
                result["ratio_service_rows_to_paho_messages"] >= 0.7,
            ),
            (">= 8 x the tutorial bridge", None if tutorial is None else tutorial >= 8),
        ]
    else:
        targets = [
            ("service CPU <= 130 µs per message", service_us is not None and service_us <= 130),
            (
                ">= 80,000 samples/s (where raw COPY >= 250,000 rows/s)",
                None if c["samples_per_s"] < 250_000 else b["samples_per_s"] >= 80_000,
            ),
        ]
    targets.append((f"p99 < 500 ms ({latency['name']})", (latency["p99_ms"] or 1e9) < 500))
    for text, ok in targets:
        verdict = "not judged (condition not met)" if ok is None else "MET" if ok else "MISSED"
        print(f"target {text}: {verdict}")
    print(f"A raw rate: {a['msg_per_s']:,.0f} msg/s")
    print("RESULT " + json.dumps(result))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_publish"]:
        return publisher_main()
    if argv[:1] == ["_service"]:
        return service_main()
    if argv[:1] == ["_paho"]:
        return paho_main()
    if argv[:1] == ["_tutorial"]:
        return tutorial_main()
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--beds", type=int, default=2000)
    p.add_argument("--messages", type=int, default=50_000, help="messages in the A/B stream")
    p.add_argument("--batch", type=int, default=10, help="samples a message")
    p.add_argument("--publishers", type=int, default=4, help="publisher processes")
    p.add_argument("--window", type=int, default=1000, help="unacked QoS 1 messages a publisher")
    p.add_argument("--rate", type=float, default=5000.0, help="paced phase, msg/s (0: skip)")
    p.add_argument("--paced-seconds", type=float, default=10.0)
    p.add_argument("--timeout", type=float, default=60.0, help="per phase, seconds")
    p.add_argument(
        "--py-spy",
        default=shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"),
        help="py-spy binary for --profile",
    )
    p.add_argument("--broker-repeats", type=int, default=3, help="runs of phase A (median)")
    p.add_argument(
        "--tutorial-messages", type=int, default=3000, help="messages of phase T (0: skip it)"
    )
    p.add_argument(
        "--profile", type=Path, help="write py-spy's raw stacks of the service in phase B here"
    )
    args = p.parse_args(argv)
    if not 0 < args.window < 65_535:
        p.error("--window must be between 1 and 65,534 (MQTT packet ids are 16-bit)")
    if args.broker_repeats < 1 or args.beds < 1 or args.messages < args.publishers:
        p.error("need broker-repeats >= 1, beds >= 1, messages >= publishers")
    if not 1 <= args.batch <= 120:
        p.error("need 1 <= batch <= 120 (the service's max_batch_samples)")
    report(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
