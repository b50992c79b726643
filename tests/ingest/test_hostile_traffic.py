"""Hostile traffic through the real broker: each bad message quarantined, the rest unharmed."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

from ingest.store import QUARANTINE_KEEP_BYTES
from tests.ingest.hostile import HOSTILE, NOW_MS
from tests.ingest.test_end_to_end import count, mattress, prepare
from tests.support import Device, ServiceThread, query, wait_until


def test_bad_messages_are_quarantined_while_valid_traffic_flows(
    database_url: str, broker_url: str, prefix: str
) -> None:
    service = prepare(database_url, broker_url, prefix)
    with ServiceThread(service):
        good = Device(broker_url, "mat-0002", prefix)
        attacker = Device(broker_url, "hostile-client", prefix, will=False)
        valid = 0
        for i, bad in enumerate(HOSTILE):
            attacker.send_raw(f"{prefix}/{bad.device}/{bad.channel}", bad.payload)
            batch = [mattress(NOW_MS - 100_000 + (2 * i + k) * 1000) for k in range(2)]
            good.send("telemetry", json.dumps({"seq": i, "samples": batch}))
            valid += len(batch)
        wait_until(lambda: service.stats.acked >= 2 * len(HOSTILE), 30)
        good.close()
        attacker.close()
    reasons = Counter(r for (r,) in query(database_url, "SELECT reason FROM quarantine"))
    assert reasons == Counter(b.reason.value for b in HOSTILE)
    # Every quarantined row keeps the topic and the payload it came with: its first bytes, its
    # size and its digest (a 70 KB payload is kept to its first 4 KB).
    stored = {
        (topic, bytes(payload), size, bytes(digest))
        for topic, payload, size, digest in query(
            database_url,
            "SELECT topic, payload, payload_bytes, payload_sha256 FROM quarantine",
        )
    }
    assert stored == {
        (
            f"{prefix}/{b.device}/{b.channel}",
            b.payload[:QUARANTINE_KEEP_BYTES],
            len(b.payload),
            hashlib.sha256(b.payload).digest(),
        )
        for b in HOSTILE
    }
    assert any(len(b.payload) > QUARANTINE_KEEP_BYTES for b in HOSTILE)
    assert count(database_url, "mattress_samples") == valid
    assert query(database_url, "SELECT DISTINCT device_id FROM mattress_samples") == [("mat-0002",)]
    assert service.intake is not None
    assert sum(service.intake.rejected.values()) == len(HOSTILE)


def test_an_sos_with_broken_fields_reaches_storage_and_quarantine(
    database_url: str, broker_url: str, prefix: str
) -> None:
    service = prepare(database_url, broker_url, prefix)
    with ServiceThread(service):
        band = Device(broker_url, "band-0001", prefix)
        band.send("event", b'{"type": "sos", "ts": "now", "conf": 7}')
        wait_until(lambda: service.stats.acked >= 1)
        band.close()
    assert query(database_url, "SELECT type, degraded FROM device_events") == [("sos", True)]
    assert query(database_url, "SELECT reason FROM quarantine") == [("schema",)]
