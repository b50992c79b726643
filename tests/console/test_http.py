"""The console's rules over plain HTTP, /metrics after real traffic, and /health up and down."""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.request
from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pypdfium2 as pdfium
from prometheus_client.parser import text_string_to_metric_families

from alerts.console.auth import COOKIE
from alerts.tokens import revoke_tokens
from bedwatch.migrate import migrate
from bedwatch.service import Service, alerts_component
from tests.console.site import TZ, Browserless, last_night, press_sos, running_site
from tests.support import Mosquitto, ServiceThread, free_port, query, settings_for, wait_until

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(base: str) -> Samples:
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def health(base: str) -> tuple[int, dict[str, str]]:
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_metrics_after_an_sos_and_its_delivery(
    database_url: str, broker_url: str, prefix: str
) -> None:
    with running_site(database_url, broker_url, prefix) as run:
        assert health(run.base) == (200, {"status": "ok", "broker": "up", "database": "up"})
        before = scrape(run.base)
        acked = run.service.stats.acked
        press_sos(run)
        wait_until(lambda: run.receiver.got("zhang"), 10, 0.01)
        recorded = "SELECT 1 FROM notifications WHERE result = 'delivered'"
        wait_until(lambda: query(database_url, recorded))
        # The event is stored (and its batch timed) on its own path, beside the alert's.
        wait_until(lambda: run.service.stats.acked > acked)
        # Alert counts come from the database at most every 2 s, however often it is scraped.
        open_sos = {"kind": "sos", "severity": "critical", "state": "open"}

        def counted() -> Samples | None:
            samples = scrape(run.base)
            return samples if value(samples, "bedwatch_alerts", **open_sos) else None

        after = wait_until(counted, 5, 0.25)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert value(after, "bedwatch_alerts", kind="sos", severity="critical", state="open") == 1
    assert value(after, "bedwatch_alerts", kind="fall", severity="critical", state="open") == 0
    assert value(after, "bedwatch_mqtt_connected") == 1
    assert delta("bedwatch_messages_total", channel="event") == 1
    assert delta("bedwatch_findings_total", kind="sos", severity="critical", cleared="false") == 1
    assert delta("bedwatch_alert_transitions_total", kind="sos", to="open") == 1
    assert delta("bedwatch_delivery_attempts_total", result="delivered") == 1
    assert delta("bedwatch_delivery_attempts_total", result="failed") == 0
    assert delta("bedwatch_batch_write_seconds_count") >= 1
    handed = delta("bedwatch_sos_dispatch_seconds_count", stage="handed")
    delivered = delta("bedwatch_sos_dispatch_seconds_count", stage="delivered")
    assert (handed, delivered) == (1, 1)
    # From the engine taking the finding to the channel: well inside the design's 1 s target.
    assert 0 < delta("bedwatch_sos_dispatch_seconds_sum", stage="handed") < 1.0
    assert delta("bedwatch_sos_dispatch_seconds_sum", stage="delivered") < 5.0
    assert value(after, "bedwatch_queue_held_messages") >= 0
    # The fleet: the care site's pad and band, both heard from (the press came from the band).
    assert value(after, "bedwatch_devices", kind="wristband", state="registered") >= 1
    assert value(after, "bedwatch_devices", kind="wristband", state="online") == 1
    assert value(after, "bedwatch_devices", kind="wristband", state="silent_1h") == 0


def test_health_reports_the_broker_going_away(database_url: str, tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    port = free_port()
    settings = settings_for(database_url, broker.url, "bw/health")
    settings = settings.replace("http", addr=f"127.0.0.1:{port}")
    migrate(settings)
    component = alerts_component(settings)
    try:
        with ServiceThread(Service(settings, components=[component])):
            base = f"http://127.0.0.1:{port}"
            wait_until(lambda: health_or_none(base), 20)
            assert health(base) == (200, {"status": "ok", "broker": "up", "database": "up"})
            broker.stop()
            wait_until(lambda: health(base)[0] == 503, 10)
            assert health(base)[1] == {"status": "down", "broker": "down", "database": "up"}
    finally:
        broker.stop()


def health_or_none(base: str) -> tuple[int, dict[str, str]] | None:
    try:
        return health(base)
    except OSError:
        return None


def form_token(client: Browserless) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', client.request("/console/")[2])
    assert found is not None
    return found.group(1)


def test_login_care_team_csrf_and_revocation(
    database_url: str, broker_url: str, prefix: str
) -> None:
    with running_site(database_url, broker_url, prefix) as run:
        zhang = Browserless(run.base)
        status, headers, _ = zhang.request("/console/")
        assert (status, headers["location"]) == (303, "/console/login")
        # Someone else's token, or a made-up one, logs nobody in.
        assert zhang.login("c-zhang", run.tokens["c-other"]) == 401
        assert zhang.login("c-zhang", "bw_nonsense") == 401
        assert zhang.login("c-zhang", run.tokens["c-zhang"]) == 303
        cookie = next(c for c in zhang.jar if c.name == COOKIE)
        assert cookie.has_nonstandard_attr("HttpOnly")
        assert cookie.get_nonstandard_attr("SameSite") == "strict"
        status, _, page = zhang.request("/console/")
        assert status == 200
        assert "王阿婆" in page
        assert "李阿公" not in page  # only the contact's own residents
        assert "待处理告警" in page  # the contact's language by default

        press_sos(run)
        wait_until(lambda: query(database_url, "SELECT id FROM alerts"))
        [(alert_id,)] = query(database_url, "SELECT id FROM alerts")
        ack = f"/console/alerts/{alert_id}/ack"
        assert ack in zhang.request("/console/")[2]
        csrf = form_token(zhang)
        json_accept = {"Accept": "application/json"}
        assert zhang.request(ack, {}, json_accept)[0] == 403  # no form token
        assert zhang.request(ack, {"csrf": "forged"}, json_accept)[0] == 403
        evil = {"Origin": "http://evil.example", **json_accept}
        assert zhang.request(ack, {"csrf": csrf}, evil)[0] == 403

        other = Browserless(run.base)
        assert other.login("c-other", run.tokens["c-other"]) == 303
        assert "Active alerts" in other.request("/console/")[2]
        assert "王阿婆" not in other.request("/console/")[2]
        assert other.request("/console/residents/r-0101/night")[0] == 404
        assert other.request(ack, {"csrf": form_token(other)}, json_accept)[0] == 404
        assert query(database_url, "SELECT state FROM alerts") == [("open",)]

        before = scrape(run.base)
        status, _, body = zhang.request(ack, {"csrf": csrf}, json_accept)
        assert (status, json.loads(body)["outcome"]) == (200, "done")
        assert query(database_url, "SELECT state, acked_by FROM alerts") == [
            ("acknowledged", "c-zhang")
        ]
        audit = "SELECT actor, action FROM alert_audit WHERE action = 'acknowledged'"
        assert query(database_url, audit) == [("c-zhang", "acknowledged")]
        # Answered within a minute: counted in the answer-time histogram's 60 s bucket.
        after = scrape(run.base)
        for name, labels in [
            ("bedwatch_alert_answer_seconds_count", {"severity": "critical"}),
            ("bedwatch_alert_answer_seconds_bucket", {"severity": "critical", "le": "60.0"}),
        ]:
            assert value(after, name, **labels) - value(before, name, **labels) == 1

        # A cookie altered by hand is no session; a revoked token ends the session it began.
        tampered = Browserless(run.base)
        assert cookie.value is not None
        claim = cookie.value.split(".")
        claim[0] = base64.urlsafe_b64encode(b"c-other").rstrip(b"=").decode()
        forged = ".".join(claim)
        assert tampered.request("/console/", headers={"Cookie": f"{COOKIE}={forged}"})[0] == 303
        with psycopg.connect(database_url) as conn:
            revoke_tokens(conn, "c-zhang")
        assert zhang.request("/console/")[0] == 303


def test_the_night_page_lists_findings_in_data_uploaded_late(
    database_url: str, broker_url: str, prefix: str
) -> None:
    night = last_night()
    at = datetime.combine(night, time(23, 40), ZoneInfo(TZ))
    with running_site(database_url, broker_url, prefix) as run:
        with psycopg.connect(database_url) as conn:
            conn.execute(
                "INSERT INTO findings (resident_id, device_id, kind, severity, at, started_at,"
                " cleared, late) VALUES ('r-0101', 'mat-0101', 'breathing_pause', 'high', %s, %s,"
                " false, true), ('r-0101', 'mat-0101', 'breathing_pause', 'high', %s, %s,"
                " true, true)",
                (at, at, at, at),
            )
        zhang = Browserless(run.base)
        assert zhang.login("c-zhang", run.tokens["c-zhang"]) == 303
        status, _, page = zhang.request(f"/console/residents/r-0101/night?night={night}")
    assert status == 200
    assert "补传数据中的发现（未推送）" in page
    assert page.count("23:40") == 1  # the finding, not its end
    assert "这一晚的告警" not in page  # no alert was raised


def test_the_night_page_opens_on_the_latest_night_with_data(
    database_url: str, broker_url: str, prefix: str
) -> None:
    night = last_night() - timedelta(days=2)  # then nothing: a pad away for two nights
    at = datetime.combine(night, time(23, 0), ZoneInfo(TZ))
    with running_site(database_url, broker_url, prefix) as run:
        with psycopg.connect(database_url) as conn:
            conn.execute(
                "INSERT INTO mattress_samples (time, device_id, resident_id, source, hr, rr,"
                " move, occ, sq) SELECT %s + n * interval '1 minute', 'mat-0101', 'r-0101',"
                " 'device', 60, 14, 1, 1, 90 FROM generate_series(0, 59) n",
                (at,),
            )
        zhang = Browserless(run.base)
        assert zhang.login("c-zhang", run.tokens["c-zhang"]) == 303
        status, _, page = zhang.request("/console/residents/r-0101/night")
        # The sleep report a digest links to: the resident's, drawn as PDF; another team's
        # resident is not there at all.
        # Drawn in a process of its own that starts cold (matplotlib, WeasyPrint, CJK fonts).
        report = f"/console/residents/r-0101/report.pdf?night={night}"
        with zhang.open(report, timeout_s=90) as response:
            kind, pdf = response.headers["Content-Type"], response.read()
        others = zhang.request("/console/residents/r-0202/report.pdf")[0]
    assert kind == "application/pdf"
    text = "".join(p.get_textpage().get_text_range() for p in pdfium.PdfDocument(pdf))
    assert "王阿婆" in text
    assert night.strftime("%m-%d") in text or night.isoformat() in text
    assert others == 404
    assert status == 200
    # That night, with its neighbours a click away, not the empty calendar night.
    assert f"?night={night - timedelta(days=1)}" in page
    assert f"?night={night + timedelta(days=1)}" in page
