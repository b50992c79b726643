"""The batch writer: a message the database cannot take is quarantined, the rest stored."""

from __future__ import annotations

import hashlib
import time
from typing import Any
from urllib.parse import urlsplit

import pytest

from bedwatch.migrate import migrate
from ingest.db import DatabaseUnavailable
from ingest.protocol import Decoded
from ingest.records import Channel, DeviceId, MattressSample, Reason, Rejection, ResidentId
from ingest.store import DIRECT_PAUSE_FLUSHES, QUARANTINE_KEEP_BYTES, Store, WriteResult
from tests.support import free_port, query, settings_for

NOW = int(time.time() * 1000)


def message(seq: int, ts: int) -> Decoded:
    sample = MattressSample(DeviceId("mat-0001"), ResidentId("r-0001"), ts, 60.0, 14.0, 2, 1, 90)
    topic = "bedwatch/v1/mat-0001/telemetry"
    return Decoded(
        NOW, topic, b"{}", DeviceId("mat-0001"), Channel.TELEMETRY, [sample], [], seq=seq
    )


def test_a_value_the_column_cannot_hold_quarantines_its_message_only(database_url: str) -> None:
    migrate(settings_for(database_url, "mqtt://127.0.0.1:1883", "x"))
    store = Store(database_url)
    store.open()
    try:
        # seq goes to an int8 column: 2**63 cannot be sent in binary COPY at all (an
        # OverflowError in the client, not a database error).
        result = store.write([message(7, NOW - 2000), message(2**63, NOW - 1000)])
    finally:
        store.close()
    assert result.failed_messages == 1
    assert query(database_url, "SELECT count(*) FROM mattress_samples") == [(1,)]
    assert query(database_url, "SELECT last_seq FROM device_health") == [(7,)]
    [(reason, detail)] = query(database_url, "SELECT reason, detail FROM quarantine")
    assert reason == "store_failed"
    assert "OverflowError" in detail or "out of range" in detail


def test_pad_samples_are_copied_straight_or_staged_when_some_are_stored_already(
    database_url: str,
) -> None:
    migrate(settings_for(database_url, "mqtt://127.0.0.1:1883", "x"))
    store = Store(database_url)
    store.open()
    try:
        first = store.write([message(1, NOW - 3000), message(2, NOW - 2000)])
        assert store._staged_flushes == 0  # copied straight: nothing was stored before
        # A redelivery of the second with a new one: the straight COPY fails as a whole, the
        # batch is staged and the copy skipped, and the next flushes are staged too.
        again = store.write([message(2, NOW - 2000), message(3, NOW - 1000)])
        assert store._staged_flushes == DIRECT_PAUSE_FLUSHES
        more = store.write([message(4, NOW - 500)])
    finally:
        store.close()
    assert (first.mattress, again.mattress, more.mattress) == (2, 1, 1)
    rows = query(database_url, "SELECT time, hr, source FROM mattress_samples ORDER BY time")
    assert [(int(t.timestamp() * 1000), hr, src) for t, hr, src in rows] == [
        (ts, 60.0, "device") for ts in (NOW - 3000, NOW - 2000, NOW - 1000, NOW - 500)
    ]


def test_a_refused_batch_is_narrowed_by_halving(database_url: str) -> None:
    migrate(settings_for(database_url, "mqtt://127.0.0.1:1883", "x"))
    store = Store(database_url)
    store.open()
    transactions = 0
    write = store._write

    def counted(*args: Any, **kwargs: Any) -> WriteResult:
        nonlocal transactions
        transactions += 1
        return write(*args, **kwargs)

    store._write = counted  # type: ignore[method-assign]
    messages = [message(i + 1, NOW - 100_000 + i * 10) for i in range(1024)]
    for bad in (300, 700):  # a time timestamptz cannot hold: refused by the client
        messages[bad] = message(bad + 1, 2**62)
    try:
        result = store.write(messages)
    finally:
        store.close()
    assert result.failed_messages == 2
    assert result.mattress == 1022
    assert query(database_url, "SELECT count(*) FROM mattress_samples") == [(1022,)]
    assert query(database_url, "SELECT count(*) FROM quarantine") == [(2,)]
    # One by one this took 1,026 transactions; halving takes about 2 * log2(1024) * 2.
    assert transactions <= 2 + 2 * 2 * 10 + 2


def test_quarantine_keeps_a_prefix_the_size_and_the_digest(database_url: str) -> None:
    migrate(settings_for(database_url, "mqtt://127.0.0.1:1883", "x"))
    payload = b"{" + b"x" * 5_000_000
    rejection = Rejection(
        "bedwatch/v1/mat-0001/telemetry", Reason.OVERSIZE, "too big", payload, NOW, None
    )
    decoded = Decoded(NOW, rejection.topic, payload, None, None, [], [rejection])
    store = Store(database_url)
    store.open()
    try:
        store.write([decoded])
    finally:
        store.close()
    [(kept, size, digest)] = query(
        database_url, "SELECT payload, payload_bytes, payload_sha256 FROM quarantine"
    )
    assert bytes(kept) == payload[:QUARANTINE_KEEP_BYTES]
    assert size == len(payload)
    assert bytes(digest) == hashlib.sha256(payload).digest()


def test_with_the_database_away_nothing_is_dropped(database_url: str) -> None:
    """Rows computed here (rates from waveforms, findings) are not dropped, even in a flush with
    no message (findings of the clock, rates computed after the last message was stored)."""
    away = urlsplit(database_url)._replace(netloc=f"postgres@127.0.0.1:{free_port()}").geturl()
    store = Store(away)
    written: list[str] = []
    derived = message(1, NOW - 1000).records
    with pytest.raises(DatabaseUnavailable):
        store.write([], derived, lambda cur: written.append("findings"))
    assert written == []
