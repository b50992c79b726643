"""The daily digest: each digest contact's nights, low findings and sleep changes, once a day."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import psycopg
from psycopg_pool import AsyncConnectionPool

from alerts import store
from alerts.config import AlertConfig
from alerts.delivery import Current, Sender
from alerts.directory import Directory, load_config, load_directory
from alerts.messages import Message, render_digest
from alerts.model import Attachment, Contact, ContactId, Outgoing, Reason, Resident
from alerts.notifier import redact
from alerts.routing import quiet_until_ms
from detectors.findings import FindingKind, Severity
from ingest.records import ResidentId

log = logging.getLogger(__name__)

# Makes the residents' sleep reports for a digest: (resident, night, language) in, PDFs out, in
# that order. The application gives it (rendering is its business, in a process of its own).
ReportMaker = Callable[[Sequence[tuple[ResidentId, date, str]]], Awaitable[Sequence[bytes]]]

DAY_MS = 86_400_000
MAX_SPAN_MS = 7 * DAY_MS  # after a long stop, a digest looks back one week at most
CHECK_EVERY_S = 30.0


@dataclass(frozen=True, slots=True)
class Night:
    """The fields of a `night_summaries` row that a doctor reads."""

    night: date  # the local date the night began
    time_in_bed_s: float
    sleep_onset_ms: int | None
    exits: int
    longest_absence_s: float
    restlessness_pct: float
    hr_mean: float | None
    hr_min: float | None
    hr_max: float | None
    rr_mean: float | None
    rr_min: float | None
    rr_max: float | None
    pauses_per_h: float


@dataclass(frozen=True, slots=True)
class Seen:
    """Low-severity findings of one kind in the period: how many, and the latest one's evidence."""

    kind: FindingKind
    count: int
    evidence: Mapping[str, object]
    latest_ms: int | None = None  # when the latest one happened (device time)


@dataclass(frozen=True, slots=True)
class SleepChange:
    night: str  # ISO local date the night began, as the finding's evidence gives it
    metrics: Mapping[str, Mapping[str, float]]  # metric -> value, median, mad, z


@dataclass(frozen=True, slots=True)
class ResidentDay:
    resident: Resident
    night: Night | None
    low: tuple[Seen, ...]
    changes: tuple[SleepChange, ...]
    alerts: Mapping[Severity, int]  # alerts above low severity opened in the period
    late: tuple[Seen, ...] = ()  # findings in late data (a device's backlog), any severity

    @property
    def items(self) -> int:
        seen = sum(s.count for s in self.low) + sum(s.count for s in self.late)
        return seen + len(self.changes) + sum(self.alerts.values())


@dataclass(frozen=True, slots=True)
class Digest:
    """One contact's digest for one local day, covering [since_ms, until_ms)."""

    contact: Contact
    day: date
    timezone: str
    since_ms: int
    until_ms: int
    residents: tuple[ResidentDay, ...]

    @property
    def items(self) -> int:
        return sum(r.items for r in self.residents)


def recipients(config: AlertConfig, directory: Directory) -> list[tuple[Contact, list[Resident]]]:
    """Contacts in a digest role, each with the residents in their care (id order)."""
    teams: dict[ContactId, list[Resident]] = {}
    for resident in sorted(directory.residents.values(), key=lambda r: r.id):
        for contact_id in resident.team:
            teams.setdefault(contact_id, []).append(resident)
    out = []
    for contact_id in sorted(teams):
        contact = directory.contacts.get(contact_id)
        if contact is not None and contact.role in config.digest_roles:
            out.append((contact, teams[contact_id]))
    return out


def zone_of(residents: Sequence[Resident]) -> str:
    """A contact's time zone: that of most of their residents (contacts have none of their own)."""
    counts = Counter(r.timezone for r in residents)
    return max(counts, key=counts.__getitem__)  # a tie goes to the first resident's zone


def due_ms(day: date, at: time, timezone: str) -> int:
    return int(datetime.combine(day, at, tzinfo=ZoneInfo(timezone)).timestamp() * 1000)


def local_day(now_ms: int, timezone: str) -> date:
    return datetime.fromtimestamp(now_ms / 1000, ZoneInfo(timezone)).date()


def day_due(config: AlertConfig, timezone: str, now_ms: int) -> date | None:
    """The local day whose digest may go out now; None before `digest_at` or in quiet hours."""
    day = local_day(now_ms, timezone)
    if now_ms < due_ms(day, config.digest_at, timezone):
        return None
    if quiet_until_ms(config, Severity.LOW, timezone, now_ms) is not None:
        return None  # sent late into the evening: today's is skipped, tomorrow's covers it
    return day


class DigestLoop:
    """One digest per contact and local day at `digest_at`, recorded once, sent by the outbox.

    Restart-safe: `alert_digests` holds one row per (contact, day), written in the transaction
    that puts the message in the outbox, so a second process or a restart finds it and stops.
    The sender retries and falls back as for alerts; rows cut off by a stop are planned again
    by `store.interrupted` and sent by the alert scheduler.
    """

    def __init__(
        self,
        pool: AsyncConnectionPool[store.AsyncConn],
        sender: Sender,
        current: Current,
        *,
        clock: Callable[[], int],
        interval_s: float = CHECK_EVERY_S,
        reports: ReportMaker | None = None,
        console_url: str = "",
    ) -> None:
        self._pool = pool
        self._sender = sender
        self._current = current
        self._clock = clock
        self._interval_s = interval_s
        self._reports = reports
        self._console_url = console_url.rstrip("/")
        self._done: dict[ContactId, date] = {}  # saves a query per contact and pass
        self.passes = 0

    async def run(self) -> None:
        """Check every `interval_s` until cancelled."""
        while True:
            try:
                await self.run_due()
            except Exception:
                log.exception("digest pass failed")
            self.passes += 1
            await asyncio.sleep(self._interval_s)

    async def run_due(self) -> int:
        """Make the digests that are due and not yet made; the number handed to the sender."""
        now = self._clock()
        config, directory = self._current.config, self._current.directory
        made = 0
        for contact, residents in recipients(config, directory):
            timezone = zone_of(residents)
            day = day_due(config, timezone, now)
            if day is None or not contact.channels or self._done.get(contact.id) == day:
                continue
            try:
                outgoing = await self._make(contact, residents, timezone, day, now)
            except psycopg.OperationalError:
                raise  # the database is away: end the pass, not one log line per contact
            except Exception:
                log.exception("digest for %s not made", contact.id)
                continue
            self._done[contact.id] = day
            if outgoing:
                self._sender.submit(outgoing)
                made += 1
        return made

    async def _make(
        self, contact: Contact, residents: list[Resident], timezone: str, day: date, now: int
    ) -> list[Outgoing]:
        async with self._pool.connection() as conn:
            if await _made(conn, contact.id, day):
                return []  # by an earlier run or another process: no reports drawn for nothing
            since = await since_ms(conn, contact.id, now)
            digest = await gather(conn, contact, residents, timezone, day, since, now)
        nights = [(d.resident.id, d.night.night if d.night else day - timedelta(days=1))
                  for d in digest.residents]  # fmt: skip
        attachments = await self._drawn(contact, nights)
        links = {
            rid: f"{self._console_url}/residents/{rid}/report.pdf?night={night.isoformat()}"
            for rid, night in nights
            if self._console_url
        }
        async with self._pool.connection() as conn, conn.transaction():
            digest_id = await _record(conn, digest, now)
            if digest_id is None:
                return []  # made meanwhile, by another process
            await store.add_digest_attachments(conn, digest_id, attachments)
            message = render_digest(digest, links)
            planned = store.Planned(
                alert_id=None,
                digest_id=digest_id,
                contact_id=contact.id,
                tier=0,
                channel_index=0,
                channel=redact(contact.channels[0]),
                attempt=1,
                reason=Reason.DIGEST,
                title=message.title,
                body=message.body,
                critical=False,
            )
            outgoing = await store.enqueue(conn, [planned], now, now, claim=True)
        log.info("digest %d for %s (%s): %d items", digest_id, contact.id, day, digest.items)
        return outgoing

    async def _drawn(
        self, contact: Contact, nights: Sequence[tuple[ResidentId, date]]
    ) -> list[Attachment]:
        """Each resident's sleep report for the night, in the contact's language; none if they
        cannot be drawn now (the digest goes all the same, with its links)."""
        if self._reports is None or not nights:
            return []
        try:
            pdfs = await self._reports([(rid, n, contact.language) for rid, n in nights])
        except Exception as exc:
            log.warning("sleep reports for %s's digest not drawn: %s", contact.id, exc)
            return []
        return [
            Attachment(f"sleep-{rid}-{night.isoformat()}.pdf", "application/pdf", pdf)
            for (rid, night), pdf in zip(nights, pdfs, strict=True)
        ]


async def _made(conn: store.AsyncConn, contact_id: ContactId, day: date) -> bool:
    cur = await conn.execute(
        "SELECT 1 FROM alert_digests WHERE contact_id = %s AND day = %s", (contact_id, day)
    )
    return await cur.fetchone() is not None


async def _record(conn: store.AsyncConn, digest: Digest, now: int) -> int | None:
    cur = await conn.execute(
        "INSERT INTO alert_digests (contact_id, day, created_at, items, timezone, window_from,"
        " window_to, residents) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (contact_id, day) DO NOTHING RETURNING id",
        (
            digest.contact.id,
            digest.day,
            store.ts(now),
            digest.items,
            digest.timezone,
            store.ts(digest.since_ms),
            store.ts(digest.until_ms),
            len(digest.residents),
        ),
    )
    row = await cur.fetchone()
    return None if row is None else int(row[0])


async def since_ms(conn: store.AsyncConn, contact_id: ContactId, until_ms: int) -> int:
    """Where the contact's last digest before `until_ms` ended; a day back if none."""
    cur = await conn.execute(
        "SELECT max(window_to) FROM alert_digests WHERE contact_id = %s AND window_to < %s",
        (contact_id, store.ts(until_ms)),
    )
    row = await cur.fetchone()
    if row is None or row[0] is None:
        return until_ms - DAY_MS
    return max(store.ms(row[0]), until_ms - MAX_SPAN_MS)


async def gather(
    conn: store.AsyncConn,
    contact: Contact,
    residents: Sequence[Resident],
    timezone: str,
    day: date,
    since: int,
    until: int,
) -> Digest:
    """The digest's content, read from night summaries, findings and alerts."""
    ids = [r.id for r in residents]
    nights = await _nights(conn, ids, day)
    low, late, changes = await _findings(conn, ids, since, until)
    alerts = await _alerts(conn, ids, since, until)
    days = [
        ResidentDay(
            r,
            nights.get(r.id),
            tuple(low.get(r.id, ())),
            tuple(changes.get(r.id, ())),
            alerts.get(r.id, {}),
            tuple(late.get(r.id, ())),
        )
        for r in residents
    ]
    # Residents with something to read come first; the rest keep name order.
    days.sort(key=lambda d: (d.items == 0, d.resident.name, d.resident.id))
    return Digest(contact, day, timezone, since, until, tuple(days))


async def _nights(
    conn: store.AsyncConn, ids: list[ResidentId], day: date
) -> dict[ResidentId, Night]:
    # A night's summary is closed at `summary_to_local` the next day (noon by default), so in
    # the morning the newest one may be the night before last; older ones are not shown.
    cur = await conn.execute(
        "SELECT DISTINCT ON (resident_id) resident_id, night, time_in_bed_s, sleep_onset_at,"
        " exits, longest_absence_s, restlessness_pct, hr_mean, hr_min, hr_max,"
        " rr_mean, rr_min, rr_max, pauses_per_h FROM night_summaries"
        " WHERE resident_id = ANY(%s) AND night BETWEEN %s AND %s"
        " ORDER BY resident_id, night DESC",
        (ids, day - timedelta(days=2), day - timedelta(days=1)),
    )
    out: dict[ResidentId, Night] = {}
    for row in await cur.fetchall():
        rid, night, in_bed, onset, exits, longest, restless = row[:7]
        hr_mean, hr_min, hr_max, rr_mean, rr_min, rr_max, pauses_per_h = row[7:]
        out[ResidentId(rid)] = Night(
            night,
            in_bed,
            None if onset is None else store.ms(onset),
            exits,
            longest,
            restless,
            hr_mean,
            hr_min,
            hr_max,
            rr_mean,
            rr_min,
            rr_max,
            pauses_per_h,
        )
    return out


LATE_AT_MOST_MS = 8 * 86_400_000


async def _findings(
    conn: store.AsyncConn, ids: list[ResidentId], since: int, until: int
) -> tuple[
    dict[ResidentId, list[Seen]], dict[ResidentId, list[Seen]], dict[ResidentId, list[SleepChange]]
]:
    """Low findings of the period; findings of any severity in late data (a backlog a device
    uploaded after its newer data) that reached the service in the period; sleep changes."""
    cur = await conn.execute(
        "SELECT resident_id, kind, evidence, late, at FROM findings WHERE resident_id = ANY(%s)"
        " AND NOT cleared AND ((severity = 'low' AND NOT late AND at >= %s AND at < %s)"
        " OR (late AND detected_at >= %s AND detected_at < %s AND at >= %s)) ORDER BY at, id",
        # Late data is at most a week old (older is quarantined as stale): a bound on `at`
        # keeps the search to the index's recent part.
        (
            ids,
            store.ts(since),
            store.ts(until),
            store.ts(since),
            store.ts(until),
            store.ts(since - LATE_AT_MOST_MS),
        ),
    )
    counts: dict[tuple[ResidentId, bool], Counter[FindingKind]] = {}
    latest: dict[tuple[ResidentId, bool, FindingKind], tuple[Mapping[str, object], int]] = {}
    changes: dict[ResidentId, list[SleepChange]] = {}
    for rid, kind_text, raw, late, when in await cur.fetchall():
        try:
            kind = FindingKind(kind_text)
        except ValueError:
            continue  # a kind this version does not know: not ours to word
        evidence: Mapping[str, object] = raw if isinstance(raw, dict) else {}
        if kind is FindingKind.SLEEP_CHANGE:
            changes.setdefault(rid, []).append(_change(evidence))
            continue
        counts.setdefault((rid, late), Counter())[kind] += 1
        latest[rid, late, kind] = evidence, store.ms(when)
    seen: tuple[dict[ResidentId, list[Seen]], dict[ResidentId, list[Seen]]] = ({}, {})
    for (rid, late), c in counts.items():
        seen[late][rid] = [Seen(k, c[k], *latest[rid, late, k]) for k in FindingKind if k in c]
    return seen[0], seen[1], changes


def _change(evidence: Mapping[str, object]) -> SleepChange:
    metrics: dict[str, Mapping[str, float]] = {}
    raw = evidence.get("metrics")
    if isinstance(raw, dict):
        for name, facts in raw.items():
            if isinstance(facts, dict) and all(
                isinstance(facts.get(k), int | float) for k in ("value", "median", "z")
            ):
                metrics[str(name)] = {k: float(v) for k, v in facts.items()}
    return SleepChange(str(evidence.get("night", "")), metrics)


async def _alerts(
    conn: store.AsyncConn, ids: list[ResidentId], since: int, until: int
) -> dict[ResidentId, dict[Severity, int]]:
    cur = await conn.execute(
        "SELECT resident_id, severity, count(*) FROM alerts WHERE resident_id = ANY(%s)"
        " AND severity <> 'low' AND opened_at >= %s AND opened_at < %s"
        " GROUP BY resident_id, severity",
        (ids, store.ts(since), store.ts(until)),
    )
    out: dict[ResidentId, dict[Severity, int]] = {}
    for rid, severity, n in await cur.fetchall():
        out.setdefault(rid, {})[Severity(severity)] = int(n)
    return out


async def preview(conn: store.AsyncConn, contact_id: str, day: date | None, now_ms: int) -> Message:
    """The digest a contact gets (or got) for a local day, without recording or sending it.

    A day already sent is shown over the window it covered; another day as if made at its
    `digest_at` (today: as if made now). LookupError for an unknown contact or an empty team.
    """
    config = await load_config(conn)
    directory = await load_directory(conn)
    contact = directory.contacts.get(ContactId(contact_id))
    if contact is None:
        raise LookupError(f"no active contact {contact_id!r}")
    residents = sorted(
        (r for r in directory.residents.values() if contact.id in r.team), key=lambda r: r.id
    )
    if not residents:
        raise LookupError(f"contact {contact_id!r} has no residents in their care")
    timezone = zone_of(residents)
    today = local_day(now_ms, timezone)
    day = day or today
    cur = await conn.execute(
        "SELECT window_from, window_to FROM alert_digests WHERE contact_id = %s AND day = %s"
        " AND window_from IS NOT NULL",
        (contact.id, day),
    )
    row = await cur.fetchone()
    if row is not None:
        since, until = store.ms(row[0]), store.ms(row[1])
    else:
        until = now_ms if day == today else due_ms(day, config.digest_at, timezone)
        since = await since_ms(conn, contact.id, until)
    return render_digest(await gather(conn, contact, residents, timezone, day, since, until))
