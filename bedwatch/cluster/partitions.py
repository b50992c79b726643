"""Residents to partitions, and partitions to live workers.

A resident's pad and wristband must meet in one worker, in order: every record is keyed by its
resident, and residents are spread over a fixed number of partitions by FNV-1a-32 of the id, the
function NATS's subject mapping `partition(n, ...)` uses, so a bridge, a worker and the broker
itself compute the same partition. Partitions go to workers by rendezvous (highest random weight)
hashing: each worker's share depends only on the set of live workers, so a join or a leave moves
about 1/n of the partitions and nothing else.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

PARTITIONS = 256
_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193


def fnv1a_32(data: bytes) -> int:
    h = _FNV_OFFSET
    for byte in data:
        h = ((h ^ byte) * _FNV_PRIME) & 0xFFFFFFFF
    return h


def partition_of(key: str, partitions: int = PARTITIONS) -> int:
    """The partition of a resident (or, for a device in no resident's name, of the device)."""
    return fnv1a_32(key.encode()) % partitions


def _weight(worker: str, partition: int) -> bytes:
    return hashlib.blake2b(f"{worker}\0{partition}".encode(), digest_size=8).digest()


def owner_of(partition: int, workers: Sequence[str]) -> str | None:
    """The live worker that should own the partition; None with no worker alive."""
    if not workers:
        return None
    return max(workers, key=lambda w: (_weight(w, partition), w))


def assignment(workers: Iterable[str], partitions: int = PARTITIONS) -> dict[int, str]:
    """Every partition's owner among the live workers (empty with none alive)."""
    alive = sorted(set(workers))
    if not alive:
        return {}
    return {p: str(owner_of(p, alive)) for p in range(partitions)}
