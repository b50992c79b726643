"""The operations centre's figures over the scripted month (tests/month.py), to the second."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta

import psycopg
import pytest

from alerts.config import default_config
from alerts.metrics import REGISTRY as ALERT_REGISTRY
from alerts.metrics import AlertCounts
from alerts.model import ContactId, Via
from alerts.operations import (
    AGES,
    Answers,
    AnswerTime,
    Availability,
    Fleet,
    Operations,
    Period,
    Spread,
    alerts_per_day,
    answer_times,
    availability,
    snapshot,
)
from bedwatch.migrate import migrate
from bedwatch.settings import Settings
from tests.alerts.harness import FakeClock, contact, prepare, running, site, sos, step
from tests.alerts.receivers import HttpReceiver
from tests.month import END, MONTH, NOW, START, scripted_ward
from tests.support import query

PERIOD = Period(START, END)


@pytest.fixture
def ward(database_url: str) -> str:
    migrate(Settings().replace("database", url=database_url, create_database=False))
    with psycopg.connect(database_url) as conn, conn.transaction():
        scripted_ward(conn)
    return database_url


def figures(url: str, areas: list[str], depth: int = 1) -> Operations:
    async def go() -> Operations:
        async with await psycopg.AsyncConnection.connect(url) as conn:
            return await snapshot(conn, default_config(), areas, PERIOD, NOW, depth=depth)

    return asyncio.run(go())


def opened(**counts: int) -> dict[str, int]:
    return {age: counts.get(age, 0) for age in AGES}


def test_the_whole_street(ward: str) -> None:
    ops = figures(ward, ["*"])
    every = ops.overall
    assert every.fleet == Fleet(
        beds=4, online=2, silent_1h=2, low_battery=1, strap_off=1, out_of_bed=1
    )
    assert every.open_alerts == {"critical": opened(under_5m=1)}
    assert every.acknowledged == 1
    assert every.by_kind == {"sos": 30, "immobile": 30, "fall": 10, "heart_rate": 1}
    # 30 SOS answered in 10, 20, ... 290 s (day 30's never) and 10 falls in 30 s, one in 400 s.
    assert every.answers["critical"] == Answers(
        alerts=40,
        press_to_page=Spread(40, 2.0, 3.0, 3.0),
        page_to_ack=Spread(39, 109.0, 261.0, 398.0),
        answer=Spread(39, 110.0, 262.0, 400.0),
        within_60s=15,
        within_180s=27,
        last_tier=1,
        unanswered=1,
    )
    assert every.answers["critical"].share_60s == 15 / 40
    assert every.answers["high"] == Answers(
        1, Spread(1, 10.0, 10.0, 10.0), Spread(), Spread(), 0, 0, last_tier=1, unanswered=1
    )
    # A one-step ladder never escalates: no medium alert reached a last tier.
    assert every.answers["medium"].last_tier == 0
    assert every.answers["all"].alerts == 71
    assert every.answers["all"].answer == Spread(69, 260.0, 600.0, 600.0)
    assert (every.answers["all"].last_tier, every.answers["all"].unanswered) == (2, 2)
    assert every.answers["all"].press_to_page == Spread(71, 3.0, 5.0, 10.0)

    assert [g.area for g in ops.groups] == ["hongmei", "kangjian", ""]
    hongmei, kangjian, nowhere = ops.groups
    assert kangjian.fleet == Fleet(2, 1, 1, 1, 1, 1)
    assert hongmei.fleet == Fleet(1, 1, 1, 0, 0, 0)
    assert nowhere.fleet == Fleet(1, 0, 0, 0, 0, 0)
    assert kangjian.open_alerts == {"critical": opened(under_5m=1)}
    assert (kangjian.acknowledged, hongmei.acknowledged, hongmei.open_alerts) == (0, 1, {})
    assert kangjian.answers["critical"].answer == Spread(29, 150.0, 262.0, 290.0)
    assert hongmei.answers["critical"].page_to_ack.max == 398.0
    assert hongmei.answers["critical"].page_to_ack.p90 == pytest.approx(65.0)
    assert (hongmei.answers["critical"].within_60s, hongmei.answers["critical"].last_tier) == (
        9,
        1,
    )
    assert nowhere.by_kind == {"heart_rate": 1}

    zhang, li = ops.workers
    assert (zhang.contact_id, zhang.name, zhang.acknowledged, zhang.critical) == (
        "c-zhang", "张护理员", 59, 29,
    )  # fmt: skip
    assert zhang.page_to_ack == Spread(59, 595.0, 595.0, 595.0)
    assert (li.contact_id, li.acknowledged, li.answer.p50, li.answer.max) == ("c-li", 10, 30, 400)
    assert [(u.resident_id, u.kind, u.tier) for u in ops.unanswered] == [
        ("r-0301", "heart_rate", 1),
        ("r-0101", "sos", 0),
    ]
    [out] = ops.out_of_bed
    assert (out.resident_id, out.name, out.area, out.since) == (
        "r-0101", "王阿婆", "kangjian/kangle/12", NOW - timedelta(seconds=300),
    )  # fmt: skip


def test_a_supervisor_sees_only_their_areas(ward: str) -> None:
    ops = figures(ward, ["kangjian"], depth=2)
    assert [g.area for g in ops.groups] == ["kangjian/kangle"]
    assert ops.overall.by_kind == {"sos": 30, "immobile": 30}
    assert ops.overall.fleet == Fleet(2, 1, 1, 1, 1, 1)
    assert [w.contact_id for w in ops.workers] == ["c-zhang"]
    assert [u.resident_id for u in ops.unanswered] == ["r-0101"]
    deeper = figures(ward, ["kangjian/kangle/5"], depth=3)
    assert deeper.overall.fleet == Fleet(1, 0, 1, 0, 0, 0)
    assert deeper.overall.by_kind == {}
    assert deeper.out_of_bed == []


def test_series_for_the_report(ward: str) -> None:
    async def go() -> tuple[list[AnswerTime], list[tuple[date, str, int]], list[Availability]]:
        async with await psycopg.AsyncConnection.connect(ward) as conn:
            times = await answer_times(conn, ["*"], PERIOD)
            days = await alerts_per_day(conn, ["*"], PERIOD, "Asia/Shanghai")
            await conn.execute(
                "INSERT INTO night_summaries (resident_id, night, from_at, to_at, samples,"
                " time_in_bed_s, exits, longest_absence_s, restlessness_pct, pauses,"
                " pauses_per_h, pause_source, pauses_wave)"
                " VALUES ('r-0101', %s, %s, %s, 32400, 30000, 1, 600, 5, 0, 0, 'rr', 0),"
                " ('r-0201', %s, %s, %s, 16200, 20000, 0, 0, 5, 0, 0, 'rr', 0)",
                (MONTH, START, START + timedelta(hours=18)) * 2,
            )
            nights = await availability(conn, ["*"], [MONTH, MONTH + timedelta(days=1)])
        return times, [(d, str(k), n) for d, k, n in days], nights

    times, days, nights = asyncio.run(go())
    assert len(times) == 71
    # 10:00 and 22:00 in Shanghai: the SOS at 02:00 UTC and the immobile at 14:00 UTC, a day each.
    assert days[:3] == [(MONTH, "fall", 1), (MONTH, "immobile", 1), (MONTH, "sos", 1)]
    # Four pads; two reported on the first night, at 1/2 and 1/4 of a sample a second.
    first, second = nights
    assert (first.beds, first.reporting, second.reporting) == (4, 2, 0)
    assert first.coverage == pytest.approx((0.5 + 0.25) / 4)
    assert second.coverage == 0.0  # nobody reported: not one bed fully covered


def test_the_gauges_per_area(ward: str) -> None:
    counts = AlertCounts()

    async def go() -> None:
        async with await psycopg.AsyncConnection.connect(ward) as conn:
            await counts.refresh(conn, NOW)

    asyncio.run(go())
    samples = {
        (m.name, tuple(sorted(s.labels.items()))): s.value
        for m in counts.collect()
        for s in m.samples
        if m.name.startswith("bedwatch_area")
    }

    def beds(area: str) -> list[float]:
        states = ("registered", "online", "silent_1h", "low_battery", "strap_off", "out_of_bed")
        return [samples["bedwatch_area_beds", (("area", area), ("state", s))] for s in states]

    assert beds("kangjian") == [2, 1, 1, 1, 1, 1]
    assert beds("hongmei") == [1, 1, 1, 0, 0, 0]
    assert beds("none") == [1, 0, 0, 0, 0, 0]
    open_sos = ("bedwatch_area_alerts", (("area", "kangjian"), ("severity", "critical"),
                                         ("state", "open")))  # fmt: skip
    in_hand = ("bedwatch_area_alerts", (("area", "hongmei"), ("severity", "all"),
                                        ("state", "acknowledged")))  # fmt: skip
    assert (samples[open_sos], samples[in_hand]) == (1, 1)


def test_the_answer_histogram_agrees_with_the_view(database_url: str) -> None:
    """Twelve SOS acknowledged 10, 20, ... 120 s after being raised, by the engine's clock."""
    settings = prepare(database_url, site([contact("c-zhang", "care_staff", [])], ["c-zhang"]))
    clock = FakeClock()
    histogram = "bedwatch_alert_answer_seconds"
    before = _answer_samples(histogram)

    async def scenario() -> None:
        async with running(settings, clock) as (_, engine):
            for d in range(1, 13):
                raised = await engine.handle(sos(clock.now_ms))
                assert raised is not None
                clock.advance(d * 10)
                done = await engine.acknowledge(raised, ContactId("c-zhang"), Via.API)
                assert done.outcome == "done"
                await engine.resolve(raised, ContactId("c-zhang"), Via.API)
                clock.advance(60)

    asyncio.run(scenario())
    after = _answer_samples(histogram)
    grew = {key: after[key] - before.get(key, 0.0) for key in after}
    assert grew[f"{histogram}_count"] == 12
    # A difference of two running sums: equal up to rounding.
    assert grew[f"{histogram}_sum"] == pytest.approx(sum(d * 10 for d in range(1, 13)))
    assert (grew[f"{histogram}_bucket:60.0"], grew[f"{histogram}_bucket:180.0"]) == (6, 12)
    viewed = query(database_url, "SELECT answer_s FROM alert_answer_times ORDER BY alert_id")
    assert [s for (s,) in viewed] == [d * 10.0 for d in range(1, 13)]


def _answer_samples(name: str) -> dict[str, float]:
    """The critical series of the answer histogram, keyed by sample name (and bucket)."""
    found: dict[str, float] = {}
    for metric in ALERT_REGISTRY.collect():
        for s in metric.samples:
            if s.name.startswith(name) and s.labels.get("severity") == "critical":
                le = s.labels.get("le")
                found[f"{s.name}:{le}" if le else s.name] = s.value
    return found


def test_first_page_and_escalations_are_counted(database_url: str, http: HttpReceiver) -> None:
    """An SOS pressed 2 s before the engine took it, paged at once, escalated to the doctor at
    120 s and to the emergency contact (the ladder's last step) at 300 s."""
    team = [
        contact("c-zhang", "care_staff", [http.url("ok", "zhang")]),
        contact("d-li", "family_doctor", [http.url("ok", "li")]),
        contact("e-centre", "emergency", [http.url("ok", "centre")]),
    ]
    settings = prepare(database_url, site(team, ["c-zhang", "d-li", "e-centre"]))
    clock = FakeClock()
    before = _samples("critical")

    async def scenario() -> None:
        async with running(settings, clock) as (alerts, engine):
            await engine.handle(sos(clock.now_ms - 2_000))
            await alerts.sender.idle()
            for seconds in (121, 180):  # to 121 s, then to 301 s
                clock.advance(seconds)
                await step(alerts, engine)

    asyncio.run(scenario())
    grew = {key: value - before.get(key, 0.0) for key, value in _samples("critical").items()}
    assert grew["bedwatch_alert_first_page_seconds_count"] == 1
    # Press to page: the 2 s before the engine had it, and the real time the page took.
    assert 2.0 <= grew["bedwatch_alert_first_page_seconds_sum"] < 3.0
    assert grew["bedwatch_alert_escalations_total:false"] == 1
    assert grew["bedwatch_alert_escalations_total:true"] == 1
    [(viewed,)] = query(database_url, "SELECT press_to_page_s FROM alert_answer_times")
    assert viewed == pytest.approx(grew["bedwatch_alert_first_page_seconds_sum"], abs=0.01)


def _samples(severity: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for metric in ALERT_REGISTRY.collect():
        for s in metric.samples:
            if s.labels.get("severity") != severity or "le" in s.labels:
                continue
            last = s.labels.get("last_step")
            found[f"{s.name}:{last}" if last else s.name] = s.value
    return found
