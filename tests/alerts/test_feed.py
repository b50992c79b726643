"""A feed's webhook against a real HTTP receiver that fails, then is away, then recovers."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from alerts.model import AlertId, ContactId, Via
from bedwatch.site import SiteError, parse_site
from detectors.findings import Finding, FindingKind, Severity
from ingest.records import DeviceId, ResidentId
from tests.alerts.harness import DAY_MS, FakeClock, contact, prepare, running, step
from tests.alerts.receivers import HttpReceiver
from tests.alerts.test_feed_api import conforms
from tests.support import free_port, query

INSIDE = ResidentId("r-kj")  # in the feed's area
OUTSIDE = ResidentId("r-xh")  # in another community: the feed never hears of it


def resident(rid: str, area: str, team: list[str]) -> str:
    n = rid.removeprefix("r-")
    members = ", ".join(f'"{c}"' for c in team)
    return (
        f'[[residents]]\nid = "{rid}"\nname = "{rid}"\nroom = "{area}"\narea = "{area}"\n'
        f'devices = [{{ id = "mat-{n}", kind = "mattress" }},'
        f' {{ id = "band-{n}", kind = "wristband" }}]\ncare_team = [{members}]\n'
    )


def feed_site(http: HttpReceiver, webhooks: list[str], extra: str = "") -> str:
    hooks = ", ".join(f'"{w}"' for w in webhooks)
    return "\n".join(
        [
            extra,
            '[feeds.city]\nareas = ["kangjian"]\nwebhooks = [' + hooks + "]\n",
            contact("c-zhang", "care_staff", [http.url("ok", "zhang")]),
            contact("d-li", "family_doctor", [http.url("ok", "li")]),
            resident(INSIDE, "kangjian/kangle/12", ["c-zhang", "d-li"]),
            resident(OUTSIDE, "xinhong/3", ["c-zhang", "d-li"]),
        ]
    )


def found(rid: ResidentId, kind: FindingKind, severity: Severity, at_ms: int) -> Finding:
    n = rid.removeprefix("r-")
    return Finding(rid, kind, severity, at_ms, at_ms, False, DeviceId(f"band-{n}"), {})


class EventReceiver:
    """A platform's HTTP endpoint for CloudEvents: answers 500 while `failing`; `stop()` makes it
    refuse connections, `start()` brings it back on the same port. Keeps every attempt."""

    def __init__(self) -> None:
        self.port = free_port()
        self.failing = False
        self.attempts: list[tuple[str, int]] = []  # (event id, status), in arrival order
        self.events: list[dict[str, Any]] = []  # accepted ones
        self.content_types: set[str] = set()
        self._lock = threading.Lock()
        self._server: _Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bedwatch/events"

    def take(self, event: dict[str, Any], content_type: str) -> int:
        status = 500 if self.failing else 200
        with self._lock:
            self.attempts.append((event["id"], status))
            if status == 200:
                self.events.append(event)
                self.content_types.add(content_type)
        return status

    def start(self) -> None:
        self._server = _Server(self)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, receiver: EventReceiver) -> None:
        super().__init__(("127.0.0.1", receiver.port), _Handler)
        self.receiver = receiver


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        status = self.server.receiver.take(json.loads(body), self.headers["Content-Type"] or "")
        self.send_response_only(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        """Quiet: the test reads the receiver's own record."""


@pytest.fixture
def platform() -> Iterator[EventReceiver]:
    receiver = EventReceiver()
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


def test_events_reach_a_recovering_receiver_once_each_in_order_per_alert(
    database_url: str, http: HttpReceiver, platform: EventReceiver
) -> None:
    # Backoff in the engine's clock, which the test moves: seconds of it cost no real time.
    retry = "[alerts.retry]\nbackoff_base_s = 1.0\nbackoff_max_s = 4.0\n"
    settings = prepare(database_url, feed_site(http, [platform.url], retry))
    clock = FakeClock()
    zhang = ContactId("c-zhang")

    async def scenario() -> None:
        async with running(settings, clock) as (alerts, engine):

            async def steps(n: int, seconds: float) -> None:
                for _ in range(n):
                    clock.advance(seconds)
                    await step(alerts, engine)

            platform.failing = True
            sos = await engine.handle(found(INSIDE, FindingKind.SOS, Severity.CRITICAL, DAY_MS))
            hr = await engine.handle(found(INSIDE, FindingKind.HEART_RATE, Severity.HIGH, DAY_MS))
            away = await engine.handle(found(OUTSIDE, FindingKind.FALL, Severity.CRITICAL, DAY_MS))
            assert sos is not None
            assert hr is not None
            assert away is not None
            await steps(3, 1.0)
            await steps(1, 120.0)  # the SOS goes up to the family doctor: escalated
            await engine.acknowledge(hr, zhang, Via.API)
            await steps(3, 2.0)
            platform.stop()  # now refusing connections
            await engine.acknowledge(sos, zhang, Via.API)
            await engine.resolve(hr, zhang, Via.API)
            await steps(3, 5.0)
            await engine.resolve(sos, zhang, Via.CONSOLE)
            await engine.resolve(away, zhang, Via.API)
            await steps(2, 5.0)
            assert platform.events == []
            assert len(http.got("zhang")) == 3  # pages to people went on meanwhile
            platform.failing = False
            platform.start()
            await steps(12, 5.0)  # past the longest backoff, then one step per queued event

    asyncio.run(scenario())

    audit = query(
        database_url,
        "SELECT id, alert_id, action FROM alert_audit WHERE action IN"
        " ('opened', 'escalated: no ack in time', 'acknowledged', 'resolved') ORDER BY id",
    )
    expected = {
        alert: [str(i) for i, a, _ in audit if a == alert]
        for alert in {a for _, a, _ in audit}
        if alert != away_id(database_url)
    }
    got: dict[int, list[str]] = {}
    for event in platform.events:
        got.setdefault(event["data"]["alert_id"], []).append(event["id"])
    assert got == expected  # each event once, in the order it happened, none from outside
    assert [len(ids) for ids in sorted(got.values(), key=len)] == [3, 4]
    # While the receiver failed, no alert's event was tried before its earlier one got through.
    for alert_ids in expected.values():
        tried = [i for i, _ in platform.attempts if i in alert_ids]
        assert tried == sorted(tried, key=int)
    assert any(status == 500 for _, status in platform.attempts)
    check_envelopes(platform, str(min(got)))
    # Every attempt is in the outbox, the failures with their errors; nothing is left to send.
    rows = query(
        database_url,
        "SELECT result, count(*) FROM notifications WHERE feed_id = 'city' GROUP BY 1 ORDER BY 1",
    )
    assert dict(rows)["delivered"] == 7
    assert set(dict(rows)) == {"delivered", "failed"}


def check_envelopes(platform: EventReceiver, sos_alert: str) -> None:
    """CloudEvents 1.0, structured mode, with the alert's facts as data, as documented."""
    assert platform.content_types == {"application/cloudevents+json; charset=utf-8"}
    for event in platform.events:
        assert conforms(event, {"$ref": "#/components/schemas/CloudEvent"}) == []
    types = [e["type"] for e in platform.events if e["subject"] == sos_alert]
    assert types == [
        "org.bedwatch.alert.opened",
        "org.bedwatch.alert.escalated",
        "org.bedwatch.alert.acknowledged",
        "org.bedwatch.alert.resolved",
    ]
    last = platform.events[-1]
    assert {k: last[k] for k in ("specversion", "source", "datacontenttype")} == {
        "specversion": "1.0",
        "source": "/bedwatch/alerts",
        "datacontenttype": "application/json",
    }
    resolved = [e["data"] for e in platform.events if e["type"].endswith("resolved")]
    assert {(d["resident_id"], d["area"], d["state"], d["by"]) for d in resolved} == {
        ("r-kj", "kangjian/kangle/12", "resolved", "c-zhang")
    }


def away_id(database_url: str) -> AlertId:
    [(alert_id,)] = query(database_url, "SELECT id FROM alerts WHERE resident_id = %s", OUTSIDE)
    return AlertId(alert_id)


@pytest.mark.parametrize(
    ("feeds", "message"),
    [
        ('[feeds.city]\nareas = ["kangjian"]\nhooks = []\n', "unknown key(s) hooks"),
        ("[feeds.city]\nwebhooks = []\n", "feeds.city.areas: expected a non-empty list"),
        ('[feeds.city]\nareas = ["kangjian/"]\n', "is not an area path"),
        ('[feeds.city]\nareas = ["*"]\nwebhooks = ["ftp://x"]\n', "http:// or https:// URLs"),
        ('[feeds."city platform"]\nareas = ["*"]\n', "a feed id is letters, digits"),
        ('[feeds.city]\nareas = ["*"]\ngive_up_after_s = 10\n', "give_up_after_s: expected"),
    ],
)
def test_a_bad_feed_in_the_site_file_is_refused_with_its_key(feeds: str, message: str) -> None:
    with pytest.raises(SiteError, match="^\\[feeds\\]: .*" + re.escape(message)):
        parse_site(feeds)
