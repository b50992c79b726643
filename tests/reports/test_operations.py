"""The operations report of the scripted month: its figures in the PDF's text, to the second."""

from __future__ import annotations

import asyncio
from datetime import datetime, time

import psycopg
import pytest

from alerts.config import default_config
from bedwatch.reports import operations_pages
from bedwatch.reports.operations import OperationsReport, Period, gather, within
from bedwatch.reports.text import Lang
from tests.month import MONTH, NOW
from tests.reports.pdf import pages, screenshots
from tests.reports.scripted import DAYS, ZONE

# November in Shanghai: every alert of the month (02:00-14:00 UTC) falls on the same day there.
PERIOD = Period(datetime.combine(MONTH, time(0), ZONE), datetime(2026, 12, 1, tzinfo=ZONE))


@pytest.fixture(scope="module")
def report(month_url: str) -> OperationsReport:
    async def read() -> OperationsReport:
        async with await psycopg.AsyncConnection.connect(month_url) as conn:
            return await gather(conn, default_config(), ["*"], PERIOD, NOW)

    return asyncio.run(read())


@pytest.fixture(scope="module")
def zh(report: OperationsReport) -> list[str]:
    pdf = operations_pages.render(report, Lang.ZH)
    screenshots(pdf, "operations-zh")
    return pages(pdf)


def test_answer_times_per_area_to_the_second(zh: list[str]) -> None:
    first = zh[0]
    assert "运营报告 范围：全部区域 · 2026-11-01 至 2026-11-30 · 按区域前 1 级" in first
    # Critical alerts: 30 SOS in kangjian answered in 10, 20, ... 290 s (day 30's never), paged
    # 2 s after the press; 10 falls in hongmei answered in 30 s but one in 400 s, paged in 3 s.
    # Columns: alerts, within 60 s, within 180 s, press to page p50 / max, page to ack and
    # answer p50 / p90 / max, last tier, unanswered.
    assert (
        "全部 40 15 (37.5 %) 27 (67.5 %) 2 s / 3 s 109 s / 261 s / 398 s"
        " 110 s / 262 s / 400 s 1 1" in first
    )
    assert (
        "hongmei 10 9 (90.0 %) 9 (90.0 %) 3 s / 3 s 28 s / 65 s / 398 s"
        " 30 s / 67 s / 400 s 1 0" in first
    )
    assert (
        "kangjian 30 6 (20.0 %) 18 (60.0 %) 2 s / 2 s 149 s / 261 s / 289 s"
        " 150 s / 262 s / 290 s 0 1" in first
    )
    assert "未分区 0 0 0 — / — — / — / — — / — / — 0 0" in first
    # By severity over the whole scope: r-0301's high alert paged in 10 s and never answered,
    # the immobile alerts paged in 5 s and answered in 600 s.
    assert "重要 1 0 (0.0 %) 0 (0.0 %) 10 s / 10 s — / — / — — / — / — 1 1" in first
    assert (
        "提醒 30 0 (0.0 %) 0 (0.0 %) 5 s / 5 s 595 s / 595 s / 595 s"
        " 600 s / 600 s / 600 s 0 0" in first
    )
    assert "关注 0 0 0 — / —" in first
    assert "合计 71 15 (21.1 %) 27 (38.0 %) 3 s / 10 s" in first
    assert "260 s / 600 s / 600 s 2 2" in first


def test_alerts_fleet_and_people(zh: list[str]) -> None:
    text = " ".join(zh[1:])
    # Alerts by kind: columns hongmei, kangjian, no area, total.
    assert "类型 hongmei kangjian 未分区 合计" in text
    assert "SOS 呼救 0 30 0 30" in text
    assert "跌倒 10 0 0 10" in text
    assert "心率异常 0 0 1 1" in text
    assert "长时间未翻身 0 30 0 30" in text
    # Bed-nights reported and coverage over the month; the fleet at NOW; open alerts at NOW.
    assert "全部 4 63 (52.5 %) 40.0 % 2 2 1 1 1 1" in text
    assert "hongmei 1 30 (100.0 %) 50.0 % 1 1 0 0 0 0" in text
    assert "kangjian 2 33 (55.0 %) 55.0 % 1 1 1 1 1 1" in text
    assert "未分区 1 0 (0.0 %) 0.0 % 0 0 0 0 0 0" in text
    assert "“当前在线”及其后各列：2026-12-01 23:00 时的状态" in text
    # Who answered: c-zhang 29 SOS and 30 immobile alerts, c-li the 10 falls.
    assert "张护理员 59 29 600 s / 600 s / 600 s 595 s / 595 s / 595 s" in text
    assert "李护理员 10 10 30 s / 67 s / 400 s 28 s / 65 s / 398 s" in text
    # Nobody answered r-0301's heart rate alert (16:00 in Shanghai) nor the last SOS.
    assert "11-15 16:00 钱老伯 未分区 心率异常 重要 1" in text
    assert "11-30 10:00 王阿婆 kangjian/kangle/12 SOS 呼救 紧急 0" in text


def test_the_series_behind_the_plots(report: OperationsReport) -> None:
    assert (len(report.days), report.days[0]) == (DAYS, MONTH)
    assert [n.reporting for n in report.nights[:7]] == [3, 3, 3, 3, 3, 3, 2]
    assert [n.reporting for n in report.nights[20:]] == [1] * 10
    assert report.nights[-1].coverage == pytest.approx(0.5 / 4)
    # kangjian's pads reported nothing after the 20th, and r-0301's (no area) never did.
    hongmei, kangjian, nowhere = report.group_nights
    assert [(n.reporting, n.coverage) for n in kangjian[20:]] == [(0, 0.0)] * 10
    assert {(n.reporting, n.coverage) for n in nowhere} == {(0, 0.0)}
    assert {n.coverage for n in hongmei} == {0.5}
    assert len(report.times) == 71
    assert sum(n for _, _, n in report.per_day) == 71


def test_in_english(report: OperationsReport) -> None:
    html = operations_pages.html(report, Lang.EN)
    assert "<h1>Operations report</h1>" in html
    assert "<td>All</td><td class=n>40</td><td class=n>15 (37.5 %)</td>" in html
    assert "<td>No area</td>" in html


def test_an_area_groups_scope_stays_within_the_reports() -> None:
    assert within("kangjian", ["*"]) == ["kangjian"]
    assert within("kangjian/kangle", ["kangjian"]) == ["kangjian/kangle"]
    assert within("kangjian", ["kangjian/kangle/5", "hongmei"]) == ["kangjian/kangle/5"]
    assert within("", ["*"]) == [""]
    assert within("", ["kangjian"]) == []
