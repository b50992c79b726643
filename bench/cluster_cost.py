"""Past one machine, what it costs: throughput and CPU per message of each role, with 1, 2 and 3
workers, in one run on this machine (all on loopback: the broker, NATS, PostgreSQL and the
publishers share its cores, so read the ratios and the CPU per message, not the machine's rate).

For each worker count: a private Mosquitto and NATS, a fresh database, `bedwatch bridge`,
N x `bedwatch worker` as processes; the residents' pads publish 10-sample telemetry messages
(QoS 1) as fast as the broker takes them; timed from the first publish to the last sample
stored. CPU seconds per process from /proc. Then the arithmetic for a city.

    uv run python bench/cluster_cost.py [--residents 200] [--messages 20000] [--workers 1 2 3]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bedwatch.migrate import migrate  # noqa: E402
from bedwatch.site import parse_site  # noqa: E402
from ingest.registry import store_site  # noqa: E402
from tests.nats import nats_servers  # noqa: E402
from tests.support import Mosquitto, free_port, fresh_database, settings_for  # noqa: E402

PREFIX = "bedwatch/v1"
SAMPLES = 10  # per message: a pad's 10 s of 1 Hz samples
CLK_TCK = os.sysconf("SC_CLK_TCK")
CITY_BEDS = 200_000


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def site(residents: int) -> str:
    return "\n".join(
        f'[[residents]]\nid = "r-{i:05d}"\nname = "R{i}"\n'
        f'devices = [{{ id = "mat-{i:05d}", kind = "mattress" }}]\n'
        for i in range(residents)
    )


def publish(port: int, residents: int, messages: int) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-pads")
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    t0 = (int(time.time()) - 86_400) * 1000
    infos = []
    for n in range(messages):
        i, slot = n % residents, n // residents
        start = t0 + slot * SAMPLES * 1000
        samples = [
            {"ts": start + k * 1000, "hr": 60, "rr": 14, "move": 0, "occ": 1, "sq": 90}
            for k in range(SAMPLES)
        ]
        body = json.dumps({"seq": slot, "samples": samples})
        infos.append(client.publish(f"{PREFIX}/mat-{i:05d}/telemetry", body, qos=1))
    for info in infos:
        info.wait_for_publish(60)
    client.disconnect()
    client.loop_stop()


def stored(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM mattress_samples").fetchone()
    return int(row[0]) if row else 0


def one_run(workers: int, residents: int, messages: int, folder: Path) -> dict[str, float]:
    broker = Mosquitto(folder / "mqtt")
    broker.start()
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        with fresh_database() as url, nats_servers(folder / "nats") as [server]:
            migrate(settings_for(url, "mqtt://127.0.0.1:1", PREFIX))
            with psycopg.connect(url) as conn, conn.transaction():
                store_site(conn, parse_site(site(residents)))
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "BEDWATCH_DATABASE_URL": url,
                "BEDWATCH_MQTT_URL": broker.url,
                "BEDWATCH_NATS_URL": server.url,
                "BEDWATCH_MQTT__CLIENT_ID": "bench",
                "BEDWATCH_HTTP_ADDR": f"127.0.0.1:{free_port()}",
            }

            def start(name: str, *args: str) -> None:
                with (folder / f"{name}.log").open("ab") as log:
                    processes[name] = subprocess.Popen(
                        [sys.executable, "-m", "bedwatch.cli", *args],
                        env=env, stdout=log, stderr=log,
                    )  # fmt: skip

            start("bridge", "bridge")
            for w in range(workers):
                start(f"worker-{w}", "worker", "--id", f"w{w}")
            time.sleep(8 + 2 * workers)  # imports, joins, partitions taken
            before = {name: cpu_s(p.pid) for name, p in processes.items()}
            began = time.monotonic()
            publish(broker.port, residents, messages)
            published = time.monotonic() - began
            want = messages * SAMPLES
            while stored(url) < want and time.monotonic() - began < 600:
                time.sleep(0.2)
            took = time.monotonic() - began
            after = {name: cpu_s(p.pid) for name, p in processes.items()}
            got = stored(url)
    finally:
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        broker.stop()
    bridge_cpu = after["bridge"] - before["bridge"]
    worker_cpu = sum(after[n] - before[n] for n in after if n.startswith("worker"))
    return {
        "workers": workers,
        "stored": got,
        "published_s": published,
        "took_s": took,
        "msg_per_s": messages / took,
        "samples_per_s": got / took,
        "bridge_us_per_msg": bridge_cpu / messages * 1e6,
        "worker_us_per_msg": worker_cpu / messages * 1e6,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--residents", type=int, default=200)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()
    rows = []
    load = Path("/proc/loadavg").read_text().split()[:3]
    for n in args.workers:
        with tempfile.TemporaryDirectory(prefix="bedwatch-cost-") as folder:
            rows.append(one_run(n, args.residents, args.messages, Path(folder)))
    print(f"load average at the start: {' '.join(load)}; {args.messages:,} messages of {SAMPLES}"
          f" samples from {args.residents} pads")  # fmt: skip
    print(
        "| workers | stored samples | msg/s | samples/s | bridge CPU µs/msg | workers' CPU µs/msg |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['workers']:.0f} | {r['stored']:,.0f} | {r['msg_per_s']:,.0f}"
            f" | {r['samples_per_s']:,.0f} | {r['bridge_us_per_msg']:.0f}"
            f" | {r['worker_us_per_msg']:.0f} |"
        )
    # A city: every pad sends one 10-sample message each 10 s.
    rate = CITY_BEDS / 10
    bridge = min(r["bridge_us_per_msg"] for r in rows) * rate / 1e6
    work = min(r["worker_us_per_msg"] for r in rows) * rate / 1e6
    print(
        f"\n{CITY_BEDS:,} beds at one message per 10 s = {rate:,.0f} msg/s: bridges need"
        f" {bridge:.1f} cores, workers {work:.1f} cores (at the CPU per message measured here;"
        " NATS, PostgreSQL and the broker on top)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
