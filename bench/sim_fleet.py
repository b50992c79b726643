"""Benchmark: a fleet of simulated beds against Mosquitto; reports rates and CPU per bed-hour."""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from simulators.cli import ProgressLine, summary
from simulators.fleet import FleetOptions
from simulators.night import NightOptions
from simulators.runner import RunConfig, run_fleet
from simulators.site import residents_of

CLK_TCK = os.sysconf("SC_CLK_TCK")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--beds", type=int, default=10_000)
    p.add_argument("--duration", type=float, default=120.0, help="simulated seconds (at 1x)")
    p.add_argument("--speed", type=float, default=1.0)
    p.add_argument("--batch", type=int, default=10)
    p.add_argument("--wristbands", action="store_true", help="a band per bed too (2 connections)")
    p.add_argument(
        "--broker",
        choices=["shared", "own"],
        default="shared",
        help="shared: the machine's Mosquitto at 127.0.0.1:1883; own: a private one "
        "started here with room for more connections",
    )
    p.add_argument("--connect-rate", type=float, default=1000.0)
    p.add_argument("--loops", type=int, default=1)
    args = p.parse_args()
    with broker(args.broker) as (port, pid):
        prefix = f"bench/{uuid.uuid4().hex[:12]}/bedwatch/v1"
        config = RunConfig(
            start_ms=int(time.time() * 1000),
            duration_s=args.duration,
            beds=args.beds,
            wristbands=args.wristbands,
            loops=args.loops,
            night=NightOptions(batch=args.batch),
            transport=FleetOptions(
                port=port, prefix=prefix, speed=args.speed, connect_rate=args.connect_rate
            ),
        )
        load0 = os.getloadavg()
        broker_cpu0 = _proc_cpu_s(pid)
        result = run_fleet(config, progress=ProgressLine(sys.stderr.isatty()), progress_every_s=5)
        broker_cpu = _proc_cpu_s(pid) - broker_cpu0
        print(summary(config, result))
        print(
            f"broker ({args.broker}, pid {pid}) CPU during the run: {broker_cpu:.1f} s; "
            f"load average before {load0[0]:.2f}, after {os.getloadavg()[0]:.2f}; "
            f"simulator max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
        )
        if args.broker == "shared":
            _clear_retained(port, prefix, config)
    return 0


def _proc_cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@contextmanager
def broker(kind: str) -> Iterator[tuple[int, int]]:
    if kind == "shared":
        pid = int(
            subprocess.run(
                ["pgrep", "-o", "mosquitto"], capture_output=True, text=True, check=False
            ).stdout.strip()
            or 0
        )
        yield 1883, pid
        return
    with tempfile.TemporaryDirectory() as tmp:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        conf = Path(tmp) / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "max_connections -1\nmax_queued_messages 100000\n"
        )
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        # It inherits this process's open-file limit (20,000 here, and not raisable without
        # CAP_SYS_RESOURCE): that, not the broker, caps a fleet at ~9,900 beds with wristbands.
        proc = subprocess.Popen([exe, "-c", str(conf)], stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        try:
            yield port, proc.pid
        finally:
            proc.terminate()
            proc.wait(10)


def _clear_retained(port: int, prefix: str, config: RunConfig) -> None:
    """Leave nothing behind in the shared broker: empty retained messages delete the statuses."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"bench-clean-{uuid.uuid4().hex[:8]}"
    )
    client.connect("127.0.0.1", port)
    client.loop_start()
    last = None
    for d in residents_of(config.beds):
        for device in (d.mattress_id, d.wristband_id):
            last = client.publish(f"{prefix}/{device}/status", b"", qos=1, retain=True)
    if last is not None:
        last.wait_for_publish(60)
    client.disconnect()
    client.loop_stop()


if __name__ == "__main__":
    sys.exit(main())
