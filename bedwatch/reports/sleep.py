"""A resident's sleep report: one night and the nights before it, from summaries and findings."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

from alerts.console import queries
from alerts.digest import Night
from alerts.store import AsyncConn
from bedwatch.reports.text import Lang
from detectors.findings import FindingKind, Severity
from ingest.records import ResidentId

NIGHTS = 14  # the trend: the report's night and the 13 before it


@dataclass(frozen=True, slots=True)
class Seen:
    """A finding as the report lists it: when its condition began, what, and why."""

    started_at: datetime
    kind: FindingKind
    severity: Severity
    evidence: dict[str, object]
    late: bool  # found in data uploaded late: never paged

    def night(self, timezone: str) -> date:
        """The night it belongs to: nights run from `queries.NIGHT_FROM` to the next evening."""
        return queries.latest_night(self.started_at, timezone)


@dataclass(frozen=True, slots=True)
class SleepReport:
    resident_id: ResidentId
    name: str
    room: str
    area: str
    timezone: str
    night: date
    nights: tuple[Night, ...]  # summaries of the last NIGHTS nights that have one, oldest first
    vitals: queries.Night  # the report's night, minute by minute
    findings: tuple[Seen, ...]  # of the last NIGHTS nights, oldest first
    made_at: datetime

    @property
    def days(self) -> list[date]:
        return [self.night - timedelta(days=k) for k in range(NIGHTS - 1, -1, -1)]

    @property
    def summary(self) -> Night | None:
        return next((n for n in self.nights if n.night == self.night), None)

    def findings_of(self, night: date) -> list[Seen]:
        return [f for f in self.findings if f.night(self.timezone) == night]


async def gather(
    conn: AsyncConn, resident_id: ResidentId, night: date | None, now: datetime
) -> SleepReport:
    """The report's content; `night` None: the latest night with a summary. LookupError for an
    unknown resident."""
    cur = await conn.execute(
        "SELECT name, room, area, timezone FROM residents WHERE id = %s", (resident_id,)
    )
    row = await cur.fetchone()
    if row is None:
        raise LookupError(f"no resident {resident_id!r}")
    name, room, area, timezone = row
    if night is None:
        night = await _latest_summary(conn, resident_id) or queries.latest_night(now, timezone)
    first = night - timedelta(days=NIGHTS - 1)
    return SleepReport(
        resident_id,
        name,
        room,
        area,
        timezone,
        night,
        await _nights(conn, resident_id, first, night),
        await queries.night(conn, resident_id, night, timezone),
        await _findings(conn, resident_id, first, night, timezone),
        now,
    )


async def _latest_summary(conn: AsyncConn, resident_id: ResidentId) -> date | None:
    cur = await conn.execute(
        "SELECT max(night) FROM night_summaries WHERE resident_id = %s", (resident_id,)
    )
    row = await cur.fetchone()
    return None if row is None else row[0]


async def _nights(
    conn: AsyncConn, resident_id: ResidentId, first: date, last: date
) -> tuple[Night, ...]:
    # The columns in the order of the digest's Night, so that a row is one.
    cur = await conn.execute(
        "SELECT night, time_in_bed_s, (extract(epoch FROM sleep_onset_at) * 1000)::bigint,"
        " exits, longest_absence_s, restlessness_pct, hr_mean, hr_min, hr_max,"
        " rr_mean, rr_min, rr_max, pauses_per_h FROM night_summaries"
        " WHERE resident_id = %s AND night BETWEEN %s AND %s ORDER BY night",
        (resident_id, first, last),
    )
    return tuple(Night(*row) for row in await cur.fetchall())


async def _findings(
    conn: AsyncConn, resident_id: ResidentId, first: date, last: date, timezone: str
) -> tuple[Seen, ...]:
    start = queries.night_start(first, timezone)
    end = queries.night_start(last + timedelta(days=1), timezone)
    cur = await conn.execute(
        "SELECT started_at, kind, severity, evidence, late FROM findings WHERE resident_id = %s"
        " AND NOT cleared AND started_at >= %s AND started_at < %s ORDER BY started_at, id",
        (resident_id, start, end),
    )
    return tuple(_seen(row) for row in await cur.fetchall() if row[1] in _KINDS)


_KINDS = frozenset(FindingKind)  # a kind this version does not know is not ours to word


def _seen(row: tuple[Any, ...]) -> Seen:
    started, kind, severity, evidence, late = row
    return Seen(started, FindingKind(kind), Severity(severity), dict(evidence), late)


async def language_of(conn: AsyncConn, contact_id: str) -> Lang:
    """The contact's language, for a report they are to read. LookupError for an unknown one."""
    cur = await conn.execute("SELECT language FROM contacts WHERE id = %s", (contact_id,))
    row = await cur.fetchone()
    if row is None:
        raise LookupError(f"no contact {contact_id!r}")
    return Lang(row[0])


def sleep_report_pdf(
    database_url: str,
    resident_id: str,
    night: date | None = None,
    lang: Lang | str = Lang.ZH,
    *,
    now: datetime | None = None,
) -> bytes:
    """One resident's sleep report as PDF bytes, from its own connection.

    Plain arguments and a plain result so that it can run in a process of its own: drawing and
    printing are seconds of CPU-bound Python, which must not hold the service's interpreter
    while an SOS waits to be paged.
    """
    from bedwatch.reports import sleep_pages

    async def read() -> SleepReport:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            return await gather(conn, ResidentId(resident_id), night, now or datetime.now(UTC))

    return sleep_pages.render(asyncio.run(read()), Lang(lang))
