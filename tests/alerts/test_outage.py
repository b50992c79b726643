"""An SOS while the database is unreachable still reaches a person, then is recorded."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime

import psycopg

from alerts.fallback import GRACE_S
from bedwatch.migrate import migrate
from bedwatch.service import Service, alerts_component
from bedwatch.site import parse_site
from ingest.registry import store_site
from tests.alerts.harness import DAY_MS, FakeClock, contact, prepare, running, site, sos
from tests.alerts.receivers import HttpReceiver
from tests.support import (
    Device,
    ServiceThread,
    database_down,
    query,
    settings_for,
    wait_until,
)


def test_an_sos_during_a_database_outage_is_paged_from_memory(
    database_url: str, broker_url: str, prefix: str
) -> None:
    with HttpReceiver() as http:
        text = site([contact("c-zhang", "care_staff", [http.url("ok", "zhang")])], ["c-zhang"])
        settings = settings_for(database_url, broker_url, prefix).replace(
            "alerts", serve_http=False
        )
        migrate(settings)
        with psycopg.connect(database_url) as conn, conn.transaction():
            store_site(conn, parse_site(text))
        component = alerts_component(settings)
        with ServiceThread(Service(settings, components=[component])):
            wait_until(component.ready.is_set, 20)
            band = Device(broker_url, "band-0101", prefix)
            with database_down(database_url):
                pressed = time.perf_counter()
                now = int(time.time() * 1000)
                band.send("event", json.dumps({"seq": 1, "ts": now, "type": "sos"}))
                wait_until(lambda: http.got("zhang"), 15, 0.02)
                waited = http.arrival_s["zhang"][0] - pressed
                # Counted once the channel has answered, a moment after the receiver has it.
                wait_until(lambda: component.fallback.paged == 1, 5)
                [page] = http.got("zhang")
                assert "SOS" in page["title"]
                time.sleep(0.5)
            back = datetime.now(UTC)
            # Back up: the service stores the event and the engine opens the alert, with the
            # direct page recorded as its first notice: one press, one page.
            wait_until(lambda: query(database_url, "SELECT kind, state FROM alerts"), 60, 0.2)
            notices = wait_until(
                lambda: query(database_url, "SELECT contact_id, result FROM notifications"), 10
            )
            time.sleep(1.0)  # a second page would have gone out by now
            band.close()
        assert component.fallback.paged == 1
    # Paged without waiting out the grace: the service's own write had just failed for want of
    # the database, so nothing could be recorded in time anyway.
    assert waited < GRACE_S
    assert len(http.got("zhang")) == 1
    assert notices == [("c-zhang", "delivered")]
    # Counted in the service levels at the time it was sent, not when it could be recorded.
    [(paged_s, paged_at, opened_at)] = query(
        database_url, "SELECT press_to_page_s, first_page_at, opened_at FROM alert_answer_times"
    )
    assert 0.0 < paged_s < GRACE_S
    assert paged_at < back <= opened_at
    assert query(
        database_url, "SELECT action, detail->'contacts' FROM alert_audit ORDER BY id"
    ) == [
        ("opened", None),
        ("paged directly", ["c-zhang"]),
    ]
    assert query(database_url, "SELECT type FROM device_events") == [("sos",)]


def test_a_result_the_database_cannot_take_is_recorded_later_and_holds_up_no_page(
    database_url: str, http: HttpReceiver
) -> None:
    text = site(
        [
            contact("c-zhang", "care_staff", [http.url("slowfail", "zhang")]),
            contact("f-wang", "family", [http.url("ok", "wang")]),
        ],
        ["c-zhang", "f-wang"],
    )
    settings = prepare(database_url, text, max_parallel_deliveries=1)
    clock = FakeClock()

    async def scenario() -> None:
        async with running(settings, clock) as (alerts, engine):
            # One sender: the care staff's page (its channel answers a failure after 1.5 s)
            # and then the family's, both taken before the database goes away for 5 s.
            await engine.handle(sos(DAY_MS))
            outage = asyncio.create_task(asyncio.to_thread(outage_of, database_url, 5.0))
            # The family's page goes out during the outage, not after it.
            for _ in range(400):
                if http.got("wang") or outage.done():
                    break
                await asyncio.sleep(0.01)
            assert http.got("wang")
            assert not outage.done()
            await asyncio.wait_for(alerts.sender.idle(), 30)
            await outage

    asyncio.run(scenario())
    assert http.failures == {"zhang": 1}
    rows = query(
        database_url,
        "SELECT contact_id, attempt, result, reason FROM notifications ORDER BY id",
    )
    # Not left 'sending': the failure is recorded and the retry planned, the delivery recorded.
    assert sorted(rows) == [
        ("c-zhang", 1, "failed", "opened"),
        ("c-zhang", 2, "pending", "retry"),
        ("f-wang", 1, "delivered", "opened"),
    ]


def outage_of(database_url: str, seconds: float) -> None:
    time.sleep(0.3)  # the request is on its way
    with database_down(database_url):
        time.sleep(seconds)
