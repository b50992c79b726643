"""The interpreter's settings for BedWatch's long-running processes."""

from __future__ import annotations

import gc

# Tracked objects allocated between two young collections (CPython's default is 700).
YOUNG_COLLECTION_EVERY = 100_000


def tune_collector() -> None:
    """Once started: what exists now (modules, settings, the registry) is left out of the
    cyclic collector's scans for good, and young collections run less often.

    The hot path allocates a few containers per message (the decoded message, its samples),
    all freed by reference counting once its batch is stored, almost never in a cycle. A young
    collection scans whatever of them is still alive, and under load that is every message
    waiting for its batch (thousands): at the defaults that scan ran every few dozen messages.
    """
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, 20, 20)
