"""The composition root: what it refuses at start, before it takes a message."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys

import pytest

from bedwatch.service import Service
from bedwatch.settings import Settings
from ingest.db import DatabaseUnavailable
from tests.support import free_port, service_env, unique_prefix


def bedwatch_run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`bedwatch run` for a test that expects it to refuse to start: its exit and its output."""
    command = [sys.executable, "-m", "bedwatch.cli", "run"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_a_busy_http_port_is_a_clear_error_before_any_message_is_taken(database_url: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        env = service_env(
            BEDWATCH_DATABASE_URL=database_url,
            BEDWATCH_MQTT_URL="mqtt://127.0.0.1:1883",
            BEDWATCH_TOPIC_PREFIX=unique_prefix(),
            BEDWATCH_MQTT__CLIENT_ID=f"bedwatch-busy-{free_port()}",
            BEDWATCH_HTTP_ADDR=f"127.0.0.1:{port}",
        )
        run = bedwatch_run(env)
    assert run.returncode == 2, run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last == f"bedwatch: http: http.addr 127.0.0.1:{port}: Address already in use"
    assert "MQTT connected" not in run.stderr  # it never took a message


def test_a_refused_database_is_one_line_and_exit_1() -> None:
    port = free_port()  # nothing listens there
    env = service_env(
        BEDWATCH_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{port}/bedwatch",
        BEDWATCH_MQTT_URL="mqtt://127.0.0.1:1883",
        BEDWATCH_TOPIC_PREFIX=unique_prefix(),
        BEDWATCH_HTTP_ADDR=f"127.0.0.1:{free_port()}",
    )
    run = bedwatch_run(env)
    assert run.returncode == 1, run.stderr
    [line] = run.stderr.strip().splitlines()  # one line, no continuation
    assert f"cannot connect to postgresql://postgres@127.0.0.1:{port}/bedwatch:" in line
    assert "Connection refused" in line


def test_a_start_the_database_refused_leaves_no_detector_worker_behind() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/bedwatch"  # nothing listens there
    service = Service(Settings().replace("database", url=url))
    with pytest.raises(DatabaseUnavailable):
        asyncio.run(service.run())
    pid = service.detectors.pid
    assert pid is not None  # it was started, before the database was tried
    # Ended at once, not asked to finish (it would first import the detectors, seconds here)...
    assert service.detectors.exitcode == -signal.SIGKILL
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # ...and reaped
