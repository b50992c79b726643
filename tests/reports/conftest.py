"""One scripted month per test module: the reports only read it, so the modules share nothing."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from bedwatch.migrate import migrate
from bedwatch.settings import Settings
from tests.reports import scripted
from tests.support import fresh_database


@pytest.fixture(scope="module")
def month_url() -> Iterator[str]:
    """A fresh database holding the scripted month (tests/reports/scripted.py)."""
    with fresh_database() as url:
        migrate(Settings().replace("database", url=url, create_database=False))
        with psycopg.connect(url) as conn, conn.transaction():
            scripted.month(conn)
        yield url
