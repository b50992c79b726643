"""The sleep report of a scripted fortnight: its figures in the PDF's text, in zh and en."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import psycopg
import pytest

from bedwatch.reports import sleep_pages
from bedwatch.reports.sleep import SleepReport, gather, sleep_report_pdf
from bedwatch.reports.text import Lang
from ingest.records import ResidentId
from tests.reports import scripted
from tests.reports.pdf import pages, screenshots
from tests.support import service_env

MADE = datetime(2026, 11, 15, 4, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def zh(month_url: str) -> list[str]:
    pdf = sleep_report_pdf(month_url, "r-0101", scripted.NIGHT, "zh", now=MADE)
    screenshots(pdf, "sleep-zh")
    return pages(pdf)


def test_the_night_in_chinese(zh: list[str]) -> None:
    first = zh[0]
    assert "睡眠报告 王阿婆 · 房间 12-301 · 2026-11-14 晚" in first
    assert "生成于 2026-11-15 12:00 CST" in first
    # The night's box: night 14's values, each beside the median of the 13 nights with a summary
    # (nights 1-14 but the 7th: the median is night 8's, e.g. 7:00 + 8 * 10 min in bed).
    assert "入睡 22:14" in first
    assert "在床时长 9:20 近 13 晚中位数 8:20" in first
    assert "离床次数 2 近 13 晚中位数 1.0" in first
    assert "平均心率 74.0 (64-94) 近 13 晚中位数 68.0" in first
    assert "每小时呼吸暂停 7.0 近 13 晚中位数 4.0" in first
    # Findings of the night (18:00 on the 14th to 18:00 on the 15th), late data marked.
    assert "11-14 23:05 心率异常（补传） 提醒 心率 118 次/分" in first
    assert "11-15 03:10 呼吸暂停 重要 暂停 42 秒" in first
    assert "11-12 01:00" not in first  # another night's
    # Every finding of the fortnight, counted by kind and level.
    assert "呼吸暂停 重要 2" in first
    assert "睡眠明显变化 关注 1" in first
    assert "心率异常 提醒 1" in first


def test_fourteen_nights_in_chinese(zh: list[str]) -> None:
    trend = " ".join(zh[1:])
    assert "近 14 晚趋势" in trend
    # Newest first; the night without a summary is a row of dashes.
    assert "2026-11-14 9:20 22:14 2 74.0 15.4 7.0 2026-11-13 9:10 22:13 1 73.0 15.3 6.5" in trend
    assert "2026-11-07 — — — — — —" in trend
    assert "2026-11-01 7:10 22:01 1 61.0 14.1 0.5" in trend
    assert "2026-10-31" not in trend
    assert len(zh) == 2


def test_for_a_contact_in_their_language_from_the_command_line(
    month_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "sleep.pdf"
    done = subprocess.run(
        [sys.executable, "-m", "bedwatch.cli", "report", "sleep", "r-0101", "--for", "d-chen",
         "--night", "2026-11-14", "-o", str(out)],
        env=service_env(BEDWATCH_DATABASE_URL=month_url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    pdf = out.read_bytes()
    screenshots(pdf, "sleep-en")
    text = pages(pdf)
    assert "Sleep report 王阿婆 · Room 12-301 · night of 2026-11-14" in text[0]
    assert "Time in bed 9:20 Median of 13 nights 8:20" in text[0]
    assert "11-15 03:10 Breathing pause High pause 42 s" in text[0]
    assert "Breathing pause High 2" in text[0]


def test_a_resident_without_nights(month_url: str) -> None:
    """r-0301's pad never reported: the report says so, and its plots draw empty."""

    async def read() -> SleepReport:
        async with await psycopg.AsyncConnection.connect(month_url) as conn:
            return await gather(conn, ResidentId("r-0301"), None, MADE)

    report = asyncio.run(read())
    assert report.night == date(2026, 11, 14)  # the night under way at MADE, in Shanghai
    assert (report.nights, report.findings) == ((), ())
    text = sleep_pages.html(report, Lang.ZH)
    assert "这一晚没有睡眠汇总" in text
    assert text.count("<img") == 2
