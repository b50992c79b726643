"""`bedwatch cluster status`: workers, partitions, lease epochs, and how far behind each is."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from bedwatch.cluster import leases
from bedwatch.cluster.bridge import ROOT, BridgeSettings, close_quietly, connect_nats
from bedwatch.cluster.settings import ClusterSettings, shown

LAG_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class WorkerRow:
    id: str
    heartbeat_at: datetime
    leaving: bool
    info: dict[str, Any]


@dataclass(slots=True)
class Report:
    workers: list[WorkerRow]
    partitions: list[leases.PartitionRow]
    lag: dict[int, int] = field(default_factory=dict)  # messages in the stream not yet applied
    lag_error: str | None = None


async def gather(database_url: str, cluster: ClusterSettings) -> Report:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT id, heartbeat_at, leaving, info FROM cluster_workers ORDER BY id"
        )
        workers = [WorkerRow(str(i), at, bool(gone), dict(info)) for i, at, gone, info in
                   await cur.fetchall()]  # fmt: skip
        partitions = await leases.partitions(conn)
    report = Report(workers, partitions)
    try:
        async with asyncio.timeout(LAG_TIMEOUT_S):
            report.lag = await stream_lag(BridgeSettings.of(cluster), partitions)
    except Exception as exc:
        report.lag_error = f"lag unknown: NATS at {shown(cluster.nats_url)}: {exc!r}"
    return report


async def stream_lag(shared: BridgeSettings, rows: list[leases.PartitionRow]) -> dict[int, int]:
    """Per partition, the messages in the stream past its committed position: a pull consumer
    from there is asked how much it has pending, then removed."""
    nc = await connect_nats(shared, "bedwatch-cluster-status")
    try:
        js = nc.jetstream()
        lag: dict[int, int] = {}
        for row in rows:
            config = ConsumerConfig(
                filter_subject=f"{ROOT}.{row.partition}.>",
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=row.position + 1,
                ack_policy=AckPolicy.NONE,
                inactive_threshold=30.0,
            )
            info = await js.add_consumer(shared.stream, config)
            lag[row.partition] = int(info.num_pending or 0)
            with contextlib.suppress(Exception):
                await js.delete_consumer(shared.stream, info.name)
        return lag
    finally:
        await close_quietly(nc)


def render(report: Report, now: datetime, *, per_partition: bool) -> str:
    lines = [f"workers: {len(report.workers)}"]
    owned: dict[str | None, int] = {}
    for row in report.partitions:
        live = row.owner is not None and row.expires_at is not None and row.expires_at > now
        owned[row.owner if live else None] = owned.get(row.owner if live else None, 0) + 1
    for w in report.workers:
        age = (now - w.heartbeat_at).total_seconds()
        where = " ".join(f"{k}={v}" for k, v in sorted(w.info.items()))
        state = " leaving" if w.leaving else ""
        lines.append(
            f"  {w.id:<24} heartbeat {age:6.1f} s ago  partitions {owned.get(w.id, 0):>3}"
            f"  {where}{state}"
        )
    epochs = [row.epoch for row in report.partitions]
    lines.append(
        f"partitions: {len(report.partitions)} known, {len(report.partitions) - owned.get(None, 0)}"
        f" owned, {owned.get(None, 0)} free or expired"
        + (f"; epochs {min(epochs)}..{max(epochs)}" if epochs else "")
    )
    if report.lag_error:
        lines.append(report.lag_error)
    elif report.lag:
        worst = max(report.lag, key=lambda p: report.lag[p])
        lines.append(
            f"lag: {sum(report.lag.values())} messages in all, most {report.lag[worst]}"
            f" on partition {worst}"
        )
    if per_partition:
        lines.append("partition  owner                     epoch   position  lag       moved")
        for row in report.partitions:
            moved = "-" if row.moved_at is None else row.moved_at.strftime("%m-%d %H:%M:%S")
            lag = report.lag.get(row.partition)
            lines.append(
                f"{row.partition:>9}  {row.owner or '-':<24} {row.epoch:>6} {row.position:>10}"
                f"  {'?' if lag is None else lag:<8}  {moved}"
            )
    return "\n".join(lines) + "\n"
