"""Partitions and leases: who owns what, how much moves, and writes under a stale epoch refused."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from bedwatch.cluster import leases
from bedwatch.cluster.leases import Fenced
from bedwatch.cluster.partitions import PARTITIONS, assignment, fnv1a_32, partition_of
from bedwatch.migrate import migrate
from tests.support import free_port, query, settings_for, wait_for_port


def test_fnv1a_32_matches_the_published_vectors() -> None:
    # From the FNV reference test suite (draft-eastlake-fnv): "", "a", "foobar".
    assert [fnv1a_32(s) for s in (b"", b"a", b"foobar")] == [0x811C9DC5, 0xE40C292C, 0xBF9CF968]


def test_partition_matches_nats_subject_mapping(tmp_path: Path) -> None:
    """NATS's own `partition(256, 1)` subject mapping puts each id where we do, so a bridge, a
    worker and the broker agree (spoken to in NATS's text protocol: no client library needed)."""
    server = shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not Path(server).exists():
        pytest.skip("nats-server is not installed")
    port = free_port()
    config = tmp_path / "nats.conf"
    config.write_text(
        f"listen: 127.0.0.1:{port}\n"
        'mappings: { "bwp.*": "bwq.{{partition(256,1)}}.{{wildcard(1)}}" }\n'
    )
    ids = [f"r-{i:04d}" for i in range(200)] + ["band-0101", "王阿婆"]
    with subprocess.Popen([server, "-c", str(config)], stderr=subprocess.DEVNULL) as nats:
        try:
            wait_for_port(port)
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                reader = sock.makefile("rb")
                reader.readline()  # INFO
                sock.sendall(b'CONNECT {"verbose":false}\r\nSUB bwq.*.* 1\r\n')
                for key in ids:
                    sock.sendall(f"PUB bwp.{key} 0\r\n\r\n".encode())
                sock.sendall(b"PING\r\n")
                got: dict[str, int] = {}
                while len(got) < len(ids):
                    line = reader.readline().decode()
                    if line.startswith("MSG "):
                        _, partition, key = line.split()[1].split(".", 2)
                        got[key] = int(partition)
                        reader.readline()  # the empty payload
        finally:
            nats.terminate()
    assert got == {key: partition_of(key) for key in ids}


def test_residents_spread_over_partitions_and_a_join_moves_a_quarter() -> None:
    spread = Counter(partition_of(f"r-{i:05d}") for i in range(20_000))
    assert len(spread) == PARTITIONS
    assert max(spread.values()) < 2 * 20_000 / PARTITIONS
    three = assignment(["w1", "w2", "w3"])
    four = assignment(["w1", "w2", "w3", "w4"])
    moved = leases.moved(three, four)
    # Only partitions won by the newcomer move, about a quarter of them.
    assert all(four[p] == "w4" for p in moved)
    assert 0.18 * PARTITIONS < len(moved) < 0.32 * PARTITIONS
    shares = Counter(four.values())
    assert min(shares.values()) > 0.15 * PARTITIONS
    # A leave moves only the leaver's partitions.
    two = assignment(["w1", "w3"])
    assert all(three[p] == "w2" for p in leases.moved(three, two))


def write(url: str, value: int, epoch: int, position: int) -> None:
    """A row and w-a's checkpoint of partition 7, in one transaction."""
    with psycopg.connect(url) as conn, conn.transaction(), conn.cursor() as cur:
        cur.execute("INSERT INTO t VALUES (%s)", (value,))
        leases.checkpoint(cur, 7, "w-a", epoch, position=position, state=b"s1")


def test_a_stale_epoch_writes_nothing(database_url: str) -> None:
    migrate(settings_for(database_url, "mqtt://127.0.0.1:1", "x"))

    async def scenario() -> list[str]:
        said: list[str] = []
        a = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
        b = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
        async with a, b:
            await leases.join(a, "w-a", {"pid": 1})
            await leases.join(b, "w-b", {"pid": 2})
            assert await leases.live_workers(a, 10) == ["w-a", "w-b"]
            [first] = await leases.acquire(a, [7], "w-a", ttl_s=60)
            assert first.epoch == 1
            # Held: w-b cannot take it while the lease runs.
            assert await leases.acquire(b, [7], "w-b", ttl_s=5) == []
            await a.execute("CREATE TABLE IF NOT EXISTS t (v int)")
            await asyncio.to_thread(write, database_url, 1, 1, 10)
            await leases.events_checkpoint(a, 7, "w-a", 1, 2, notify=False)
            # w-a stalls past its lease (set to have run out, rather than waited for).
            await a.execute("UPDATE partition_leases SET expires_at = now() - interval '1 second'")
            assert await leases.renew(a, "w-a", {7: 1}, ttl_s=5) == set()
            [second] = await leases.acquire(b, [7], "w-b", ttl_s=5)
            assert (second.epoch, second.position, second.events_at, second.state) == (
                2, 10, 2, b"s1",
            )  # fmt: skip
            try:
                await asyncio.to_thread(write, database_url, 2, 1, 20)
            except Fenced as exc:
                said.append(str(exc))
                await leases.record_fenced(a, 7, "w-a", exc.epoch)
            with pytest.raises(Fenced):
                await leases.events_checkpoint(a, 7, "w-a", 1, 3, notify=False)
            assert await leases.renew(b, "w-b", {7: 2}, ttl_s=5) == {7}
            assert await leases.held_by(b, "w-b") == {7: 2}
            assert await leases.release(b, 7, "w-b", 2)
            assert [x.partition for x in await leases.acquire(a, [7], "w-a", ttl_s=5)] == [7]
            # Released together, each only under the epoch it is held by.
            taken = await leases.acquire(b, [8, 9], "w-b", ttl_s=5)
            held = {x.partition: x.epoch for x in taken}
            assert await leases.release_all(b, "w-b", held | {7: 3}) == {8, 9}
            assert await leases.release_all(b, "w-b", held) == set()
            await leases.leave(b, "w-b")
            assert await leases.live_workers(a, 10) == ["w-a"]
        return said

    assert asyncio.run(scenario()) == ["partition 7: epoch 1 superseded"]
    assert query(database_url, "SELECT v FROM t") == [(1,)]
    assert query(database_url, "SELECT partition, worker, epoch FROM partition_fenced") == [
        (7, "w-a", 1)
    ]
    [(owner, epoch, position)] = query(
        database_url, "SELECT owner, epoch, position FROM partition_leases WHERE partition = 7"
    )
    # Epochs: w-a took it (1), w-b after the lease ran out (2), w-a again after the release (3).
    assert (owner, epoch, position) == ("w-a", 3, 10)
