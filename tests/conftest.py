"""Fixtures shared by all tests: a fresh database and a unique topic prefix per test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import SHARED_BROKER, fresh_database, unique_prefix


@pytest.fixture
def database_url() -> Iterator[str]:
    with fresh_database() as url:
        yield url


@pytest.fixture
def prefix() -> str:
    return unique_prefix()


@pytest.fixture
def broker_url() -> str:
    """The machine's shared Mosquitto; tests on it keep to their own topic prefix."""
    return SHARED_BROKER


# Under pytest-xdist (`-n`, in pyproject's addopts): the tests of each of these modules run on one
# worker together, so its module fixture is made once: the drills (one fixture runs them all, at
# once), the simulated nights that several tests read, and the modules that share a browser, a
# served month, a private CA and broker, built PDFs or a database. Every other test goes to
# whichever worker is free. Groups go out first, the largest first, so the drills start at once
# on a worker of their own. (The xdist_group mark would say the same, but `--dist loadgroup` no
# longer groups on pytest 9.2: it rewrites node ids, which pytest now ignores.)
TOGETHER = (
    "tests/test_drills.py",
    "tests/bedwatch/test_cluster_drills.py",
    "tests/simulators/test_contract.py",
    "tests/simulators/test_night.py",
    "tests/console/test_browser.py",
    "tests/console/test_operations.py",
    "tests/ingest/test_tls.py",
    "tests/reports/test_operations.py",
    "tests/reports/test_sleep.py",
    "tests/deploy/test_grafana.py",
    "tests/deploy/test_mosquitto.py",
)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") != "load":
        return None  # another --dist was asked for: xdist's own scheduler
    from xdist.scheduler import LoadScopeScheduling

    class Scheduler(LoadScopeScheduling):  # type: ignore[misc]  # xdist has no types
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module in TOGETHER else nodeid

    return Scheduler(config, log)
