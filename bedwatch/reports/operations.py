"""The operations report's content: the operations figures over a period, with their series."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from alerts.config import AlertConfig
from alerts.operations import (
    AnswerTime,
    Availability,
    Operations,
    Period,
    alerts_per_day,
    answer_times,
    availability,
    snapshot,
)
from alerts.store import AsyncConn
from detectors.findings import FindingKind

__all__ = ["OperationsReport", "Period", "gather", "within"]


@dataclass(frozen=True, slots=True)
class OperationsReport:
    figures: Operations  # per area group and overall; "now" figures at `figures.now`
    times: list[AnswerTime]  # every alert raised in the period
    per_day: list[tuple[date, FindingKind, int]]  # alerts raised per local day and kind
    days: list[date]  # the period's local days (and the nights that began on them)
    nights: list[Availability]  # the whole scope's, night by night
    group_nights: list[list[Availability]]  # each area group's, as `figures.groups`
    timezone: str


async def gather(
    conn: AsyncConn,
    config: AlertConfig,
    areas: Sequence[str],
    period: Period,
    now: datetime,
    *,
    depth: int = 1,
    tz: str = "Asia/Shanghai",
) -> OperationsReport:
    figures = await snapshot(conn, config, areas, period, now, depth=depth)
    days = local_days(period, tz)
    return OperationsReport(
        figures,
        await answer_times(conn, areas, period, depth=depth),
        await alerts_per_day(conn, areas, period, tz),
        days,
        await availability(conn, areas, days),
        [await availability(conn, within(g.area, areas), days) for g in figures.groups],
        tz,
    )


def local_days(period: Period, tz: str) -> list[date]:
    zone = ZoneInfo(tz)
    first = period.start.astimezone(zone).date()
    last = (period.end - timedelta(microseconds=1)).astimezone(zone).date()
    return [first + timedelta(days=k) for k in range((last - first).days + 1)]


def within(group: str, areas: Sequence[str]) -> list[str]:
    """The scope of one area group, kept inside the report's: the group itself where the
    report's areas hold all of it, else the report's areas that lie beneath it.

    The operations module gives fleet availability for a scope, not per group; asking it once
    per group this way keeps a supervisor's report to the supervisor's areas.
    """
    if not group:  # residents without an area: only a report of every area has them
        return [""] if "*" in areas else []
    whole = any(a in ("*", group) or group.startswith(a + "/") for a in areas)
    return [group] if whole else [a for a in areas if a.startswith(group + "/")]
