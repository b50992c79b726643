"""`bedwatch engine`: the alert engine, the console and the API for workers on JetStream.

Workers commit their findings to the `findings` table (an emergency at once, with a NOTIFY); the
engine takes every finding it has not handled, in order, as one `bedwatch run` takes up what a
crash left: woken by the notification, and every POLL_S in case one was missed. Handing a finding
over twice pages nobody twice (the engine marks it handled in the transaction that acts on it),
so two engines may run for availability: each finding is acted on once, the outbox is claimed
row by row, and a digest is made once per contact and day.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import psycopg

from alerts.component import AlertsComponent
from alerts.host import Web
from alerts.store import unhandled_findings
from bedwatch.cluster.leases import FINDINGS_CHANNEL
from bedwatch.http import listen, make_app, serve
from bedwatch.settings import Settings
from ingest.mqtt import MqttSession
from ingest.records import EpochMs

log = logging.getLogger(__name__)

POLL_S = 1.0
BATCH = 500


class EngineHost:
    """What the alerts component needs of its host, without ingest: a clock, an MQTT session to
    send commands to wristbands (`sos_ack`), and the HTTP server."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.mqtt = MqttSession(
            settings.mqtt, _ignore, client_id=f"{settings.mqtt.client_id}-engine", channels=()
        )
        self.http_socket = listen(settings.http.addr) if settings.alerts.serve_http else None

    def clock(self) -> EpochMs:
        return EpochMs(int(time.time() * 1000))

    def send_command(self, device_id: str, payload: bytes) -> None:
        self.mqtt.publish(f"{self.settings.mqtt.topic_prefix}/{device_id}/cmd", payload)

    def database_away(self) -> bool:
        return False  # this host writes nothing of its own: the workers keep the findings

    async def serve_http(self, web: Web) -> None:
        assert self.http_socket is not None
        app = make_app(web, broker_up=self.mqtt.connected.is_set)
        await serve(app, self.http_socket, closing=web.closing)


def _ignore(*_: object) -> None:
    """The engine subscribes to nothing."""


async def follow_findings(component: AlertsComponent, database_url: str) -> None:
    """Hand every unhandled finding to the engine, in order, as soon as a worker says it
    committed one (LISTEN), and every POLL_S in any case.

    Each look reads all the unhandled ones, not those after the last id seen: two workers'
    transactions commit in any order, so a finding may appear after one with a higher id."""
    queued: set[int] = set()  # handed over, not yet marked handled
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
                await conn.execute(f"LISTEN {FINDINGS_CHANNEL}")
                while True:
                    found = await unhandled_findings(conn, 0, BATCH)
                    fresh = [item for item in found if item[0] not in queued]
                    if fresh:
                        component.on_stored(fresh)
                    queued = {item[0] for item in found}
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(POLL_S):
                            async for _ in conn.notifies():
                                break
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            log.warning("findings not followed (%s); again in %.0f s", exc, POLL_S)
            await asyncio.sleep(POLL_S)


async def run_engine(settings: Settings, component: AlertsComponent) -> None:
    host = EngineHost(settings)
    host.mqtt.start()
    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(component.run(host), name="alerts")
            tasks.create_task(follow_findings(component, settings.database.url), name="findings")
    finally:
        await asyncio.to_thread(host.mqtt.stop)
