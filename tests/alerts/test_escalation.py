"""Routing, escalation, acks, retries and fallbacks, against real SMTP and HTTP receivers."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import psycopg

from alerts.model import AlertId, ContactId, Via
from bedwatch.detector_store import store_findings
from bedwatch.site import parse_site
from detectors.findings import Finding, FindingKind, Severity
from ingest.records import DeviceId, ResidentId
from ingest.registry import store_site
from tests.alerts.harness import (
    DAY_MS,
    FakeClock,
    contact,
    finding,
    prepare,
    running,
    site,
    sos,
    step,
)
from tests.alerts.receivers import HttpReceiver, SmtpReceiver
from tests.support import query, wait_until

TEAM = ["c-zhang", "f-wang", "d-li", "e-centre"]


def standard_site(http: HttpReceiver, smtp: SmtpReceiver, alerts_toml: str = "") -> str:
    return site(
        [
            contact("c-zhang", "care_staff", [http.url("ok", "zhang")]),
            contact("f-wang", "family", [smtp.url("wang@example.org")], language="en"),
            contact("d-li", "family_doctor", [http.url("ok", "li")]),
            contact("e-centre", "emergency", [http.url("ok", "centre")]),
        ],
        TEAM,
        alerts_toml,
    )


def test_sos_reaches_tier_one_at_once_in_each_language(
    database_url: str, http: HttpReceiver, smtp: SmtpReceiver
) -> None:
    settings = prepare(database_url, standard_site(http, smtp))
    clock = FakeClock()

    async def scenario() -> None:
        async with running(settings, clock) as (alerts, engine):
            await engine.handle(sos(DAY_MS - 30_000, presses=2))
            await alerts.sender.idle()

    asyncio.run(scenario())
    [zh] = http.got("zhang")
    assert zh["title"] == "【紧急】王阿婆 SOS 呼救"
    assert "哪里：新虹 3-1-201" in zh["message"]
    assert "按键 2 次" in zh["message"]
    assert "http://127.0.0.1:8080/a/" in zh["message"]
    [mail] = smtp.to("wang@example.org")
    assert mail.subject == "[CRITICAL] 王阿婆 SOS call"
    assert "Where: 新虹 3-1-201" in mail.body
    assert "Since: 11-26 09:59 (0 min ago)" in mail.body
    assert http.got("li") == []  # the doctor is tier 2
    assert http.got("centre") == []
    rows = query(
        database_url,
        "SELECT contact_id, attempt, result, reason FROM notifications ORDER BY contact_id",
    )
    assert rows == [("c-zhang", 1, "delivered", "opened"), ("f-wang", 1, "delivered", "opened")]


def test_no_ack_escalates_by_the_ladder_with_reminders(
    database_url: str, http: HttpReceiver, smtp: SmtpReceiver
) -> None:
    settings = prepare(database_url, standard_site(http, smtp))
    clock = FakeClock()

    async def scenario() -> None:
        async with running(settings, clock) as (alerts, engine):
            await engine.handle(sos(DAY_MS))
            await alerts.sender.idle()
            clock.advance(119)
            await step(alerts, engine)
            assert http.got("li") == []
            clock.advance(1)
            await step(alerts, engine)
            assert len(http.got("li")) == 1  # tier 2 at 2 min
            await step(alerts, engine)
            clock.advance(120)  # 4 min: a reminder to everyone told so far
            await step(alerts, engine)
            clock.advance(60)  # 5 min: the emergency contact
            await step(alerts, engine)

    asyncio.run(scenario())
    assert len(http.got("centre")) == 1
    assert len(http.got("li")) == 2  # escalation, then the reminder
    assert "（提醒）" in http.got("li")[1]["title"]
    assert len(http.got("zhang")) == 2
    assert len(smtp.to("wang@example.org")) == 2
    reasons = query(
        database_url, "SELECT reason, count(*) FROM notifications GROUP BY 1 ORDER BY 1"
    )
    assert reasons == [
        ("escalated: no ack in time", 2),
        ("opened", 2),
        ("reminder: not acknowledged", 3),
    ]


def test_ack_stops_escalation_reminders_and_retries(
    database_url: str, http: HttpReceiver, smtp: SmtpReceiver
) -> None:
    text = site(
        [
            contact("c-zhang", "care_staff", [http.url("ok", "zhang")]),
            contact("f-wang", "family", [http.url("fail", "wang")]),
            contact("d-li", "family_doctor", [http.url("ok", "li")]),
        ],
        ["c-zhang", "f-wang", "d-li"],
    )
    settings = prepare(database_url, text)
    clock = FakeClock()

    async def scenario() -> None:
        async with running(settings, clock) as (alerts, engine):
            alert = await engine.handle(sos(DAY_MS))
            await alerts.sender.idle()
            assert alert is not None
            decision = await engine.acknowledge(alert, ContactId("c-zhang"), Via.API)
            assert decision.outcome == "done"
            again = await engine.acknowledge(alert, ContactId("d-li"), Via.API)
            assert again.outcome == "already"
            for _ in range(10):
                clock.advance(60)
                await step(alerts, engine)

    asyncio.run(scenario())
    assert len(http.got("zhang")) == 1
    assert http.got("li") == []
    assert http.failures == {"wang": 1}  # its retry was cancelled by the ack
    assert query(database_url, "SELECT state, acked_by, next_action_at FROM alerts") == [
        ("acknowledged", "c-zhang", None)
    ]
    assert query(database_url, "SELECT count(*) FROM notifications WHERE result = 'cancelled'") == [
        (1,)
    ]
    audit = query(database_url, "SELECT actor, action, via FROM alert_audit ORDER BY id")
    assert audit == [("system", "opened", "system"), ("c-zhang", "acknowledged", "api")]


def test_a_channel_failing_three_times_falls_back_to_the_next(
    database_url: str, http: HttpReceiver, smtp: SmtpReceiver
) -> None:
    text = site(
        [contact("c-zhang", "care_staff", [http.url("fail", "zhang"), smtp.url("z@example.org")])],
        ["c-zhang"],
    )
    settings = prepare(database_url, text)
    clock = FakeClock()

    async def scenario() -> None:
        async with running(settings, clock) as (alerts, engine):
            await engine.handle(finding(FindingKind.HEART_RATE, Severity.HIGH, DAY_MS, hr=140))
            await alerts.sender.idle()
            for _ in range(3):
                clock.advance(60)  # past any backoff
                await step(alerts, engine)

    asyncio.run(scenario())
    assert http.failures == {"zhang": 3}
    [mail] = smtp.to("z@example.org")
    assert "心率 140 次/分" in mail.body
    rows = query(
        database_url,
        "SELECT channel_index, attempt, result, reason, retryable, error IS NOT NULL"
        " FROM notifications ORDER BY id",
    )
    assert rows == [
        (0, 1, "failed", "opened", True, True),
        (0, 2, "failed", "retry", True, True),
        (0, 3, "failed", "retry", True, True),
        (1, 1, "delivered", "fallback: previous channel kept failing", None, False),
    ]
    due = query(
        database_url,
        "SELECT extract(epoch FROM due_at - created_at) FROM notifications WHERE reason = 'retry'",
    )
    assert all(0.5 <= float(d) <= 4.0 for (d,) in due)  # 2 s, then 4 s, each with jitter


def test_a_hanging_channel_times_out_without_delaying_others(
    database_url: str, http: HttpReceiver, smtp: SmtpReceiver
) -> None:
    text = site(
        [
            contact("c-hang", "care_staff", [http.url("hang", "hang")]),
            contact("c-zhang", "care_staff", [http.url("ok", "zhang")]),
        ],
        ["c-hang", "c-zhang"],
    )
    settings = prepare(database_url, text, delivery_timeout_s=1.5)
    clock = FakeClock()
    timings: dict[str, float] = {}

    async def scenario() -> None:
        async with running(settings, clock) as (alerts, engine):
            started = time.perf_counter()
            await engine.handle(sos(DAY_MS))
            for _ in range(500):  # a bounded wait for the other contact's message
                if http.got("zhang"):
                    break
                await asyncio.sleep(0.01)
            timings["other"] = http.arrival_s["zhang"][0] - started
            await alerts.sender.idle()
            timings["hang"] = time.perf_counter() - started

    asyncio.run(scenario())
    assert timings["other"] < 1.0  # not held behind the hanging channel
    assert 1.4 < timings["hang"] < 10
    [(result, error, duration)] = query(
        database_url,
        "SELECT result, error, duration_ms FROM notifications WHERE contact_id = 'c-hang'"
        " AND attempt = 1",
    )
    assert result == "failed"
    assert "1.5 s" in error
    assert duration >= 1400


def test_restart_mid_escalation_resumes_where_it_was(
    database_url: str, http: HttpReceiver, smtp: SmtpReceiver
) -> None:
    settings = prepare(database_url, standard_site(http, smtp))
    clock = FakeClock()

    async def first_run() -> AlertId | None:
        async with running(settings, clock) as (alerts, engine):
            alert = await engine.handle(sos(DAY_MS))
            await alerts.sender.idle()
            return alert

    async def second_run() -> None:
        async with running(settings, clock) as (alerts, engine):
            await step(alerts, engine)
            await step(alerts, engine)

    alert = asyncio.run(first_run())
    assert alert is not None
    clock.advance(130)  # the service was down past the tier 2 deadline
    asyncio.run(second_run())
    assert len(http.got("li")) == 1
    # Tier 1 is not told again: its message went out before the stop, and the reminder
    # clock restarts with the tier 2 notice.
    assert len(http.got("zhang")) == 1
    assert http.got("centre") == []
    assert query(database_url, "SELECT tier, state FROM alerts") == [(1, "open")]


def test_a_critical_alert_that_reaches_nobody_escalates_at_once(
    database_url: str, http: HttpReceiver, smtp: SmtpReceiver
) -> None:
    text = site(
        [
            contact("c-zhang", "care_staff", [http.url("fail", "zhang")]),
            contact("d-li", "family_doctor", [http.url("ok", "li")]),
        ],
        ["c-zhang", "d-li"],
        "[alerts.retry]\nattempts_per_channel = 1\n",
    )
    settings = prepare(database_url, text)
    clock = FakeClock()

    async def scenario() -> None:
        async with running(settings, clock) as (alerts, engine):
            await engine.handle(sos(DAY_MS))
            await alerts.sender.idle()
            clock.advance(1)
            await step(alerts, engine)

    asyncio.run(scenario())
    [message] = http.got("li")
    assert "SOS" in message["title"]
    assert query(database_url, "SELECT reason FROM notifications WHERE contact_id = 'd-li'") == [
        ("escalated: nobody reached",)
    ]


def test_quiet_hours_hold_a_low_alert_but_never_an_sos(
    database_url: str, http: HttpReceiver, smtp: SmtpReceiver
) -> None:
    # Low severity goes to the daily digest by default; a site that pages for it holds the page
    # through quiet hours.
    paging = '[alerts.ladders.low]\nsteps = [{ after_s = 0, roles = ["family_doctor"] }]\n'
    settings = prepare(database_url, standard_site(http, smtp, paging))
    night = DAY_MS + 13 * 3600_000  # 23:00 in Shanghai
    clock = FakeClock(night)

    async def scenario() -> None:
        async with running(settings, clock) as (alerts, engine):
            low = finding(FindingKind.APNEA_INDEX, Severity.LOW, night, pauses_per_h=21.5)
            await engine.handle(low)
            await engine.handle(sos(night))
            await alerts.sender.idle()
            assert http.got("li") == []
            assert len(http.got("zhang")) == 1
            clock.advance(7 * 3600 + 59 * 60)  # 06:59
            await step(alerts, engine)
            assert [m["title"] for m in http.got("li")] == ["【紧急】王阿婆 SOS 呼救"] * 1
            clock.advance(60)  # 07:00: quiet hours end
            await step(alerts, engine)

    asyncio.run(scenario())
    titles = [m["title"] for m in http.got("li")]
    assert "【关注】王阿婆 夜间呼吸暂停偏多" in titles
    assert "每小时 22 次暂停" in http.got("li")[-1]["message"]


def test_a_low_alert_is_recorded_for_the_digest_and_paged_to_nobody_by_default(
    database_url: str, http: HttpReceiver, smtp: SmtpReceiver
) -> None:
    settings = prepare(database_url, standard_site(http, smtp))
    noon = DAY_MS + 4 * 3600_000  # 14:00 in Shanghai, outside quiet hours
    clock = FakeClock(noon)

    async def scenario() -> None:
        async with running(settings, clock) as (alerts, engine):
            await engine.handle(
                finding(FindingKind.APNEA_INDEX, Severity.LOW, noon, pauses_per_h=21.5)
            )
            await alerts.sender.idle()
            clock.advance(3600)
            await step(alerts, engine)

    asyncio.run(scenario())
    assert [http.got(who) for who in ("zhang", "li", "centre")] == [[], [], []]
    assert smtp.to("wang@example.org") == []
    assert query(database_url, "SELECT kind, severity, state FROM alerts") == [
        ("apnea_index", "low", "open")
    ]


def test_a_new_sos_on_an_acknowledged_alert_pages_again_but_a_repeat_does_not(
    database_url: str, http: HttpReceiver, smtp: SmtpReceiver
) -> None:
    settings = prepare(database_url, standard_site(http, smtp))
    clock = FakeClock()

    async def scenario() -> None:
        async with running(settings, clock) as (alerts, engine):
            first = await engine.handle(sos(clock()))
            await alerts.sender.idle()
            assert first is not None
            await engine.acknowledge(first, ContactId("c-zhang"), Via.API)
            # A second press inside the join window repeats the acknowledged emergency.
            repeat = Finding(
                sos(clock()).resident_id,
                FindingKind.SOS,
                Severity.CRITICAL,
                clock() + 30_000,
                clock(),
                device_id=DeviceId("band-0101"),
            )
            assert await engine.handle(repeat) == first
            await alerts.sender.idle()
            assert len(http.got("zhang")) == 1
            clock.advance(3 * 3600)
            again = await engine.handle(sos(clock()))
            await alerts.sender.idle()
            assert again == first  # the same alert, open again: latched until resolved
            assert len(http.got("zhang")) == 2
            clock.advance(121)
            await step(alerts, engine)  # the ladder starts again: the doctor after 2 min
            assert len(http.got("li")) == 1

    asyncio.run(scenario())
    assert query(database_url, "SELECT state, count FROM alerts") == [("open", 3)]
    events = query(database_url, "SELECT action FROM alert_audit ORDER BY id")
    assert [e for (e,) in events if e in ("opened", "acknowledged", "re-opened")] == [
        "opened",
        "acknowledged",
        "re-opened",
    ]


def test_an_ack_cancels_messages_still_waiting_for_a_sender(
    database_url: str, http: HttpReceiver, smtp: SmtpReceiver
) -> None:
    # One sender for what is not critical, held by a hanging channel: the other contacts'
    # messages wait in its queue.
    text = site(
        [
            contact("c-hang", "care_staff", [http.url("hang", "hang")]),
            contact("c-zhang", "care_staff", [http.url("ok", "zhang")]),
            contact("c-wu", "care_staff", [http.url("ok", "wu")]),
        ],
        ["c-hang", "c-zhang", "c-wu"],
    )
    settings = prepare(database_url, text, delivery_timeout_s=1.5, max_parallel_deliveries=1)
    clock = FakeClock()

    async def scenario() -> None:
        async with running(settings, clock) as (alerts, engine):
            alert = await engine.handle(
                finding(FindingKind.HEART_RATE, Severity.HIGH, DAY_MS, hr=138)
            )
            assert alert is not None
            await asyncio.sleep(0.3)  # the sender is stuck on the hanging channel
            await engine.acknowledge(alert, ContactId("c-hang"), Via.API)
            await alerts.sender.idle()

    asyncio.run(scenario())
    assert http.got("zhang") == []
    assert http.got("wu") == []
    results = query(
        database_url,
        "SELECT contact_id, result FROM notifications WHERE contact_id <> 'c-hang' ORDER BY 1",
    )
    assert results == [("c-wu", "cancelled"), ("c-zhang", "cancelled")]


def test_an_sos_for_a_resident_registered_after_start_is_alerted(
    database_url: str, http: HttpReceiver, smtp: SmtpReceiver
) -> None:
    settings = prepare(database_url, standard_site(http, smtp))
    clock = FakeClock()
    newcomer = standard_site(http, smtp).replace('"r-0101"', '"r-0202"').replace("-0101", "-0202")

    async def scenario() -> AlertId | None:
        async with running(settings, clock) as (alerts, engine):
            with psycopg.connect(database_url) as conn, conn.transaction():
                store_site(conn, parse_site(newcomer))
            press = sos(clock())
            alert = await engine.handle(
                Finding(
                    ResidentId("r-0202"),
                    press.kind,
                    press.severity,
                    press.at_ms,
                    press.started_ms,
                    device_id=DeviceId("band-0202"),
                )
            )
            await alerts.sender.idle()
            return alert

    assert asyncio.run(scenario()) is not None
    assert query(database_url, "SELECT resident_id, kind FROM alerts") == [("r-0202", "sos")]
    assert len(http.got("zhang")) == 1


def test_a_graver_severity_pages_again_even_if_acknowledged_and_escalates_from_then(
    database_url: str, http: HttpReceiver, smtp: SmtpReceiver
) -> None:
    settings = prepare(database_url, standard_site(http, smtp))
    clock = FakeClock()
    hr = FindingKind.HEART_RATE

    async def scenario() -> None:
        async with running(settings, clock) as (alerts, engine):
            first = await engine.handle(finding(hr, Severity.MEDIUM, DAY_MS, hr=115))
            await alerts.sender.idle()
            assert first is not None
            await engine.acknowledge(first, ContactId("c-zhang"), Via.API)
            clock.advance(30 * 60)  # half an hour on, the heart rate is worse
            raised = await engine.handle(finding(hr, Severity.HIGH, clock(), hr=138))
            assert raised == first
            await alerts.sender.idle()
            assert len(http.got("zhang")) == 2  # told again: the ack was of the milder alert
            assert http.got("li") == []  # the doctor's 10 min run from now, not from the opening
            clock.advance(9 * 60)
            await step(alerts, engine)
            assert http.got("li") == []
            clock.advance(61)
            await step(alerts, engine)
            assert len(http.got("li")) == 1

    asyncio.run(scenario())
    assert query(database_url, "SELECT severity, state, acked_at FROM alerts") == [
        ("high", "open", None)
    ]
    actions = query(database_url, "SELECT action FROM alert_audit ORDER BY id")
    assert [a for (a,) in actions][:3] == ["opened", "acknowledged", "severity raised"]


def test_a_shortened_ladder_applies_sanely_to_alerts_already_on_it(
    database_url: str, http: HttpReceiver, smtp: SmtpReceiver
) -> None:
    settings = prepare(database_url, standard_site(http, smtp))
    clock = FakeClock()
    one_step = (
        "[alerts.ladders.critical]\nremind_every_s = 120\n"
        'steps = [{ after_s = 0, roles = ["care_staff", "family"] }]\n'
    )

    async def scenario() -> None:
        async with running(settings, clock) as (alerts, engine):
            await engine.handle(sos(DAY_MS))
            await alerts.sender.idle()
            clock.advance(300)
            await step(alerts, engine)
            await step(alerts, engine)
            assert len(http.got("centre")) == 1  # on the third and last step
            with psycopg.connect(database_url) as conn, conn.transaction():
                store_site(conn, parse_site(standard_site(http, smtp, one_step)))
            await alerts.reload()
            for _ in range(3):
                clock.advance(60)
                await step(alerts, engine)

    asyncio.run(scenario())
    # Past the new ladder's end the alert stands on its last step: reminded there, not lost.
    assert "（提醒）" in http.got("zhang")[-1]["title"]
    assert len(http.got("centre")) == 1
    assert query(database_url, "SELECT action FROM alert_audit WHERE action = 'step_failed'") == []


def test_a_changed_ladder_reschedules_the_alerts_already_on_it(
    database_url: str, http: HttpReceiver, smtp: SmtpReceiver
) -> None:
    silent = (
        "[alerts.ladders.critical]\nremind_every_s = 0\n"
        'steps = [{ after_s = 0, roles = ["care_staff", "family"] }]\n'
    )
    reminding = silent.replace("remind_every_s = 0", "remind_every_s = 60")
    settings = prepare(database_url, standard_site(http, smtp, silent))
    clock = FakeClock()

    async def scenario() -> None:
        async with running(settings, clock) as (alerts, engine):
            await engine.handle(sos(DAY_MS))
            await alerts.sender.idle()
            clock.advance(600)
            await step(alerts, engine)
            assert len(http.got("zhang")) == 1  # one step, no reminders: nothing more is due
            # The site now wants reminders every minute: the alert already open gets them too
            # (it was scheduled by the old ladder, which had nothing more to do).
            with psycopg.connect(database_url) as conn, conn.transaction():
                store_site(conn, parse_site(standard_site(http, smtp, reminding)))
            await alerts.reload()
            await step(alerts, engine)  # looked at again: the last notice is 10 min old
            clock.advance(60)
            await step(alerts, engine)

    asyncio.run(scenario())
    titles = [m["title"] for m in http.got("zhang")]
    assert len(titles) == 3
    assert all("（提醒）" in t for t in titles[1:])


def test_one_alert_failing_its_step_does_not_hold_up_the_others(
    database_url: str, http: HttpReceiver, smtp: SmtpReceiver
) -> None:
    settings = prepare(database_url, standard_site(http, smtp))
    clock = FakeClock()
    other = standard_site(http, smtp).replace('"r-0101"', '"r-0202"').replace("-0101", "-0202")
    with psycopg.connect(database_url) as conn, conn.transaction():
        store_site(conn, parse_site(other))

    async def scenario() -> None:
        async with running(settings, clock) as (alerts, engine):
            await engine.handle(sos(DAY_MS))
            press = sos(DAY_MS + 1)
            await engine.handle(replace(press, resident_id=ResidentId("r-0202")))
            await alerts.sender.idle()
            # r-0101 leaves the registry while its alert is open: its next step cannot be
            # planned (no such resident) and must not stop r-0202's escalation.
            with psycopg.connect(database_url) as conn:
                conn.execute("UPDATE residents SET active = false WHERE id = 'r-0101'")
            await alerts.reload()
            clock.advance(120)
            await step(alerts, engine)
            await step(alerts, engine)

    asyncio.run(scenario())
    escalated = query(
        database_url,
        "SELECT a.resident_id FROM notifications n JOIN alerts a ON a.id = n.alert_id"
        " WHERE starts_with(n.reason, 'escalated')",
    )
    assert escalated == [("r-0202",)]  # the doctor, for r-0202 only
    [(detail,)] = query(database_url, "SELECT detail FROM alert_audit WHERE action = 'step_failed'")
    assert detail["retry_in_s"] == 30


def test_a_stored_finding_handed_over_twice_is_acted_on_once(
    database_url: str, http: HttpReceiver, smtp: SmtpReceiver
) -> None:
    settings = prepare(database_url, standard_site(http, smtp))
    clock = FakeClock()
    press = sos(DAY_MS)
    ids: list[int] = []
    with psycopg.connect(database_url) as conn, conn.transaction(), conn.cursor() as cur:
        store_findings(cur, [press], [], ids)

    async def scenario() -> list[AlertId | None]:
        async with running(settings, clock) as (alerts, engine):
            first = await engine.handle(press, ids[0])
            again = await engine.handle(press, ids[0])  # taken up again after a crash
            await alerts.sender.idle()
            return [first, again]

    first, again = asyncio.run(scenario())
    assert first is not None
    assert again is None
    assert len(http.got("zhang")) == 1
    assert len(smtp.to("wang@example.org")) == 1
    assert query(database_url, "SELECT count FROM alerts") == [(1,)]
    assert query(database_url, "SELECT handled_at IS NOT NULL FROM findings") == [(True,)]


def test_channels_that_hang_never_delay_the_page_to_one_that_works(
    database_url: str, http: HttpReceiver, smtp: SmtpReceiver
) -> None:
    hung = [f"c-hang{i}" for i in range(6)]
    text = site(
        [contact(c, "care_staff", [http.url("hang", c)]) for c in hung]
        + [contact("c-zhang", "care_staff", [http.url("ok", "zhang")])],
        [*hung, "c-zhang"],
    )
    # One general sender and a 3 s limit per attempt: before critical sends had workers and
    # threads of their own, the page to c-zhang waited behind the hung ones.
    settings = prepare(database_url, text, delivery_timeout_s=3.0, max_parallel_deliveries=1)
    clock = FakeClock()

    async def scenario() -> float:
        async with running(settings, clock) as (_alerts, engine):
            # Things to do for the general sender meanwhile: a heart rate alert to the same team.
            await engine.handle(finding(FindingKind.HEART_RATE, Severity.HIGH, DAY_MS, hr=138))
            await asyncio.sleep(0.1)
            started = time.perf_counter()
            await engine.handle(replace(sos(DAY_MS + 1000), resident_id=ResidentId("r-0101")))
            paged = lambda: [m for m in http.got("zhang") if "SOS" in m["title"]]  # noqa: E731
            await asyncio.to_thread(wait_until, paged, 10, 0.01)
            return time.perf_counter() - started

    assert asyncio.run(scenario()) < 2.0
