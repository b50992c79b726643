"""NATS servers of their own for tests: one JetStream node, or a cluster of three, on free ports.

Debian's nats-server (2.9.10). Never the machine's own instance on 4222: these tests stop and kill
servers. Each server keeps its JetStream store in the test's directory, so a restarted node comes
back with its data.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support import free_port, wait_for_port

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


class NatsServer:
    def __init__(self, directory: Path, name: str = "n1") -> None:
        self.name = name
        self.directory = directory / name
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.cluster_port = free_port()
        self.routes: list[int] = []
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def config(self) -> str:
        text = (
            f"server_name: {self.name}\n"
            f"listen: 127.0.0.1:{self.port}\n"
            f"jetstream {{ store_dir: {self.directory / 'js'}, max_memory_store: 64MB,"
            " max_file_store: 1GB }\n"
        )
        if self.routes:
            routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in self.routes)
            text += (
                f"cluster {{ name: bw, listen: 127.0.0.1:{self.cluster_port},"
                f" routes: [{routes}] }}\n"
            )
        return text

    def start(self) -> None:
        conf = self.directory / "nats.conf"
        conf.write_text(self.config())
        with (self.directory / "nats.log").open("ab") as log:
            self._proc = subprocess.Popen([NATS_SERVER, "-c", str(conf)], stdout=log, stderr=log)
        wait_for_port(self.port)

    def stop(self, *, kill: bool = False) -> None:
        if self._proc is None:
            return
        self._proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None


@contextmanager
def nats_servers(directory: Path, count: int = 1) -> Iterator[list[NatsServer]]:
    """`count` servers (a cluster when more than one), all ended afterwards, also on failure."""
    if not Path(NATS_SERVER).exists():
        pytest.skip("nats-server is not installed (Debian's nats-server package)")
    servers = [NatsServer(directory, f"n{i + 1}") for i in range(count)]
    if count > 1:
        for server in servers:
            server.routes = [s.cluster_port for s in servers if s is not server]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()
