"""Ingest end to end: a real Mosquitto, a real PostgreSQL, devices publishing through paho."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
from collections.abc import Sequence

import psycopg

from alerts.host import Host
from bedwatch.migrate import migrate
from bedwatch.service import Service
from bedwatch.site import parse_site
from detectors.findings import Finding
from ingest.registry import store_site
from tests.support import (
    Device,
    ServiceThread,
    database_down,
    query,
    settings_for,
    wait_until,
)

SITE = """
[[contacts]]
id = "c-zhang"
name = "张护理员"
role = "care_staff"
channels = ["json://127.0.0.1:9/hook"]

[[residents]]
id = "r-0001"
name = "王阿婆"
room = "新虹 3-1-201"
devices = [{ id = "mat-0001", kind = "mattress" }, { id = "band-0001", kind = "wristband" }]
care_team = ["c-zhang"]

[[residents]]
id = "r-0002"
name = "李老伯"
devices = [{ id = "mat-0002", kind = "mattress" }]
"""

T0 = int(time.time() * 1000) - 60_000


def prepare(database_url: str, broker_url: str, prefix: str, **ingest: object) -> Service:
    settings = settings_for(database_url, broker_url, prefix, **ingest)
    migrate(settings)
    with psycopg.connect(database_url) as conn, conn.transaction():
        store_site(conn, parse_site(SITE))
    return Service(settings)


def mattress(ts: int, **fields: object) -> dict[str, object]:
    return {"ts": ts, "hr": 61, "rr": 14, "move": 2, "occ": 1, "sq": 93} | fields


class Recorder:
    """A service component that keeps the findings it is given."""

    name = "recorder"
    serves_http = False

    def __init__(self) -> None:
        self.seen: list[Finding] = []
        self.ready = asyncio.Event()
        self.ready.set()

    def on_finding(self, finding: Finding) -> None:
        self.seen.append(finding)

    def on_stored(self, findings: Sequence[tuple[int, Finding]]) -> None:
        pass

    async def run(self, host: Host) -> None:
        await asyncio.Event().wait()

    async def drain(self) -> None:
        pass


def count(url: str, table: str) -> int:
    return int(query(url, f"SELECT count(*) FROM {table}")[0][0])


def test_telemetry_single_and_batched_is_stored_exactly_once(
    database_url: str, broker_url: str, prefix: str
) -> None:
    service = prepare(database_url, broker_url, prefix)
    with ServiceThread(service):
        mat = Device(broker_url, "mat-0001", prefix)
        band = Device(broker_url, "band-0001", prefix)
        single = json.dumps({"seq": 1} | mattress(T0))
        batch = json.dumps(
            {"seq": 2, "samples": [mattress(T0 + 1000 * i, hr=60 + i) for i in range(1, 11)]}
        )
        wrist = json.dumps({"seq": 1, "ts": T0, "hr": 72, "spo2": 97, "bat": 81, "worn": 1})
        for _ in range(2):  # the second round is a firmware resend: it must change nothing
            mat.send("telemetry", single)
            mat.send("telemetry", batch)
            band.send("telemetry", wrist)
        wait_until(lambda: service.stats.acked >= 6)
        mat.close()
        band.close()
    rows = query(
        database_url,
        "SELECT device_id, resident_id, hr, rr, move, occ, sq, source,"
        " (extract(epoch from time) * 1000)::bigint FROM mattress_samples ORDER BY time",
    )
    assert len(rows) == 11
    assert rows[0] == ("mat-0001", "r-0001", 61.0, 14.0, 2, 1, 93, "device", T0)
    assert [r[2] for r in rows[1:]] == [60.0 + i for i in range(1, 11)]
    assert query(database_url, "SELECT device_id, hr, spo2, bat, worn FROM wristband_samples") == [
        ("band-0001", 72.0, 97.0, 81, 1)
    ]
    assert count(database_url, "quarantine") == 0
    health = query(
        database_url, "SELECT device_id, messages, last_seq FROM device_health ORDER BY 1"
    )
    assert health == [("band-0001", 2, 1), ("mat-0001", 4, 2)]


def test_every_event_type_and_status_with_last_will(
    database_url: str, broker_url: str, prefix: str
) -> None:
    service = prepare(database_url, broker_url, prefix)
    with ServiceThread(service):
        band = Device(broker_url, "band-0001", prefix)
        band.send(
            "status",
            json.dumps(
                {
                    "state": "online",
                    "ts": T0,
                    "kind": "wristband",
                    "model": "BW-B1",
                    "fw": "1.2.0",
                    "bat": 90,
                }
            ),
            retain=True,
        )
        events = [
            {"seq": 1, "ts": T0 + 1000, "type": "sos"},
            {"seq": 2, "ts": T0 + 2000, "type": "sos_cancel"},
            {"seq": 3, "ts": T0 + 3000, "type": "fall", "conf": 0.91, "lat": 31.19, "lon": 121.31},
            {"seq": 4, "ts": T0 + 4000, "type": "removed"},
            {"seq": 5, "ts": T0 + 5000, "type": "low_battery", "bat": 9},
        ]
        for _ in range(2):
            for event in events:
                band.send("event", json.dumps(event))
        # A power cut: the connection drops without DISCONNECT, so the broker sends the will.
        band.client.loop_stop()
        sock = band.client.socket()
        assert isinstance(sock, socket.socket)
        sock.close()
        wait_until(lambda: count(database_url, "device_status") >= 2)
        wait_until(lambda: service.stats.acked >= 12)
    stored = query(database_url, "SELECT type, conf, bat, lat FROM device_events ORDER BY time")
    assert stored == [
        ("sos", None, None, None),
        ("sos_cancel", None, None, None),
        ("fall", 0.91, None, 31.19),
        ("removed", None, None, None),
        ("low_battery", None, 9, None),
    ]
    status = query(
        database_url,
        "SELECT state, from_device_clock, model, fw, bat FROM device_status ORDER BY time",
    )
    assert status == [("online", True, "BW-B1", "1.2.0", 90), ("offline", False, None, None, None)]


def test_messages_sent_while_the_service_is_down_arrive_when_it_returns(
    database_url: str, broker_url: str, prefix: str
) -> None:
    service = prepare(database_url, broker_url, prefix)
    with ServiceThread(service):
        pass  # the first run creates the persistent session on the broker
    mat = Device(broker_url, "mat-0002", prefix)
    for i in range(20):
        mat.send("telemetry", json.dumps({"seq": i, "samples": [mattress(T0 + i * 1000)]}))
    mat.close()
    again = Service(service.settings)
    with ServiceThread(again):
        wait_until(lambda: count(database_url, "mattress_samples") == 20)
    assert again.stats.acked == 20


def test_retained_last_will_is_not_stored_again_after_restart(
    database_url: str, broker_url: str, prefix: str
) -> None:
    service = prepare(database_url, broker_url, prefix)
    band = Device(broker_url, "band-0001", prefix)
    band.send("status", b'{"state":"offline"}', retain=True)
    band.close()
    for _ in range(2):
        with ServiceThread(Service(service.settings)) as running:
            wait_until(lambda s=running: s.stats.acked >= 1)  # type: ignore[misc]
    assert query(database_url, "SELECT state FROM device_status") == [("offline",)]
    # Clear the retained message so it does not linger on the shared broker.
    cleaner = Device(broker_url, "band-0001", prefix, will=False)
    cleaner.send("status", b"", retain=True)
    cleaner.close()


def test_findings_flow_to_storage_and_components_and_state_is_checkpointed(
    database_url: str, broker_url: str, prefix: str
) -> None:
    recorder = Recorder()
    settings = prepare(database_url, broker_url, prefix).settings
    service = Service(settings, components=[recorder])
    with ServiceThread(service):
        band = Device(broker_url, "band-0001", prefix)
        band.send("event", json.dumps({"seq": 1, "ts": T0, "type": "sos"}))
        band.send("event", json.dumps({"seq": 1, "ts": T0, "type": "sos"}))  # a resend
        wait_until(lambda: count(database_url, "findings") >= 1)
        band.close()
    assert [f.kind for f in recorder.seen] == ["sos"]
    assert query(database_url, "SELECT resident_id, device_id, kind, severity FROM findings") == [
        ("r-0001", "band-0001", "sos", "critical")
    ]
    assert count(database_url, "detector_state") == 1


def test_a_backlog_uploaded_after_live_data_is_analysed_and_its_findings_marked_late(
    database_url: str, broker_url: str, prefix: str
) -> None:
    recorder = Recorder()
    seen = recorder.seen
    settings = prepare(database_url, broker_url, prefix).settings
    service = Service(settings, components=[recorder])
    start = T0 - 3_600_000  # an hour ago: the pad went offline then, and is live again now
    with ServiceThread(service):
        pad = Device(broker_url, "mat-0001", prefix)
        live = [mattress(T0 + 1000 * i) for i in range(20)]
        pad.send("telemetry", json.dumps({"seq": 1, "samples": live}))
        wait_until(lambda: count(database_url, "mattress_samples") == 20)
        # The buffered hour, oldest first, with a 40 s breathing pause in it; sent twice.
        backlog = [mattress(start + 1000 * i) for i in range(30)]
        backlog += [mattress(start + 30_000 + 1000 * i, rr=0) for i in range(40)]
        backlog += [mattress(start + 70_000 + 1000 * i) for i in range(30)]
        for _ in range(2):
            for k in range(0, len(backlog), 10):
                pad.send("telemetry", json.dumps({"seq": 2 + k, "samples": backlog[k : k + 10]}))
        wait_until(lambda: count(database_url, "mattress_samples") == 120)
        wait_until(lambda: len([f for f in seen if f.kind == "breathing_pause"]) == 2)
        pad.close()
    pause, cleared = [f for f in seen if f.kind == "breathing_pause"]
    assert pause.late
    assert cleared.late
    assert cleared.cleared
    assert pause.started_ms == start + 20_000
    rows = query(
        database_url,
        "SELECT kind, cleared, late, started_at FROM findings WHERE kind = 'breathing_pause'"
        " ORDER BY id",
    )
    assert [(k, c, late) for k, c, late, _ in rows] == [
        ("breathing_pause", False, True),
        ("breathing_pause", True, True),
    ]


def test_an_event_from_a_clock_far_ahead_delivered_twice_is_stored_and_detected_once(
    database_url: str, broker_url: str, prefix: str
) -> None:
    recorder = Recorder()
    settings = prepare(database_url, broker_url, prefix).settings
    ahead = int(time.time() * 1000) + 3_600_000  # the band's clock is an hour fast
    payload = json.dumps({"seq": 1, "ts": ahead, "type": "sos"})
    with ServiceThread(Service(settings, components=[recorder])):
        band = Device(broker_url, "band-0001", prefix)
        band.send("event", payload)
        wait_until(lambda: count(database_url, "device_events") == 1)
        time.sleep(0.05)  # the copy arrives later: another receive time
        band.send("event", payload)
        band.send("telemetry", json.dumps({"seq": 2, "ts": T0, "hr": 70, "spo2": 97}))
        wait_until(lambda: count(database_url, "wristband_samples") == 1)
        band.close()
    # And once more after a restart, which forgets what was seen in memory.
    with ServiceThread(Service(settings, components=[recorder])):
        band = Device(broker_url, "band-0001", prefix)
        band.send("event", payload)
        band.send("telemetry", json.dumps({"seq": 3, "ts": T0 + 1000, "hr": 70, "spo2": 97}))
        wait_until(lambda: count(database_url, "wristband_samples") == 2)
        band.close()
    rows = query(database_url, "SELECT time, device_time FROM device_events")
    assert len(rows) == 1
    stored, device_time = rows[0]
    assert int(device_time.timestamp() * 1000) == ahead
    assert stored < device_time  # acted on at receive time
    assert [f.kind for f in recorder.seen] == ["sos"]


def test_a_stop_with_the_database_away_gives_up_in_time_and_loses_nothing(
    database_url: str, broker_url: str, prefix: str
) -> None:
    settings = prepare(database_url, broker_url, prefix, stop_wait_s=1.0).settings
    service = Service(settings)
    running = ServiceThread(service)
    with running:
        pad = Device(broker_url, "mat-0001", prefix)
        pad.send(
            "telemetry", json.dumps({"seq": 1, "samples": [mattress(T0 + i) for i in range(10)]})
        )
        wait_until(lambda: count(database_url, "mattress_samples") == 10)
        with database_down(database_url):
            later = [mattress(T0 + 10_000 + i) for i in range(10)]
            pad.send("telemetry", json.dumps({"seq": 2, "samples": later}))
            wait_until(lambda: service.stats.write_errors > 0)
            stopping = time.monotonic()
            running.stop()
            took = time.monotonic() - stopping
        pad.close()
    assert service.unstored == 1
    assert took < 10  # stop_wait_s, a connection attempt or two, the broker goodbye
    # The broker kept the unacknowledged message for the session: stored once after a restart.
    with ServiceThread(Service(settings)):
        wait_until(lambda: count(database_url, "mattress_samples") == 20)
        time.sleep(0.3)
    assert count(database_url, "mattress_samples") == 20


def test_the_detectors_worker_is_started_again_from_the_last_checkpoint_if_it_dies(
    database_url: str, broker_url: str, prefix: str
) -> None:
    recorder = Recorder()
    settings = prepare(database_url, broker_url, prefix).settings
    service = Service(settings, components=[recorder])
    running = ServiceThread(service)
    with running:
        band = Device(broker_url, "band-0001", prefix)
        band.send("event", json.dumps({"seq": 1, "ts": T0, "type": "sos"}))
        wait_until(lambda: len(recorder.seen) == 1)
        running.call(service.checkpoint)
        worker = service.detectors.pid
        assert worker is not None
        os.kill(worker, signal.SIGKILL)
        wait_until(lambda: service.detectors.restarts == 1)
        # Sent as the next worker starts: detected by it, after its checkpoint is restored.
        band.send("event", json.dumps({"seq": 2, "ts": T0 + 60_000, "type": "sos"}))
        wait_until(lambda: len(recorder.seen) == 2, 30)
        assert running.call(service.detectors.snapshot)  # answered by the new worker
        band.close()
    assert service.detectors.restarts == 1
    assert service.detectors.pid != worker
    # The second press joined the first: the new worker had its state before that message.
    assert [f.evidence["presses"] for f in recorder.seen] == [1, 2]


def test_findings_decided_at_stop_are_stored(
    database_url: str, broker_url: str, prefix: str
) -> None:
    recorder = Recorder()
    settings = prepare(database_url, broker_url, prefix, flush_interval_s=0.001).settings
    start = T0 - 3_600_000
    with ServiceThread(Service(settings, components=[recorder])):
        pad = Device(broker_url, "mat-0001", prefix)
        pad.send(
            "telemetry", json.dumps({"seq": 1, "samples": [mattress(T0 + i) for i in range(3)]})
        )
        backlog = [mattress(start + 1000 * i) for i in range(30)]
        backlog += [mattress(start + 30_000 + 1000 * i, rr=0) for i in range(40)]
        backlog += [mattress(start + 70_000 + 1000 * i) for i in range(30)]
        for k in range(0, len(backlog), 10):
            pad.send("telemetry", json.dumps({"seq": 2 + k, "samples": backlog[k : k + 10]}))
        wait_until(lambda: count(database_url, "mattress_samples") == 103)
        pad.close()
        # Stopped before the backlog has settled: the stop analyses it, and stores what it finds.
    assert [(f.kind, f.late) for f in recorder.seen] == [("breathing_pause", True)] * 2
    assert (
        query(database_url, "SELECT kind, late FROM findings ORDER BY id")
        == [("breathing_pause", True)] * 2
    )
