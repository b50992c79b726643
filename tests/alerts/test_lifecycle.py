"""Alert lifecycle in the database: dedupe, latching, clearing, races, inhibition."""

from __future__ import annotations

import asyncio

from alerts.model import ContactId, Via
from detectors.findings import FindingKind, Severity
from tests.alerts.harness import DAY_MS, FakeClock, contact, finding, prepare, running, site, sos
from tests.support import query

SITE = site(
    [contact("c-zhang", "care_staff", ["json://127.0.0.1:9/none"])],
    ["c-zhang"],
    "[alerts.retry]\nattempts_per_channel = 1\n",
)


def test_repeats_join_one_alert_and_concurrent_findings_make_one_row(database_url: str) -> None:
    settings = prepare(database_url, SITE)
    clock = FakeClock()

    async def scenario() -> None:
        async with running(settings, clock) as (alerts, engine):
            ids = await asyncio.gather(*(engine.handle(sos(DAY_MS + i)) for i in range(8)))
            assert len(set(ids)) == 1
            await alerts.sender.idle()

    asyncio.run(scenario())
    assert query(database_url, "SELECT count, state FROM alerts") == [(8, "open")]
    assert query(database_url, "SELECT count(*) FROM notifications WHERE attempt = 1") == [(1,)]


def test_critical_latches_others_resolve_and_a_late_finding_opens_anew(database_url: str) -> None:
    settings = prepare(database_url, SITE)
    clock = FakeClock()
    hr = FindingKind.HEART_RATE

    async def scenario() -> None:
        async with running(settings, clock) as (alerts, engine):
            await engine.handle(sos(DAY_MS))
            await engine.handle(finding(hr, Severity.MEDIUM, DAY_MS, hr=120))
            await engine.handle(finding(FindingKind.SOS, Severity.CRITICAL, DAY_MS, cleared=True))
            await engine.handle(finding(hr, Severity.MEDIUM, DAY_MS + 1, cleared=True))
            await engine.handle(finding(hr, Severity.MEDIUM, DAY_MS + 2, hr=125))
            await alerts.sender.idle()

    asyncio.run(scenario())
    rows = query(
        database_url,
        "SELECT kind, state, resolved_by, cleared_at IS NOT NULL FROM alerts ORDER BY id",
    )
    assert rows == [
        ("sos", "open", None, True),  # the wristband's cancel is noted; a person must resolve
        ("heart_rate", "resolved", "system", False),
        ("heart_rate", "open", None, False),
    ]


def test_a_graver_repeat_raises_severity_and_a_resolved_alert_stays_quiet(
    database_url: str,
) -> None:
    settings = prepare(database_url, SITE)
    clock = FakeClock()
    hr = FindingKind.HEART_RATE

    async def scenario() -> None:
        async with running(settings, clock) as (alerts, engine):
            first = await engine.handle(finding(hr, Severity.MEDIUM, DAY_MS, hr=115))
            await engine.handle(finding(hr, Severity.HIGH, DAY_MS + 1, hr=135))
            await alerts.sender.idle()
            assert first is not None
            done = await engine.resolve(first, ContactId("c-zhang"), Via.API)
            assert done.outcome == "done"
            late = await engine.acknowledge(first, ContactId("c-zhang"), Via.API)
            assert late.outcome == "resolved"
            for _ in range(5):
                clock.advance(3600)
                await engine.run_due()
                await alerts.sender.idle()

    asyncio.run(scenario())
    assert query(database_url, "SELECT severity, state, acked_at FROM alerts") == [
        ("high", "resolved", None)
    ]
    reasons = query(database_url, "SELECT reason FROM notifications ORDER BY id")
    assert reasons == [("opened",), ("severity raised",)]


def test_an_open_sos_inhibits_bed_exit_but_nothing_inhibits_an_sos(database_url: str) -> None:
    settings = prepare(database_url, SITE)
    clock = FakeClock()
    exit_kind = FindingKind.BED_EXIT_NO_RETURN

    async def scenario() -> None:
        async with running(settings, clock) as (alerts, engine):
            await engine.handle(
                finding(FindingKind.DEVICE_SILENT, Severity.MEDIUM, DAY_MS, device="mat-0101")
            )
            assert await engine.handle(sos(DAY_MS)) is not None
            assert await engine.handle(finding(exit_kind, Severity.HIGH, DAY_MS)) is None
            # A silent pad mutes its own vitals, not the wristband's.
            pad_hr = finding(FindingKind.HEART_RATE, Severity.HIGH, DAY_MS, device="mat-0101")
            band_hr = finding(FindingKind.SPO2, Severity.HIGH, DAY_MS, device="band-0101")
            assert await engine.handle(pad_hr) is None
            assert await engine.handle(band_hr) is not None
            await alerts.sender.idle()

    asyncio.run(scenario())
    kinds = query(database_url, "SELECT kind FROM alerts ORDER BY id")
    assert kinds == [("device_silent",), ("sos",), ("spo2",)]
