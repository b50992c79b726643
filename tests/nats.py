"""NATS servers of their own for tests: one JetStream node, or a cluster of three, on free ports,
plain or as across machines (TLS with a private CA, users and passwords).

Debian's nats-server (2.9.10), as `NatsServer` in tests/support.py runs it. Never the machine's
own instance on 4222: these tests stop and kill servers. Each server keeps its JetStream store in
the test's directory, so a restarted node comes back with its data.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support import NATS_SERVER, NatsServer, PrivateCA

__all__ = ["NATS_SERVER", "NatsServer", "nats_servers"]


@contextmanager
def nats_servers(
    directory: Path,
    count: int = 1,
    *,
    ca: PrivateCA | None = None,
    users: Mapping[str, str] | None = None,
    mqtt: bool = False,
) -> Iterator[list[NatsServer]]:
    """`count` servers (a cluster when more than one), ready for JetStream, all ended afterwards,
    also on failure. `ca`, `users`, `mqtt`: as for NatsServer."""
    if not Path(NATS_SERVER).exists():
        pytest.skip("nats-server is not installed (Debian's nats-server package)")
    servers = [
        NatsServer(directory / f"n{i + 1}", ca, users, name=f"n{i + 1}", mqtt=mqtt)
        for i in range(count)
    ]
    if count > 1:
        for server in servers:
            server.routes = [s.cluster_port for s in servers if s is not server]
    try:
        for server in servers:
            server.start(healthy=False)
        for server in servers:
            server.wait_healthy()
        yield servers
    finally:
        for server in servers:
            server.stop()
