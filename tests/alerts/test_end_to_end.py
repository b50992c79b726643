"""Through the real broker and service: an SOS press reaches a person; an ack reaches the band."""

from __future__ import annotations

import json
import os
import re
import signal
import time
import urllib.error
import urllib.request
from dataclasses import replace
from typing import Any

import paho.mqtt.client as paho
import psycopg
import pytest

from alerts.tokens import issue_token, revoke_tokens
from bedwatch.detector_store import store_findings
from bedwatch.migrate import migrate
from bedwatch.service import Service, alerts_component
from bedwatch.settings import Settings
from bedwatch.site import parse_site
from detectors.findings import Finding, FindingKind, Severity
from ingest.intake import Intake
from ingest.records import DeviceEvent, DeviceId, ResidentId
from ingest.registry import store_site
from tests.alerts.harness import contact, site
from tests.alerts.receivers import HttpReceiver
from tests.support import Device, ServiceThread, free_port, query, settings_for, wait_until


def post(url: str, *, token: str | None = None, form: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = form.encode() if form is not None else b""
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode()


def test_sos_press_to_receiver_then_api_ack_to_wristband(
    database_url: str, broker_url: str, prefix: str
) -> None:
    port = free_port()
    with HttpReceiver() as http:
        text = site(
            [
                contact("c-zhang", "care_staff", [http.url("ok", "zhang")]),
                contact("c-other", "care_staff", [http.url("ok", "other")]),
            ],
            ["c-zhang"],
        )
        settings = settings_for(database_url, broker_url, prefix)
        settings = settings.replace("http", addr=f"127.0.0.1:{port}")
        settings = settings.replace("alerts", public_url=f"http://127.0.0.1:{port}")
        migrate(settings)
        with psycopg.connect(database_url) as conn, conn.transaction():
            store_site(conn, parse_site(text))
            token = issue_token(conn, "c-zhang")
            stranger = issue_token(conn, "c-other")
        component = alerts_component(settings)
        service = Service(settings, components=[component])
        with ServiceThread(service):
            wait_until(component.ready.is_set, 20)
            band = Device(broker_url, "band-0101", prefix)
            commands: list[dict[str, Any]] = []

            def on_message(client: Any, userdata: Any, message: paho.MQTTMessage) -> None:
                commands.append(json.loads(message.payload))

            band.client.on_message = on_message
            band.client.subscribe(band.topic("cmd"), qos=1)
            time.sleep(0.2)
            pressed = time.perf_counter()
            now = int(time.time() * 1000)
            band.send("event", json.dumps({"seq": 1, "ts": now, "type": "sos"}))
            wait_until(lambda: http.got("zhang"), 10, 0.01)
            assert http.arrival_s["zhang"][0] - pressed < 5.0
            [(alert_id,)] = query(database_url, "SELECT id FROM alerts")
            api = f"http://127.0.0.1:{port}/api/v1/alerts/{alert_id}"
            assert post(f"{api}/ack", token="wrong")[0] == 401
            assert post(f"{api}/ack", token=stranger)[0] == 403
            status, body = post(f"{api}/ack", token=token)
            assert (status, body["outcome"], body["by"]) == (200, "done", "c-zhang")
            wait_until(lambda: commands, 10)
            assert commands[0]["type"] == "sos_ack"
            assert commands[0]["alert"] == str(alert_id)
            # The link in the message: a page with buttons, then an ack that was already made.
            link = re.search(r"http://\S+/a/\S+", http.got("zhang")[0]["message"])
            assert link is not None
            with urllib.request.urlopen(link.group(0), timeout=10) as page:
                assert "Acknowledge" in page.read().decode()
            status, _ = post(link.group(0), form="action=resolve")
            assert status == 200
            assert post(link.group(0)[:-3] + "AAA", form="action=ack")[0] == 403
            band.close()
    assert query(database_url, "SELECT state, acked_by, resolved_by FROM alerts") == [
        ("resolved", "c-zhang", "c-zhang")
    ]
    assert query(database_url, "SELECT actor, action, via FROM alert_audit ORDER BY id") == [
        ("system", "opened", "system"),
        ("c-zhang", "acknowledged", "api"),
        ("c-zhang", "resolved", "link"),
    ]


def one_contact(database_url: str, broker_url: str, prefix: str, http: HttpReceiver) -> Settings:
    """Settings and a site of one resident whose care team is c-zhang, paged over HTTP."""
    text = site([contact("c-zhang", "care_staff", [http.url("ok", "zhang")])], ["c-zhang"])
    settings = settings_for(database_url, broker_url, prefix).replace("alerts", serve_http=False)
    migrate(settings)
    with psycopg.connect(database_url) as conn, conn.transaction():
        store_site(conn, parse_site(text))
    return settings


def get_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as page:
            return int(page.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_revocation_and_an_inactive_contact_end_links_and_tokens(
    database_url: str, broker_url: str, prefix: str
) -> None:
    port = free_port()
    with HttpReceiver() as http:
        text = site(
            [
                contact("c-zhang", "care_staff", [http.url("ok", "zhang")]),
                contact("c-li", "care_staff", [http.url("ok", "li")]),
            ],
            ["c-zhang", "c-li"],
        )
        settings = settings_for(database_url, broker_url, prefix)
        settings = settings.replace("http", addr=f"127.0.0.1:{port}")
        settings = settings.replace("alerts", public_url=f"http://127.0.0.1:{port}")
        migrate(settings)
        with psycopg.connect(database_url) as conn, conn.transaction():
            store_site(conn, parse_site(text))
            tokens = {c: issue_token(conn, c) for c in ("c-zhang", "c-li")}
        component = alerts_component(settings)
        with ServiceThread(Service(settings, components=[component])):
            wait_until(component.ready.is_set, 20)
            band = Device(broker_url, "band-0101", prefix)
            band.send("event", json.dumps({"seq": 1, "ts": int(time.time() * 1000), "type": "sos"}))
            wait_until(lambda: http.got("zhang") and http.got("li"), 10, 0.01)
            band.close()
            links = {}
            for who in ("zhang", "li"):
                found = re.search(r"http://\S+/a/\S+", http.got(who)[0]["message"])
                assert found is not None
                links[who] = found.group(0)
                assert get_status(links[who]) == 200
            [(alert_id,)] = query(database_url, "SELECT id FROM alerts")
            api = f"http://127.0.0.1:{port}/api/v1/alerts/{alert_id}/ack"
            with psycopg.connect(database_url) as conn, conn.transaction():
                revoke_tokens(conn, "c-zhang")
                conn.execute("UPDATE contacts SET active = false WHERE id = 'c-li'")
            assert get_status(links["zhang"]) == 403
            assert get_status(links["li"]) == 403
            assert post(api, token=tokens["c-zhang"])[0] == 401
            assert post(api, token=tokens["c-li"])[0] == 401
    assert query(database_url, "SELECT state FROM alerts") == [("open",)]


def test_an_sos_detected_at_the_stop_still_pages(
    database_url: str, broker_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stop detects what was taken, lets the alert engine take the findings, then stores
    and acknowledges: an SOS taken at the moment of a SIGTERM is paged, not just stored."""
    with HttpReceiver() as http:
        settings = one_contact(database_url, broker_url, prefix, http)
        component = alerts_component(settings)
        service = Service(settings, components=[component])
        taken = Intake.on_message
        take_emergencies = Intake.take_emergencies

        def stop_on_sos(
            intake: Intake, topic: bytes, payload: bytes, *rest: Any, **named: Any
        ) -> None:
            taken(intake, topic, payload, *rest, **named)
            if b'"sos"' in payload and named.get("session"):  # the events' own session
                service._loop.call_soon_threadsafe(service.stop)

        def not_before_the_stop(intake: Intake) -> list[DeviceEvent]:
            # The SOS is taken, but not yet decided when the stop begins.
            return take_emergencies(intake) if service._stop.is_set() else []

        monkeypatch.setattr(Intake, "on_message", stop_on_sos)
        monkeypatch.setattr(Intake, "take_emergencies", not_before_the_stop)
        thread = ServiceThread(service)
        with thread:
            wait_until(component.ready.is_set, 20)
            band = Device(broker_url, "band-0101", prefix)
            band.send("event", json.dumps({"seq": 1, "ts": int(time.time() * 1000), "type": "sos"}))
            wait_until(lambda: not thread.running, 30)
            band.close()
        assert len(http.got("zhang")) == 1
    assert query(database_url, "SELECT kind, state FROM alerts") == [("sos", "open")]
    assert query(database_url, "SELECT type FROM device_events") == [("sos",)]


def test_a_finding_stored_but_not_handled_before_a_crash_is_paged_at_the_next_start(
    database_url: str, broker_url: str, prefix: str
) -> None:
    with HttpReceiver() as http:
        settings = one_contact(database_url, broker_url, prefix, http)
        now = int(time.time() * 1000)
        press = Finding(
            ResidentId("r-0101"),
            FindingKind.SOS,
            Severity.CRITICAL,
            now - 2000,
            now - 2000,
            device_id=DeviceId("band-0101"),
        )
        late = replace(press, kind=FindingKind.FALL, late=True)  # about the past: pages nobody
        with psycopg.connect(database_url) as conn, conn.transaction(), conn.cursor() as cur:
            # Committed with its message, then the process died before the engine took it.
            store_findings(cur, [press, late], [])
        component = alerts_component(settings)
        with ServiceThread(Service(settings, components=[component])):
            wait_until(lambda: http.got("zhang"), 20)
            wait_until(component.intake.idle_now, 10)
        assert len(http.got("zhang")) == 1
    assert query(database_url, "SELECT kind FROM alerts") == [("sos",)]
    assert query(database_url, "SELECT kind FROM findings WHERE handled_at IS NULL") == []


@pytest.mark.slow
def test_an_sos_is_paged_while_the_detector_worker_hangs(
    database_url: str, broker_url: str, prefix: str
) -> None:
    """SOS and falls are decided where they are decoded: the worker is not in their path."""
    with HttpReceiver() as http:
        settings = one_contact(database_url, broker_url, prefix, http)
        component = alerts_component(settings)
        service = Service(settings, components=[component])
        with ServiceThread(service):
            wait_until(component.ready.is_set, 20)
            worker = service.detectors.pid
            assert worker is not None
            os.kill(worker, signal.SIGSTOP)
            try:
                band = Device(broker_url, "band-0101", prefix)
                pressed = time.perf_counter()
                now = int(time.time() * 1000)
                band.send("event", json.dumps({"seq": 1, "ts": now, "type": "fall"}))
                wait_until(lambda: http.got("zhang"), 10, 0.01)
                # Paged with the worker stopped (its watchdog would take 15 s to replace it).
                assert http.arrival_s["zhang"][0] - pressed < 5.0
                band.close()
            finally:
                os.kill(worker, signal.SIGCONT)
    assert query(database_url, "SELECT kind FROM findings WHERE NOT late") == [("fall",)]
