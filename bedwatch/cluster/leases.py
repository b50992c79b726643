"""Partition leases in PostgreSQL, with a fencing epoch, and the live workers they go to.

A worker takes a partition by raising its epoch (`acquire`), keeps it by renewing well before the
lease runs out (`renew`), and writes for it only through `checkpoint`, which commits the stream
position and detector state in the caller's transaction and refuses (Fenced) when the epoch has
moved on: a worker paused past its lease, whose partition another worker took, changes nothing,
not even the rows written before the refusal in the same transaction.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from ingest.store import WriteAborted

AsyncConn = psycopg.AsyncConnection[tuple[Any, ...]]
# Told at the commit of findings, for `bedwatch engine` (which looks every second in any case).
FINDINGS_CHANNEL = "bedwatch_findings"


class Fenced(WriteAborted):
    """The partition's epoch has moved on: another worker owns it now."""

    def __init__(self, partition: int, epoch: int) -> None:
        super().__init__(f"partition {partition}: epoch {epoch} superseded")
        self.partition = partition
        self.epoch = epoch


# Rows of several partitions are always locked in partition order (a checkpoint writes them in
# that order too), so that renewals, acquisitions and checkpoints never deadlock.
def _lock_in_order(condition: str) -> str:
    return (
        f"SELECT partition FROM partition_leases WHERE partition = ANY(%(ps)s) AND {condition}"
        " ORDER BY partition FOR UPDATE"
    )


_FREE_OR_OURS = "(owner IS NULL OR owner = %(me)s OR expires_at IS NULL OR expires_at < now())"


@dataclass(frozen=True, slots=True)
class Lease:
    partition: int
    epoch: int
    position: int  # the telemetry stream sequence applied so far
    events_at: int  # the event stream sequence applied so far
    state: bytes | None  # the partition's detector state at that position


@dataclass(frozen=True, slots=True)
class PartitionRow:
    """One partition as `bedwatch cluster status` shows it."""

    partition: int
    owner: str | None
    epoch: int
    expires_at: datetime | None
    position: int
    events_at: int
    moved_at: datetime | None
    updated_at: datetime


async def join(conn: AsyncConn, worker: str, info: Mapping[str, object]) -> None:
    await conn.execute(
        "INSERT INTO cluster_workers (id, info) VALUES (%s, %s) ON CONFLICT (id) DO UPDATE"
        " SET started_at = now(), heartbeat_at = now(), leaving = false, info = excluded.info",
        (worker, json.dumps(dict(info))),
    )


async def heartbeat(conn: AsyncConn, worker: str) -> None:
    await conn.execute("UPDATE cluster_workers SET heartbeat_at = now() WHERE id = %s", (worker,))


async def leave(conn: AsyncConn, worker: str) -> None:
    """A graceful stop begins: the others stop counting this worker in."""
    await conn.execute("UPDATE cluster_workers SET leaving = true WHERE id = %s", (worker,))


async def forget(conn: AsyncConn, worker: str) -> None:
    await conn.execute("DELETE FROM cluster_workers WHERE id = %s", (worker,))


async def live_workers(conn: AsyncConn, ttl_s: float) -> list[str]:
    """Workers heard within ttl_s and not leaving, by id."""
    cur = await conn.execute(
        "SELECT id FROM cluster_workers WHERE NOT leaving"
        " AND heartbeat_at > now() - %s * interval '1 second' ORDER BY id",
        (ttl_s,),
    )
    return [str(w) for (w,) in await cur.fetchall()]


async def acquire(
    conn: AsyncConn, partitions: Sequence[int], worker: str, ttl_s: float
) -> list[Lease]:
    """Take those of the partitions that are free, whose lease ran out, or that are already
    ours (a restart of the same worker id fences its former self too); the others are held by
    another worker. One statement for all of them."""
    if not partitions:
        return []
    await conn.execute(
        "INSERT INTO partition_leases (partition) SELECT unnest(%s::int[]) ON CONFLICT DO NOTHING",
        (list(partitions),),
    )
    cur = await conn.execute(
        f"WITH locked AS ({_lock_in_order(_FREE_OR_OURS)})"
        " UPDATE partition_leases l SET"
        " moved_at = CASE WHEN l.owner IS DISTINCT FROM %(me)s THEN now() ELSE l.moved_at END,"
        " owner = %(me)s, epoch = l.epoch + 1,"
        " expires_at = now() + %(ttl)s * interval '1 second', updated_at = now()"
        " FROM locked WHERE l.partition = locked.partition"
        " RETURNING l.partition, l.epoch, l.position, l.events_at, l.state",
        {"ps": list(partitions), "me": worker, "ttl": ttl_s},
    )
    return sorted(
        (
            Lease(int(p), int(e), int(pos), int(ev), st)
            for p, e, pos, ev, st in await cur.fetchall()
        ),
        key=lambda lease: lease.partition,
    )


async def renew(conn: AsyncConn, worker: str, held: Mapping[int, int], ttl_s: float) -> set[int]:
    """Extend the leases still ours under the epochs we hold them by; the rest are lost."""
    if not held:
        return set()
    cur = await conn.execute(
        f"WITH locked AS ({_lock_in_order('owner = %(me)s AND expires_at > now()')})"
        " UPDATE partition_leases l SET expires_at = now() + %(ttl)s * interval '1 second'"
        " FROM locked, unnest(%(ps)s::int[], %(epochs)s::bigint[]) AS h(partition, epoch)"
        " WHERE l.partition = locked.partition AND l.partition = h.partition"
        "  AND l.epoch = h.epoch"
        " RETURNING l.partition",
        {"ttl": ttl_s, "ps": list(held), "epochs": list(held.values()), "me": worker},
    )
    return {int(p) for (p,) in await cur.fetchall()}


async def release(conn: AsyncConn, partition: int, worker: str, epoch: int) -> bool:
    """Give the partition up (after its last checkpoint) so the next owner need not wait."""
    cur = await conn.execute(
        "UPDATE partition_leases SET owner = NULL, expires_at = NULL, updated_at = now()"
        " WHERE partition = %s AND owner = %s AND epoch = %s",
        (partition, worker, epoch),
    )
    return cur.rowcount == 1


async def release_all(conn: AsyncConn, worker: str, held: Mapping[int, int]) -> set[int]:
    """Give up these partitions (partition -> the epoch held) in one statement; those released."""
    if not held:
        return set()
    cur = await conn.execute(
        f"WITH locked AS ({_lock_in_order('owner = %(me)s')})"
        " UPDATE partition_leases l SET owner = NULL, expires_at = NULL, updated_at = now()"
        " FROM locked, unnest(%(ps)s::int[], %(epochs)s::bigint[]) AS h(partition, epoch)"
        " WHERE l.partition = locked.partition AND l.partition = h.partition"
        "  AND l.epoch = h.epoch"
        " RETURNING l.partition",
        {"me": worker, "ps": list(held), "epochs": list(held.values())},
    )
    return {int(p) for (p,) in await cur.fetchall()}


def checkpoint(
    cur: psycopg.Cursor[tuple[Any, ...]],
    partition: int,
    worker: str,
    epoch: int,
    *,
    position: int,
    state: bytes,
) -> None:
    """In the caller's transaction, with the rows the input up to `position` produced: record
    how far the partition's input got and its detector state, or raise Fenced (the whole
    transaction is abandoned: a stale worker's rows are never stored)."""
    cur.execute(
        "UPDATE partition_leases SET position = %s, state = %s, updated_at = now()"
        " WHERE partition = %s AND owner = %s AND epoch = %s",
        (position, state, partition, worker, epoch),
    )
    if cur.rowcount != 1:
        raise Fenced(partition, epoch)


async def events_checkpoint(
    conn: AsyncConn, partition: int, worker: str, epoch: int, events_at: int, *, notify: bool
) -> None:
    """The same for the partition's emergency lane, whose findings commit on their own;
    `notify`: tell the alert engine at the commit."""
    if notify:
        await conn.execute("SELECT pg_notify(%s, '')", (FINDINGS_CHANNEL,))
    cur = await conn.execute(
        "UPDATE partition_leases SET events_at = greatest(events_at, %s), updated_at = now()"
        " WHERE partition = %s AND owner = %s AND epoch = %s",
        (events_at, partition, worker, epoch),
    )
    if cur.rowcount != 1:
        raise Fenced(partition, epoch)


async def record_fenced(conn: AsyncConn, partition: int, worker: str, epoch: int) -> None:
    await conn.execute(
        "INSERT INTO partition_fenced (partition, worker, epoch) VALUES (%s, %s, %s)",
        (partition, worker, epoch),
    )


async def partitions(conn: AsyncConn) -> list[PartitionRow]:
    cur = await conn.execute(
        "SELECT partition, owner, epoch, expires_at, position, events_at, moved_at, updated_at"
        " FROM partition_leases ORDER BY partition"
    )
    return [PartitionRow(*row) for row in await cur.fetchall()]


async def held_by(conn: AsyncConn, worker: str) -> dict[int, int]:
    """The partitions the worker holds now (lease running), with their epochs."""
    cur = await conn.execute(
        "SELECT partition, epoch FROM partition_leases WHERE owner = %s AND expires_at > now()",
        (worker,),
    )
    return {int(p): int(e) for p, e in await cur.fetchall()}


def moved(before: Mapping[int, str], after: Mapping[int, str]) -> Sequence[int]:
    """The partitions whose owner differs between two assignments."""
    return sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
