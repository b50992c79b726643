"""The interpreter's settings for BedWatch's long-running processes."""

from __future__ import annotations

import gc

# Tracked objects allocated between two young collections (CPython's default is 700).
YOUNG_COLLECTION_EVERY = 20_000


def tune_collector() -> None:
    """Once started: what exists now (modules, settings, the registry) is left out of the
    cyclic collector's scans for good, and young collections run less often.

    The hot path allocates a few short-lived containers per message (the parsed payload, the
    decoded message, its samples) and frees them within a flush, almost never in a cycle; at the
    defaults the collector ran every few dozen messages and re-scanned everything long-lived
    (messages held for a flush, the detector state) many times a second.
    """
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, 20, 20)
