"""Alert tests' setup: a site in a fresh database, a fake clock, the engine on the test's loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import psycopg

from alerts.component import Alerts
from alerts.engine import Engine
from bedwatch.migrate import migrate
from bedwatch.settings import Settings
from bedwatch.site import parse_site
from detectors.findings import Finding, FindingKind, Severity
from ingest.records import DeviceId, ResidentId
from ingest.registry import store_site

# 10:00 in Shanghai: outside quiet hours.
DAY_MS = int(datetime(2025, 11, 26, 2, 0, tzinfo=UTC).timestamp() * 1000)
RESIDENT = ResidentId("r-0101")


class FakeClock:
    def __init__(self, start_ms: int = DAY_MS) -> None:
        self.now_ms = start_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, seconds: float) -> None:
        self.now_ms += int(seconds * 1000)


def contact(cid: str, role: str, channels: list[str], language: str = "zh") -> str:
    quoted = ", ".join(f'"{c}"' for c in channels)
    return (
        f'[[contacts]]\nid = "{cid}"\nname = "{cid}"\nrole = "{role}"\n'
        f'language = "{language}"\nchannels = [{quoted}]\n'
    )


def site(contacts: list[str], team: list[str], alerts_toml: str = "") -> str:
    resident = (
        '[[residents]]\nid = "r-0101"\nname = "王阿婆"\nroom = "新虹 3-1-201"\n'
        'devices = [{ id = "mat-0101", kind = "mattress" },'
        ' { id = "band-0101", kind = "wristband" }]\n'
        f"care_team = [{', '.join(repr(c).replace(chr(39), chr(34)) for c in team)}]\n"
    )
    return alerts_toml + "\n" + "\n".join(contacts) + "\n" + resident


def prepare(database_url: str, site_text: str, **alerts: Any) -> Settings:
    settings = Settings().replace("database", url=database_url, create_database=False)
    settings = settings.replace("alerts", serve_http=False, **alerts)
    migrate(settings)
    with psycopg.connect(database_url) as conn, conn.transaction():
        store_site(conn, parse_site(site_text))
    return settings


@contextlib.asynccontextmanager
async def running(
    settings: Settings,
    clock: FakeClock,
    send_command: Callable[[str, bytes], None] | None = None,
) -> AsyncIterator[tuple[Alerts, Engine]]:
    alerts = Alerts(
        settings.alerts,
        database_url=settings.database.url,
        clock=clock,
        send_command=send_command,
    )
    async with alerts as engine:
        sender = asyncio.create_task(alerts.sender.run())
        try:
            yield alerts, engine
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender


def finding(
    kind: FindingKind,
    severity: Severity,
    at_ms: int,
    *,
    cleared: bool = False,
    device: str = "band-0101",
    **evidence: object,
) -> Finding:
    return Finding(
        RESIDENT, kind, severity, at_ms, at_ms, cleared, DeviceId(device), dict(evidence)
    )


def sos(at_ms: int, presses: int = 1) -> Finding:
    return finding(FindingKind.SOS, Severity.CRITICAL, at_ms, presses=presses)


async def step(alerts: Alerts, engine: Engine) -> None:
    """One scheduler pass, and every send it starts, finished."""
    await engine.run_due()
    await alerts.sender.idle()
