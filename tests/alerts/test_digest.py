"""The daily digest: when it goes out, what it says, once per day, to whom, in zh and en."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
from collections.abc import AsyncIterator, Callable
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import psycopg
import pypdfium2 as pdfium
import pytest

from alerts.component import Alerts
from alerts.config import default_config, parse_alert_config
from alerts.digest import DigestLoop, day_due
from alerts.engine import Engine
from bedwatch.cli import build_parser
from bedwatch.detector_store import store_findings
from bedwatch.reports.batch import draw_sleep_reports
from bedwatch.settings import Settings
from detectors.findings import Finding, FindingKind, Severity
from detectors.nights import NightSummary
from ingest.records import DeviceId
from tests.alerts.harness import RESIDENT, FakeClock, contact, finding, prepare, running, site
from tests.alerts.receivers import HttpReceiver, SmtpReceiver
from tests.support import query

SHANGHAI = ZoneInfo("Asia/Shanghai")
TEAM = ["c-zhang", "d-li", "d-chen", "f-wang"]


def at(day: int, hour: int, minute: int = 0) -> int:
    """Epoch ms of a local time in Shanghai, November 2025."""
    return int(datetime(2025, 11, day, hour, minute, tzinfo=SHANGHAI).timestamp() * 1000)


def digest_site(http: HttpReceiver, smtp: SmtpReceiver, alerts_toml: str = "") -> str:
    return site(
        [
            contact("c-zhang", "care_staff", [http.url("ok", "zhang")]),
            contact("d-li", "family_doctor", [http.url("ok", "li")]),
            contact("d-chen", "family_doctor", [smtp.url("chen@example.org")], language="en"),
            contact("f-wang", "family", [http.url("ok", "wang")]),
            contact("d-away", "family_doctor", [http.url("ok", "away")]),  # on no care team
        ],
        TEAM,
        '[alerts]\ndigest_at = "07:30"\n' + alerts_toml,
    )


def night(day: int, **values: object) -> NightSummary:
    fields: dict[str, object] = {
        "resident_id": RESIDENT,
        "night": date(2025, 11, day),
        "from_ms": at(day, 18),
        "to_ms": at(day + 1, 12),
        "samples": 60_000,
        "time_in_bed_s": 27_000.0,
        "bedtime_ms": at(day, 22),
        "rise_ms": at(day + 1, 6, 30),
        "sleep_onset_ms": at(day, 22, 40),
        "exits": 2,
        "longest_absence_s": 720.0,
        "restlessness_pct": 8.3,
        "hr_mean": 62.4,
        "hr_min": 55.0,
        "hr_max": 78.0,
        "rr_mean": 15.2,
        "rr_min": 12.0,
        "rr_max": 19.0,
        "pauses": 47,
        "pauses_per_h": 6.2,
        "pause_source": "rr",
        "pauses_wave": 45,
    }
    return NightSummary(**(fields | values))  # type: ignore[arg-type]


def low(kind: FindingKind, at_ms: int, *, cleared: bool = False, **evidence: object) -> Finding:
    band = DeviceId("band-0101")
    return Finding(RESIDENT, kind, Severity.LOW, at_ms, at_ms, cleared, band, evidence)


def sleep_change(at_ms: int, night_iso: str) -> Finding:
    metrics = {"time_in_bed_s": {"value": 27_000.0, "median": 22_200.0, "mad": 900.0, "z": 3.6}}
    return low(FindingKind.SLEEP_CHANGE, at_ms, night=night_iso, nights=14, metrics=metrics)


def store(database_url: str, findings: list[Finding], nights: list[NightSummary]) -> None:
    """As the service stores detector output."""
    with psycopg.connect(database_url) as conn, conn.transaction(), conn.cursor() as cur:
        store_findings(cur, findings, nights)


def seed_yesterday(database_url: str) -> None:
    """The 11-26 digest's material: a day of findings, and nights of which one is current."""
    store(
        database_url,
        [
            low(FindingKind.WRISTBAND_REMOVED, at(25, 7), worn=0),  # before the window
            low(
                FindingKind.APNEA_INDEX,
                at(25, 12),
                night="2025-11-24",
                pauses=47,
                pauses_per_h=16.4,
                time_in_bed_s=27_000.0,
                source="rr",
            ),
            sleep_change(at(25, 12), "2025-11-24"),
            low(FindingKind.LOW_BATTERY, at(25, 14), bat=14),
            low(FindingKind.LOW_BATTERY, at(25, 20), bat=12),
            low(FindingKind.LOW_BATTERY, at(25, 21), cleared=True, bat=30),
            finding(FindingKind.HEART_RATE, Severity.HIGH, at(25, 10), hr=135),  # not low
        ],
        [night(22, exits=9), night(24)],  # the 22nd is too old to show
    )


@contextlib.asynccontextmanager
async def digests(
    settings: Settings, clock: FakeClock, *, interval_s: float = 0.01
) -> AsyncIterator[tuple[Alerts, Engine, DigestLoop]]:
    """The alert engine and sender, with a digest loop running as AlertsComponent runs it."""
    async with running(settings, clock) as (alerts, engine):
        loop = DigestLoop(
            alerts.pool, alerts.sender, alerts.current, clock=clock, interval_s=interval_s
        )
        task = asyncio.create_task(loop.run())
        try:
            yield alerts, engine, loop
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def until(condition: Callable[[], object], timeout_s: float = 5.0) -> None:
    """Poll: the receivers run on threads of their own, with nothing to await."""
    for _ in range(int(timeout_s / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not met within {timeout_s} s")


async def passes(loop: DigestLoop, n: int) -> None:
    """Until the loop has made n more passes at the clock's current time."""
    target = loop.passes + n
    await until(lambda: loop.passes >= target)


def digests_to(http: HttpReceiver, name: str) -> list[str]:
    return [m["message"] for m in http.got(name) if "摘要" in m["title"] or "DIGEST" in m["title"]]


def test_the_digest_goes_out_once_at_local_digest_time_with_the_day_in_it(
    database_url: str, http: HttpReceiver, smtp: SmtpReceiver
) -> None:
    settings = prepare(database_url, digest_site(http, smtp))
    seed_yesterday(database_url)
    clock = FakeClock(at(24, 9))

    async def scenario() -> None:
        async with running(settings, clock) as (alerts, engine):
            # Alerts the care staff had: one before the digest's day, one in it.
            await engine.handle(finding(FindingKind.IMMOBILE, Severity.MEDIUM, at(24, 9)))
            clock.now_ms = at(25, 10)
            await engine.handle(finding(FindingKind.HEART_RATE, Severity.HIGH, at(25, 10), hr=135))
            await alerts.sender.idle()
            loop = DigestLoop(alerts.pool, alerts.sender, alerts.current, clock=clock)
            # From midnight (quiet hours) to a minute before 07:30: nothing.
            for minute in range(0, 7 * 60 + 30, 15):
                clock.now_ms = at(26, 0) + minute * 60_000
                assert await loop.run_due() == 0, minute
            clock.now_ms = at(26, 7, 29)
            assert await loop.run_due() == 0
            clock.now_ms = at(26, 7, 30)
            assert await loop.run_due() == 2
            await alerts.sender.idle()
            for later in (at(26, 7, 31), at(26, 12), at(26, 21, 59)):
                clock.now_ms = later
                assert await loop.run_due() == 0
            await alerts.sender.idle()

    asyncio.run(scenario())
    [li] = [m for m in http.got("li") if "摘要" in m["title"]]
    assert li["title"] == "【每日摘要】11-26：1 位老人，5 项"
    assert li["message"] == (
        "自 11-25 07:30 起\n\n"
        "王阿婆 · 新虹 3-1-201\n"
        "11-24 夜：在床 7小时30分，入睡 22:40，离床 2 次（最长 12 分钟），体动 8.3%\n"
        "心率 62 次/分（55-78），呼吸 15 次/分（12-19），暂停 6.2 次/时\n"
        "关注：夜间呼吸暂停偏多（每小时 16 次暂停）；手环电量低 ×2（电量 12%）\n"
        "睡眠变化（11-24 夜）：在床时间 7小时30分（平时 6小时10分，z +3.6）\n"
        "告警：重要 1"
    )
    [mail] = smtp.to("chen@example.org")
    assert mail.subject == "[DIGEST] 11-26: 1 resident, 5 items"
    for line in (
        "Night 11-24: in bed 7h30m, asleep 22:40, 2 exits (longest 12 min), restless 8.3%",
        "HR 62/min (55-78), RR 15/min (12-19), 6.2 pauses/h",
        "Low: Many breathing pauses last night (16 pauses/h); Wristband battery low ×2"
        " (battery 12%)",
        "Sleep change (night 11-24): time in bed 7h30m (usual 6h10m, z +3.6)",
        "Alerts: 1 high",
    ):
        assert line in mail.body
    # Care staff had their alerts but no digest; family and an unassigned doctor get none.
    assert len(http.got("zhang")) == 2
    assert digests_to(http, "zhang") == []
    assert http.got("wang") == []
    assert http.got("away") == []
    assert query(
        database_url,
        "SELECT contact_id, day, items, residents, window_from, window_to FROM alert_digests"
        " ORDER BY contact_id",
    ) == [
        ("d-chen", date(2025, 11, 26), 5, 1, _dt(at(25, 7, 30)), _dt(at(26, 7, 30))),
        ("d-li", date(2025, 11, 26), 5, 1, _dt(at(25, 7, 30)), _dt(at(26, 7, 30))),
    ]
    assert query(
        database_url,
        "SELECT contact_id, reason, result, attempt FROM notifications"
        " WHERE digest_id IS NOT NULL ORDER BY contact_id",
    ) == [("d-chen", "daily digest", "delivered", 1), ("d-li", "daily digest", "delivered", 1)]


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, SHANGHAI)


def test_a_restart_sends_no_second_digest_and_the_next_one_starts_where_it_ended(
    database_url: str, http: HttpReceiver, smtp: SmtpReceiver
) -> None:
    settings = prepare(database_url, digest_site(http, smtp))
    seed_yesterday(database_url)
    clock = FakeClock(at(26, 7))

    async def before_and_after_a_restart() -> None:
        async with digests(settings, clock) as (alerts, _, loop):
            await passes(loop, 3)
            assert digests_to(http, "li") == []
            clock.now_ms = at(26, 7, 30)
            await until(lambda: digests_to(http, "li") and smtp.to("chen@example.org"))
            await alerts.sender.idle()
        clock.now_ms = at(26, 9)
        async with digests(settings, clock) as (_, _, loop):
            await passes(loop, 3)
        # Stopped for two days. The next digest carries what came after the first was made,
        # more than a day back, and the latest night.
        store(
            database_url,
            [low(FindingKind.WRISTBAND_REMOVED, at(26, 8), worn=0)],
            [night(25), night(26, exits=0, time_in_bed_s=30_000.0)],
        )
        clock.now_ms = at(28, 7, 29)
        async with digests(settings, clock) as (alerts, _, loop):
            await passes(loop, 3)
            assert len(digests_to(http, "li")) == 1
            clock.now_ms = at(28, 7, 30)
            await until(lambda: len(digests_to(http, "li")) == 2)
            await passes(loop, 3)
            await alerts.sender.idle()

    asyncio.run(before_and_after_a_restart())
    first, second = digests_to(http, "li")
    assert "11-24 夜" in first
    assert "手环已摘下" not in first
    assert second.startswith("自 11-26 07:30 起\n\n")
    assert "11-26 夜：在床 8小时20分，入睡 22:40，离床 0 次，体动 8.3%" in second
    assert "关注：手环已摘下\n" in second
    assert "告警：无" in second
    assert len(smtp.to("chen@example.org")) == 2
    assert query(
        database_url, "SELECT day, count(*) FROM alert_digests GROUP BY day ORDER BY day"
    ) == [(date(2025, 11, 26), 2), (date(2025, 11, 28), 2)]


@pytest.mark.parametrize(
    ("roles_toml", "told"),
    [
        ('digest_roles = ["family_doctor", "family"]\n', {"li", "wang"}),
        ('digest_roles = ["care_staff"]\n', {"zhang"}),
        ("digest_roles = []\n", set()),
    ],
)
def test_digest_roles_choose_who_gets_one(
    database_url: str, http: HttpReceiver, smtp: SmtpReceiver, roles_toml: str, told: set[str]
) -> None:
    settings = prepare(database_url, digest_site(http, smtp, roles_toml))
    clock = FakeClock(at(26, 8))

    async def scenario() -> None:
        async with running(settings, clock) as (alerts, _):
            loop = DigestLoop(alerts.pool, alerts.sender, alerts.current, clock=clock)
            await loop.run_due()
            await alerts.sender.idle()

    asyncio.run(scenario())
    names = ("zhang", "li", "wang", "away")
    assert {n for n in names if digests_to(http, n)} == told
    assert all(len(digests_to(http, n)) <= 1 for n in names)
    if "li" in told:
        assert "暂无夜间汇总" in digests_to(http, "li")[0]
        assert "告警：无" in digests_to(http, "li")[0]


def test_a_failing_channel_falls_back_through_the_outbox(
    database_url: str, http: HttpReceiver, smtp: SmtpReceiver
) -> None:
    text = site(
        [contact("d-li", "family_doctor", [http.url("fail", "li"), http.url("ok", "li-2")])],
        ["d-li"],
        '[alerts]\ndigest_at = "07:30"\nretry = { attempts_per_channel = 1 }\n',
    )
    settings = prepare(database_url, text)
    clock = FakeClock(at(26, 7, 45))

    async def scenario() -> None:
        async with running(settings, clock) as (alerts, engine):
            loop = DigestLoop(alerts.pool, alerts.sender, alerts.current, clock=clock)
            assert await loop.run_due() == 1
            await alerts.sender.idle()
            await engine.run_due()  # the scheduler sends the planned fallback
            await alerts.sender.idle()
            assert await loop.run_due() == 0

    asyncio.run(scenario())
    assert http.failures == {"li": 1}
    assert len(digests_to(http, "li-2")) == 1
    assert query(
        database_url,
        "SELECT channel_index, result, reason FROM notifications WHERE digest_id IS NOT NULL"
        " ORDER BY id",
    ) == [
        (0, "failed", "daily digest"),
        (1, "delivered", "fallback: previous channel kept failing"),
    ]


def bedwatch(*argv: str) -> int:
    args = build_parser(argv).parse_args(argv)
    code: int = args.handler(args)
    return code


def test_the_cli_prints_a_preview_and_sends_nothing(
    database_url: str,
    http: HttpReceiver,
    smtp: SmtpReceiver,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prepare(database_url, digest_site(http, smtp))
    seed_yesterday(database_url)
    monkeypatch.setenv("BEDWATCH_DATABASE_URL", database_url)
    assert bedwatch("alerts", "digest", "d-chen", "--date", "2025-11-26") == 0
    out = capsys.readouterr().out
    assert out.startswith("[DIGEST] 11-26: 1 resident, 4 items\n\nSince 11-25 07:30\n")
    assert "Night 11-24: in bed 7h30m" in out
    assert "Alerts: none" in out
    assert bedwatch("alerts", "digest", "nobody", "--date", "2025-11-26") == 1
    assert "no active contact 'nobody'" in capsys.readouterr().err
    assert query(database_url, "SELECT count(*) FROM alert_digests") == [(0,)]
    assert smtp.mails == []


def test_findings_in_late_data_are_in_the_digest_of_the_day_they_arrived(
    database_url: str,
    http: HttpReceiver,
    smtp: SmtpReceiver,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prepare(database_url, digest_site(http, smtp))
    pause = finding(FindingKind.BREATHING_PAUSE, Severity.HIGH, at(22, 3), seconds=41)
    late = [
        dataclasses.replace(pause, late=True),  # arrived in the window: shown
        dataclasses.replace(pause, late=True, cleared=True),  # its end: not a finding to list
        dataclasses.replace(pause, late=True, at_ms=at(20, 3)),  # arrived before: not shown
    ]
    store(database_url, late, [])
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE findings SET detected_at = %s", (_dt(at(25, 9)),))
        conn.execute(
            "UPDATE findings SET detected_at = %s WHERE at = %s", (_dt(at(24, 9)), _dt(at(20, 3)))
        )
    monkeypatch.setenv("BEDWATCH_DATABASE_URL", database_url)
    assert bedwatch("alerts", "digest", "d-chen", "--date", "2025-11-26") == 0
    out = capsys.readouterr().out
    assert out.startswith("[DIGEST] 11-26: 1 resident, 1 item\n")
    assert "In data uploaded late: Breathing pause 11-22 03:00" in out


def test_digest_settings_have_defaults() -> None:
    assert default_config().digest_at == time(12, 30)
    assert default_config().digest_roles == ("family_doctor",)
    assert parse_alert_config({}).digest_roles == ("family_doctor",)
    config = parse_alert_config({"digest_at": "07:15", "digest_roles": ["family", "emergency"]})
    assert (config.digest_at, config.digest_roles) == (time(7, 15), ("family", "emergency"))
    assert parse_alert_config({"digest_roles": []}).digest_roles == ()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"digest_roles": ["doctor"]}, "digest_roles: expected a list of"),
        ({"digest_roles": "family_doctor"}, "digest_roles: expected a list of"),
        ({"digest_roles": ["family", "family"]}, "named twice"),
        ({"digest_at": "7:30"}, "HH:MM"),
        ({"digest_time": "07:30"}, "unknown key"),
    ],
)
def test_bad_digest_settings_are_a_clear_error(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_alert_config(raw)


def test_the_digest_is_due_at_local_time_in_the_residents_zone() -> None:
    config = parse_alert_config({"digest_at": "07:30", "quiet_hours": {"start": "22:00"}})
    london = ZoneInfo("Europe/London")
    before = int(datetime(2025, 11, 26, 7, 29, tzinfo=london).timestamp() * 1000)
    due = int(datetime(2025, 11, 26, 7, 30, tzinfo=london).timestamp() * 1000)
    late = int(datetime(2025, 11, 26, 22, 30, tzinfo=london).timestamp() * 1000)
    assert day_due(config, "Europe/London", before) is None
    assert day_due(config, "Europe/London", due) == date(2025, 11, 26)
    assert day_due(config, "Europe/London", late) is None  # quiet hours: tomorrow's covers it
    # 07:30 in London is 15:30 in Shanghai, long past that day's digest time there.
    assert day_due(config, "Asia/Shanghai", due) == date(2025, 11, 26)
    assert day_due(config, "Asia/Shanghai", at(26, 7, 29)) is None
    # A digest time inside the quiet hours waits for their end.
    early = parse_alert_config({"digest_at": "06:00"})
    assert day_due(early, "Asia/Shanghai", at(26, 6, 59)) is None
    assert day_due(early, "Asia/Shanghai", at(26, 7)) == date(2025, 11, 26)


def test_the_digest_carries_each_residents_sleep_report(
    database_url: str, http: HttpReceiver, smtp: SmtpReceiver
) -> None:
    """By e-mail as a PDF attachment, drawn in a process of its own in the doctor's language;
    a channel that cannot carry files has the link to the same report in the console."""
    settings = prepare(database_url, digest_site(http, smtp))
    seed_yesterday(database_url)
    clock = FakeClock(at(26, 7, 30))
    draw = functools.partial(draw_sleep_reports, database_url)

    async def scenario() -> None:
        async with running(settings, clock) as (alerts, _):
            loop = DigestLoop(
                alerts.pool, alerts.sender, alerts.current, clock=clock, reports=draw,
                console_url="https://care.example.org/console",
            )  # fmt: skip
            assert await loop.run_due() == 2
            await alerts.sender.idle()

    asyncio.run(scenario())
    link = "https://care.example.org/console/residents/r-0101/report.pdf?night=2025-11-24"
    [mail] = smtp.to("chen@example.org")
    assert f"Sleep report: {link}" in mail.body
    [(name, media_type, pdf)] = mail.attachments
    assert (name, media_type) == ("sleep-r-0101-2025-11-24.pdf", "application/pdf")
    document = pdfium.PdfDocument(pdf)
    text = "".join(page.get_textpage().get_text_range() for page in document)
    assert "王阿婆" in text
    assert "Sleep report" in text  # d-chen reads English
    [li] = digests_to(http, "li")
    assert f"睡眠报告：{link}" in li
    # One report per digest (d-li's in Chinese, d-chen's in English), kept with it for retries.
    stored = query(
        database_url, "SELECT name, length(content) > 1000 FROM digest_attachments ORDER BY 1"
    )
    assert stored == [("sleep-r-0101-2025-11-24.pdf", True)] * 2
