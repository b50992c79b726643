"""The console in headless Chromium against the real service: live SOS, ack, night plots, and
the operations view over tests/month.py on a desktop and a phone."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from playwright.sync_api import Browser, Page, ViewportSize, expect, sync_playwright

from tests.console.site import (
    Running,
    last_night,
    play_night,
    press_sos,
    running_month,
    running_site,
)
from tests.month import NOW
from tests.support import query, wait_until

CHROMIUM = os.environ.get("BEDWATCH_TEST_CHROMIUM") or shutil.which("chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "console"
PHONE = ViewportSize(width=390, height=844)
DESKTOP = ViewportSize(width=1280, height=900)

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)"
)


@pytest.fixture
def browser() -> Iterator[Browser]:
    assert CHROMIUM is not None
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def month() -> Iterator[Running]:
    with running_month() as run:
        yield run


def log_in(page: Page, run: Running, contact: str = "c-zhang") -> None:
    page.goto(f"{run.base}/console/")
    assert page.url.endswith("/console/login")
    page.fill("input[name=contact_id]", contact)
    page.fill("input[name=token]", run.tokens[contact])
    page.click("form.login button")
    page.wait_for_url(f"{run.base}/console/")


def shot(page: Page, name: str, folder: Path = ARTIFACTS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 5_000
    return path


def test_live_sos_then_ack_and_a_night(
    browser: Browser, database_url: str, broker_url: str, prefix: str
) -> None:
    night = last_night()
    with running_site(database_url, broker_url, prefix) as run:
        sent = play_night(run, night)
        stored = "SELECT count(*) FROM mattress_samples"
        wait_until(lambda: query(database_url, stored)[0][0] == sent)
        page = browser.new_page(viewport=DESKTOP)
        log_in(page, run)
        expect(page.locator("#live")).to_have_text("实时")  # the stream is connected
        expect(page.locator("#alerts .empty")).to_be_visible()
        card = page.locator(".resident[data-resident='r-0101']")
        expect(card.locator(".bed")).to_have_text("在床")
        expect(card.locator(".hr b")).to_have_text("66")
        expect(card.locator(".devices li.online")).to_have_count(2)
        expect(card).to_contain_text("电量 81%")
        page.evaluate("window.stillHere = true")

        press_sos(run)
        alert = page.locator(".alert.sev-critical.state-open")
        expect(alert).to_contain_text("SOS 呼救", timeout=5_000)
        assert page.evaluate("window.stillHere") is True  # arrived without a reload
        shot(page, "alerts-open-desktop.png")

        alert.locator("button.ack").click()
        acked = page.locator(".alert.state-acknowledged")
        expect(acked).to_contain_text("已由 张护理员 确认")
        expect(acked.locator("button.ack")).to_have_count(0)
        expect(page.locator("#notice")).to_have_text("已完成")
        assert page.evaluate("window.stillHere") is True
        audit = "SELECT actor, action, via FROM alert_audit ORDER BY id"
        assert query(database_url, audit) == [
            ("system", "opened", "system"),
            ("c-zhang", "acknowledged", "console"),
        ]
        shot(page, "alerts-acked-desktop.png")

        page.click("a.lang")
        expect(page.locator("h1")).to_contain_text("Active alerts")
        expect(page.locator(".alert.state-acknowledged .state")).to_have_text("Acknowledged")

        phone = browser.new_page(viewport=PHONE, device_scale_factor=2)
        log_in(phone, run)
        expect(phone.locator(".alert.state-acknowledged")).to_be_visible()
        width = phone.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], "the page scrolls sideways on a phone"
        shot(phone, "alerts-phone.png")

        phone.goto(f"{run.base}/console/residents/r-0101/night?night={night.isoformat()}")
        for name in ("hr", "rr", "occ", "move"):
            path = phone.locator(f"svg.chart-{name} path.series").get_attribute("d") or ""
            # One point (line) or one shape (area, bars) per minute of the 8 h played.
            assert path.count("M") + path.count("L") >= 460, f"{name}: {path[:80]!r}"
        expect(phone.locator(".night .empty")).to_have_count(0)
        shot(phone, "night-phone.png")
        page.goto(phone.url)
        shot(page, "night-desktop.png")


def test_operations_on_a_desktop_update_live(browser: Browser, month: Running) -> None:
    page = browser.new_page(viewport=DESKTOP)
    log_in(page, month, "s-all")
    page.click("header a.page[href='/console/operations']")
    expect(page.locator("#live")).to_have_text("实时")
    page.click(".choices a:has-text('上月')")
    expect(page.locator("#ops-period h2")).to_contain_text("2026-11-01 – 2026-11-30")
    expect(page.locator(".choices a.on")).to_have_text("上月")
    critical = page.locator("#ops-period tr[data-severity='critical'] td")
    # Raised to ack: p50, p90, max (the 5th-7th of press to page, page to ack, raised to ack).
    expect(critical.nth(7)).to_have_text("1 分 50 秒")
    expect(critical.nth(8)).to_have_text("4 分 22 秒")
    expect(critical.nth(9)).to_have_text("6 分 40 秒")
    expect(page.locator(".gauge[data-figure='within_60s']")).to_have_class("gauge misses")
    expect(page.locator(".gauge[data-figure='within_60s'] small")).to_contain_text("15 / 40")
    open_now = page.locator("#ops-now .tile[data-figure='open_alerts'] b")
    expect(open_now).to_have_text("1")
    page.evaluate("window.stillHere = true")

    # A fall raised now at r-0201 (hongmei): the "now" part follows without a reload.
    with psycopg.connect(month.database_url) as conn:
        row = conn.execute(
            "INSERT INTO alerts (resident_id, kind, severity, state, opened_at, started_at,"
            " last_seen_at) VALUES ('r-0201', 'fall', 'critical', 'open', %s, %s, %s)"
            " RETURNING id",
            (NOW, NOW, NOW),
        ).fetchone()
    assert row is not None
    try:
        expect(open_now).to_have_text("2", timeout=5_000)
        hongmei = page.locator("#ops-now tr[data-area='hongmei'] td.hot")
        expect(hongmei).to_have_text("1")
        expect(page.locator("#ops-now tr[data-severity='critical'] td").first).to_have_text("2")
        assert page.evaluate("window.stillHere") is True
        shot(page, "console-operations-desktop.png", ARTIFACTS.parent)
    finally:
        with psycopg.connect(month.database_url) as conn:
            conn.execute("DELETE FROM alerts WHERE id = %s", row)
    expect(open_now).to_have_text("1", timeout=5_000)

    page.click("a.lang")
    expect(page.locator("#ops-now h2")).to_contain_text("Now")
    expect(page.locator("#ops-now .tile[data-figure='beds'] span")).to_have_text("Beds registered")


def test_operations_on_a_phone(browser: Browser, month: Running) -> None:
    phone = browser.new_page(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    log_in(phone, month, "s-kangjian")
    phone.goto(f"{month.base}/console/operations")
    expect(phone.locator("#live")).to_have_text("实时")
    # One area of their own: it opens on its committees, and one tap goes a level deeper.
    phone.click(".choices a:has-text('上月')")
    expect(phone.locator("#ops-now tr[data-area]")).to_have_count(1)
    phone.click("#ops-now tr[data-area='kangjian/kangle'] a")
    expect(phone.locator(".crumbs strong")).to_have_text("kangjian/kangle")
    expect(phone.locator("#ops-now tr[data-area]")).to_have_count(2)
    expect(phone.locator("#ops-period tr[data-severity='critical'] td").first).to_have_text("30")
    expect(phone.locator("body")).not_to_contain_text("hongmei")
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], "the page scrolls sideways on a phone"
    # One column: the panels stack, each as wide as the page allows.
    panels = phone.locator("#ops-period .panel")
    boxes = [panels.nth(i).bounding_box() for i in range(panels.count())]
    assert all(b is not None and b["width"] > PHONE["width"] * 0.85 for b in boxes), boxes
    for choice in phone.locator(".choices a").all():  # thumb-sized
        box = choice.bounding_box()
        assert box is not None
        assert box["height"] >= 44, box
    shot(phone, "console-operations-phone.png", ARTIFACTS.parent)
