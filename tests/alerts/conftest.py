"""Real notification receivers for the alert tests: a local SMTP server and an HTTP server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.alerts.receivers import HttpReceiver, SmtpReceiver


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    with SmtpReceiver() as receiver:
        yield receiver


@pytest.fixture
def http() -> Iterator[HttpReceiver]:
    with HttpReceiver() as receiver:
        yield receiver
