"""Fixtures shared by all tests: a fresh database and a unique topic prefix per test."""

from __future__ import annotations

from collections.abc import Iterator

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
