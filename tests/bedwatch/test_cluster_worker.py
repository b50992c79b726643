"""Workers on JetStream: each resident handled by one worker, partitions handed over on join,
leave and death, every sample stored once and every SOS decided once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import nats
import psycopg

from bedwatch.cluster.bridge import (
    RECEIVED_HEADER,
    TOPIC_HEADER,
    BridgeSettings,
    ensure_stream,
    route,
)
from bedwatch.cluster.partitions import assignment
from bedwatch.cluster.worker import Worker, WorkerSettings
from bedwatch.migrate import migrate
from bedwatch.site import parse_site
from ingest.records import DeviceId, ResidentId
from ingest.registry import store_site
from tests.nats import nats_servers
from tests.support import query, settings_for

PREFIX = "bedwatch/v1"
RESIDENTS = 24
T0 = (int(time.time()) - 3600) * 1000  # device time of the first sample: an hour ago


def site() -> str:
    parts = []
    for i in range(RESIDENTS):
        parts.append(
            f'[[residents]]\nid = "r-{i:03d}"\nname = "R{i}"\n'
            f'devices = [{{ id = "mat-{i:03d}", kind = "mattress" }},'
            f' {{ id = "band-{i:03d}", kind = "wristband" }}]\n'
        )
    return "\n".join(parts)


def owners() -> dict[DeviceId, ResidentId | None]:
    found: dict[DeviceId, ResidentId | None] = {}
    for i in range(RESIDENTS):
        found[DeviceId(f"mat-{i:03d}")] = ResidentId(f"r-{i:03d}")
        found[DeviceId(f"band-{i:03d}")] = ResidentId(f"r-{i:03d}")
    return found


async def publish(js: nats.js.JetStreamContext, messages: list[tuple[str, bytes]]) -> None:
    """As the bridge publishes: its subjects, ids and headers."""
    residents = owners()
    for topic, payload in messages:
        routed = route(topic, payload, PREFIX, residents)
        received = str(int(time.time() * 1000))
        headers = {"Nats-Msg-Id": routed.msg_id, TOPIC_HEADER: topic, RECEIVED_HEADER: received}
        await js.publish(routed.subject, payload, headers=headers)


def telemetry(slot: int, hr: int | None = None) -> list[tuple[str, bytes]]:
    """One message of 10 one-second samples per resident, for the given 10-second slot; at
    `hr` beats a minute (35: bradycardia, once it lasts), or each resident's own normal rate."""
    out = []
    for i in range(RESIDENTS):
        start = T0 + slot * 10_000
        rate = 60 + i % 5 if hr is None else hr
        samples = [
            {"ts": start + k * 1000, "hr": rate, "rr": 14, "move": 0, "occ": 1, "sq": 90}
            for k in range(10)
        ]
        body = json.dumps({"seq": slot, "samples": samples}).encode()
        out.append((f"{PREFIX}/mat-{i:03d}/telemetry", body))
    return out


def sos(i: int, at_ms: int) -> tuple[str, bytes]:
    body = json.dumps({"seq": at_ms // 1000, "ts": at_ms, "type": "sos"}).encode()
    return f"{PREFIX}/band-{i:03d}/event", body


@contextlib.asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[asyncio.Task[None]]:
    ready = asyncio.Event()
    task = asyncio.create_task(worker.run(ready))
    try:
        async with asyncio.timeout(30):
            await ready.wait()
        yield task
    finally:
        worker.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)


def prepared(database_url: str) -> None:
    migrate(settings_for(database_url, "mqtt://127.0.0.1:1", "x"))
    with psycopg.connect(database_url) as conn, conn.transaction():
        store_site(conn, parse_site(site()))


def count(database_url: str, table: str, where: str = "true") -> int:
    [(n,)] = query(database_url, f"SELECT count(*) FROM {table} WHERE {where}")
    return int(n)


def owners_now(database_url: str) -> dict[str, int]:
    """Partitions per worker whose lease runs now."""
    rows = query(
        database_url,
        "SELECT owner, count(*) FROM partition_leases WHERE owner IS NOT NULL"
        " AND expires_at > now() GROUP BY 1",
    )
    return {str(o): int(n) for o, n in rows}


async def until(check: object, timeout_s: float = 20.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not await asyncio.to_thread(check):  # type: ignore[arg-type]  # noqa: ASYNC110
            await asyncio.sleep(0.1)


def test_partitions_move_on_join_leave_and_death(database_url: str, tmp_path: Path) -> None:
    prepared(database_url)
    # Leases far longer than the test: every hand-over here is a release, never an expiry.
    fast = WorkerSettings(lease_ttl_s=120.0, rebalance_every_s=0.2, checkpoint_every_s=0.2)

    shares = dict(Counter(assignment(["w-a", "w-b"]).values()))

    with nats_servers(tmp_path) as [server]:
        bridge = BridgeSettings(nats_url=server.url)

        async def scenario() -> None:
            nc = await nats.connect(server.url)
            js = nc.jetstream()
            await ensure_stream(js, bridge)
            a = Worker(database_url, bridge, replace(fast, worker_id="w-a"), prefix=PREFIX)
            b = Worker(database_url, bridge, replace(fast, worker_id="w-b"), prefix=PREFIX)
            async with running(a):
                await until(lambda: owners_now(database_url) == {"w-a": 256})
                await publish(js, [*telemetry(0), sos(3, T0 + 2_000)])
                await until(lambda: count(database_url, "mattress_samples") == RESIDENTS * 10)
                async with running(b):
                    await until(lambda: owners_now(database_url) == shares)
                    await publish(js, [*telemetry(1), sos(5, T0 + 12_000)])
                    await until(lambda: count(database_url, "mattress_samples") == RESIDENTS * 20)
                await until(lambda: owners_now(database_url) == {"w-a": 256})
                await publish(js, telemetry(2))
                await until(lambda: count(database_url, "mattress_samples") == RESIDENTS * 30)
            await nc.close()

        asyncio.run(scenario())
    # Rendezvous hashing: the newcomer takes about half of two workers' partitions.
    assert 90 < shares["w-b"] < 166
    # Every sample once (the primary key would refuse a second), every SOS decided once.
    assert count(database_url, "mattress_samples") == RESIDENTS * 30
    sos_rows = query(
        database_url, "SELECT resident_id FROM findings WHERE kind = 'sos' ORDER BY resident_id"
    )
    assert sos_rows == [("r-003",), ("r-005",)]
    assert query(database_url, "SELECT count(*) FROM partition_fenced") == [(0,)]


def test_a_dead_workers_partitions_are_taken_over_and_nothing_is_lost(
    database_url: str, tmp_path: Path
) -> None:
    """w-b dies (its task cancelled: no checkpoint, no release, no goodbye) while its residents'
    data keeps coming; w-a takes its partitions over once the leases run out, replays from the
    last checkpoints, and stores every sample once, with the findings a fault-free run gives."""
    prepared(database_url)
    fast = WorkerSettings(lease_ttl_s=2.0, rebalance_every_s=0.2, checkpoint_every_s=0.3)
    shares = dict(Counter(assignment(["w-a", "w-b"]).values()))
    minutes = 18  # three minutes of slow heart for every resident

    with nats_servers(tmp_path) as [server]:
        bridge = BridgeSettings(nats_url=server.url)

        async def scenario() -> None:
            nc = await nats.connect(server.url)
            js = nc.jetstream()
            await ensure_stream(js, bridge)
            a = Worker(database_url, bridge, replace(fast, worker_id="w-a"), prefix=PREFIX)
            b = Worker(database_url, bridge, replace(fast, worker_id="w-b"), prefix=PREFIX)
            async with running(a):
                b_task = asyncio.create_task(b.run())
                await until(lambda: owners_now(database_url) == shares)
                for minute in range(minutes // 2):
                    await publish(js, telemetry(minute, hr=35))
                await until(
                    lambda: count(database_url, "mattress_samples") == RESIDENTS * 10 * minutes // 2
                )
                b_task.cancel()  # dies mid-stream: whatever it read since its checkpoint is lost
                with contextlib.suppress(asyncio.CancelledError):
                    await b_task
                for minute in range(minutes // 2, minutes):
                    await publish(js, telemetry(minute, hr=35))
                await until(lambda: owners_now(database_url) == {"w-a": 256})
                await until(
                    lambda: count(database_url, "mattress_samples") == RESIDENTS * 10 * minutes
                )
                await until(
                    lambda: count(database_url, "findings", "kind = 'heart_rate'") >= RESIDENTS
                )
                await asyncio.sleep(1.0)  # a repeat would show now
            await nc.close()

        asyncio.run(scenario())
    assert count(database_url, "mattress_samples") == RESIDENTS * 10 * minutes
    # One bradycardia finding per resident, as without the fault: none lost, none twice.
    rows = query(
        database_url,
        "SELECT resident_id, count(*) FROM findings WHERE kind = 'heart_rate' AND NOT cleared"
        " GROUP BY 1 ORDER BY 1",
    )
    assert rows == [(f"r-{i:03d}", 1) for i in range(RESIDENTS)]
