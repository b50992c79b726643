"""The operations centre's figures, computed once for the console, the feed and the reports.

Everything is scoped to a list of areas (a supervisor's, a feed's; '*' for all) and grouped by the
first `depth` segments of each resident's area path ('kangjian/kangle/12' at depth 1 is
'kangjian'); the whole scope is the group ''. "Now" figures are at `now` (the engine's clock, so a
ward replayed from the past reads consistently); period figures are over alerts raised in
[start, end). The definitions follow the service-level views (alerts migration 0029):

- press to page: from when the condition began (device time: the SOS press) to the first notice
  delivered to anybody; page to ack: from then to the acknowledgement; answer: from the alert being
  raised to its acknowledgement (what `bedwatch_alert_answer_seconds` observes);
- within 60 s / 180 s: alerts answered (raised to ack) within that time, of all raised;
- last tier: an escalation that told the last step of its ladder (one step is no escalation);
- unanswered: somebody was paged and nobody acknowledged (closed by the system, or still open).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from alerts.config import AlertConfig, default_config
from alerts.model import OFFLINE_AFTER_S, AlertId, ContactId
from alerts.store import AsyncConn
from detectors.findings import FindingKind, Severity
from detectors.settings import DetectorSettings
from ingest.records import ResidentId

ALL_AREAS = ("*",)
OVERALL = ""  # the group that is the whole scope
LOW_BATTERY_PCT = 20
SILENT_S = 3600
# Out of bed "at night": the detectors' default night window, in each resident's own zone.
_NIGHT = DetectorSettings()
NIGHT_START, NIGHT_END = _NIGHT.night_start_local, _NIGHT.night_end_local
AGES = ("under_5m", "5_30m", "30m_2h", "over_2h")  # an open alert's age, for the "now" table
# Telecare centres are audited on answering 97.5 % of alarm calls within 60 s and 99 % within
# 180 s (docs/design.md, Targets): the shares `Answers.share_60s` and `share_180s` are held to.
TARGET_60S = 0.975
TARGET_180S = 0.99


@dataclass(frozen=True, slots=True)
class Period:
    start: datetime
    end: datetime  # exclusive


@dataclass(frozen=True, slots=True)
class Spread:
    """Seconds: how many, median, 90th percentile (continuous, as PostgreSQL's), longest."""

    count: int = 0
    p50: float | None = None
    p90: float | None = None
    max: float | None = None


@dataclass(frozen=True, slots=True)
class Fleet:
    beds: int = 0  # residents with a pad registered
    online: int = 0  # of those pads, heard within the offline threshold and not offline
    silent_1h: int = 0  # devices (pads and bands) not heard for over an hour, or never
    low_battery: int = 0  # devices at LOW_BATTERY_PCT or less
    strap_off: int = 0  # wristbands whose latest sample says they are not worn
    out_of_bed: int = 0  # residents out of bed now, in their night, their pad online


@dataclass(frozen=True, slots=True)
class Answers:
    """How the alerts of one severity (or all) raised in the period were answered."""

    alerts: int = 0
    press_to_page: Spread = Spread()
    page_to_ack: Spread = Spread()
    answer: Spread = Spread()
    within_60s: int = 0
    within_180s: int = 0
    last_tier: int = 0
    unanswered: int = 0

    @property
    def share_60s(self) -> float | None:
        return self.within_60s / self.alerts if self.alerts else None

    @property
    def share_180s(self) -> float | None:
        return self.within_180s / self.alerts if self.alerts else None


@dataclass(frozen=True, slots=True)
class AreaFigures:
    area: str  # OVERALL for the whole scope
    fleet: Fleet = Fleet()
    # Open (not yet acknowledged) alerts now, by severity and age (AGES); acknowledged ones apart.
    open_alerts: dict[str, dict[str, int]] = field(default_factory=dict)
    acknowledged: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)  # raised in the period
    answers: dict[str, Answers] = field(default_factory=dict)  # by severity, and "all"

    @property
    def open_total(self) -> int:
        return sum(sum(ages.values()) for ages in self.open_alerts.values())


@dataclass(frozen=True, slots=True)
class Worker:
    """A care worker (or doctor) who acknowledged alerts in the period."""

    contact_id: ContactId
    name: str
    acknowledged: int
    critical: int
    answer: Spread  # raised to their acknowledgement
    page_to_ack: Spread


@dataclass(frozen=True, slots=True)
class Unanswered:
    alert_id: AlertId
    resident_id: ResidentId
    name: str
    area: str
    kind: FindingKind
    severity: Severity
    opened_at: datetime
    tier: int
    state: str


@dataclass(frozen=True, slots=True)
class OutOfBed:
    resident_id: ResidentId
    name: str
    area: str
    room: str
    since: datetime | None  # the pad's last in-bed sample, if any


@dataclass(frozen=True, slots=True)
class Operations:
    now: datetime
    period: Period
    areas: tuple[str, ...]
    depth: int
    overall: AreaFigures
    groups: list[AreaFigures]  # one per area group, by name
    workers: list[Worker]
    unanswered: list[Unanswered]
    out_of_bed: list[OutOfBed]


def _at_night(t: str) -> str:
    """SQL: the local time `t` is within the night window (which may span midnight)."""
    return (
        f"(CASE WHEN %(night_start)s::time <= %(night_end)s::time"
        f" THEN {t} >= %(night_start)s::time AND {t} < %(night_end)s::time"
        f" ELSE {t} >= %(night_start)s::time OR {t} < %(night_end)s::time END)"
    )


_LOCAL_NOW = "(%(now)s AT TIME ZONE {zone})::time"

# The residents in scope with their group ('' for those without an area). Every query below
# starts from it.
_SCOPE = """
scope AS (
    SELECT r.id, r.name, r.room, r.area, r.timezone,
           coalesce(array_to_string((string_to_array(nullif(r.area, ''), '/'))[1:%(depth)s],
                                    '/'), '') AS grp
    FROM residents r WHERE r.active AND area_within(r.area, %(areas)s)
)"""

_FLEET = f"""
WITH {_SCOPE},
latest AS (
    SELECT s.grp, s.id AS resident_id, s.timezone, d.kind, h.last_seen_at,
           st.state AS reported, coalesce(b.bat, st.bat) AS bat, w.worn, m.occ
    FROM scope s JOIN devices d ON d.resident_id = s.id AND d.active
    LEFT JOIN device_health h ON h.device_id = d.id
    LEFT JOIN LATERAL (SELECT state, bat FROM device_status WHERE device_id = d.id
                       AND time <= %(now)s ORDER BY time DESC LIMIT 1) st ON true
    LEFT JOIN LATERAL (SELECT bat FROM wristband_samples WHERE device_id = d.id
                       AND d.kind = 'wristband' AND bat IS NOT NULL AND time <= %(now)s
                       ORDER BY time DESC LIMIT 1) b ON true
    LEFT JOIN LATERAL (SELECT worn FROM wristband_samples WHERE device_id = d.id
                       AND d.kind = 'wristband' AND worn IS NOT NULL AND time <= %(now)s
                       ORDER BY time DESC LIMIT 1) w ON true
    LEFT JOIN LATERAL (SELECT occ FROM mattress_samples WHERE device_id = d.id
                       AND d.kind = 'mattress' AND source = 'device' AND time <= %(now)s
                       ORDER BY time DESC LIMIT 1) m ON true
),
judged AS (
    SELECT *, last_seen_at > %(now)s - CASE kind WHEN 'mattress' THEN %(pad_s)s
                                              ELSE %(band_s)s END * interval '1 second'
              AND reported IS DISTINCT FROM 'offline' AS online
    FROM latest
)
SELECT grp,
       count(DISTINCT resident_id) FILTER (WHERE kind = 'mattress'),
       count(*) FILTER (WHERE kind = 'mattress' AND online),
       count(*) FILTER (WHERE last_seen_at IS NULL
                        OR last_seen_at < %(now)s - %(silent_s)s * interval '1 second'),
       count(*) FILTER (WHERE bat <= %(low_bat)s),
       count(*) FILTER (WHERE kind = 'wristband' AND worn = 0),
       count(DISTINCT resident_id) FILTER (WHERE kind = 'mattress' AND online AND occ = 0
           AND {_at_night(_LOCAL_NOW.format(zone="timezone"))})
FROM judged GROUP BY ROLLUP (grp)
"""

_OPEN = f"""
WITH {_SCOPE}
SELECT s.grp, a.severity, a.state,
       CASE WHEN %(now)s - a.opened_at < interval '5 minutes' THEN 'under_5m'
            WHEN %(now)s - a.opened_at < interval '30 minutes' THEN '5_30m'
            WHEN %(now)s - a.opened_at < interval '2 hours' THEN '30m_2h'
            ELSE 'over_2h' END AS age,
       count(*)
FROM alerts a JOIN scope s ON s.id = a.resident_id
WHERE a.state IN ('open', 'acknowledged') AND a.opened_at <= %(now)s
GROUP BY GROUPING SETS ((s.grp, a.severity, a.state, age), (a.severity, a.state, age))
"""

# One row per group (NULL: the whole scope) and severity (NULL: all severities).
_ANSWERS = f"""
WITH {_SCOPE},
t AS (
    SELECT s.grp, v.*, v.first_page_at IS NOT NULL AND v.unanswered AS paged_unanswered,
           v.tier > 0 AND v.tier >= CASE v.severity WHEN 'critical' THEN %(last_critical)s
                                     WHEN 'high' THEN %(last_high)s
                                     WHEN 'medium' THEN %(last_medium)s
                                     ELSE %(last_low)s END AS at_last_tier
    FROM alert_answer_times v JOIN scope s ON s.id = v.resident_id
    WHERE v.opened_at >= %(start)s AND v.opened_at < %(end)s
)
SELECT grp, severity, count(*),
       {{spread_press}}, {{spread_ack}}, {{spread_answer}},
       count(*) FILTER (WHERE answer_s <= 60), count(*) FILTER (WHERE answer_s <= 180),
       count(*) FILTER (WHERE at_last_tier), count(*) FILTER (WHERE paged_unanswered)
FROM t GROUP BY GROUPING SETS ((grp, severity), (grp), (severity), ())
""".format(
    spread_press=", ".join(
        (
            "count(press_to_page_s)",
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY press_to_page_s)",
            "percentile_cont(0.9) WITHIN GROUP (ORDER BY press_to_page_s)",
            "max(press_to_page_s)",
        )
    ),
    spread_ack=", ".join(
        (
            "count(page_to_ack_s)",
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY page_to_ack_s)",
            "percentile_cont(0.9) WITHIN GROUP (ORDER BY page_to_ack_s)",
            "max(page_to_ack_s)",
        )
    ),
    spread_answer=", ".join(
        (
            "count(answer_s)",
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY answer_s)",
            "percentile_cont(0.9) WITHIN GROUP (ORDER BY answer_s)",
            "max(answer_s)",
        )
    ),
)

_KINDS = f"""
WITH {_SCOPE}
SELECT s.grp, a.kind, count(*) FROM alerts a JOIN scope s ON s.id = a.resident_id
WHERE a.opened_at >= %(start)s AND a.opened_at < %(end)s
GROUP BY GROUPING SETS ((s.grp, a.kind), (a.kind))
"""

_WORKERS = f"""
WITH {_SCOPE}
SELECT v.acked_by, coalesce(c.name, v.acked_by), count(*),
       count(*) FILTER (WHERE v.severity = 'critical'),
       count(v.answer_s),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY v.answer_s),
       percentile_cont(0.9) WITHIN GROUP (ORDER BY v.answer_s), max(v.answer_s),
       count(v.page_to_ack_s),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY v.page_to_ack_s),
       percentile_cont(0.9) WITHIN GROUP (ORDER BY v.page_to_ack_s), max(v.page_to_ack_s)
FROM alert_answer_times v JOIN scope s ON s.id = v.resident_id
LEFT JOIN contacts c ON c.id = v.acked_by
WHERE v.acked_at >= %(start)s AND v.acked_at < %(end)s AND v.acked_by IS NOT NULL
GROUP BY v.acked_by, c.name ORDER BY count(*) DESC, v.acked_by
"""

_UNANSWERED = f"""
WITH {_SCOPE}
SELECT v.alert_id, v.resident_id, s.name, s.area, v.kind, v.severity, v.opened_at, v.tier,
       v.state
FROM alert_answer_times v JOIN scope s ON s.id = v.resident_id
WHERE v.opened_at >= %(start)s AND v.opened_at < %(end)s
  AND v.unanswered AND v.first_page_at IS NOT NULL
ORDER BY v.opened_at, v.alert_id
"""

_OUT_OF_BED = f"""
WITH {_SCOPE}
SELECT s.id, s.name, s.area, s.room, inbed.time
FROM scope s JOIN devices d ON d.resident_id = s.id AND d.active AND d.kind = 'mattress'
JOIN device_health h ON h.device_id = d.id
CROSS JOIN LATERAL (SELECT occ FROM mattress_samples WHERE device_id = d.id
                    AND source = 'device' AND time <= %(now)s
                    ORDER BY time DESC LIMIT 1) m
LEFT JOIN LATERAL (SELECT time FROM mattress_samples WHERE device_id = d.id
                   AND source = 'device' AND occ = 1 AND time <= %(now)s
                   AND time > %(now)s - interval '1 day'
                   ORDER BY time DESC LIMIT 1) inbed ON true
LEFT JOIN LATERAL (SELECT state FROM device_status WHERE device_id = d.id
                   AND time <= %(now)s ORDER BY time DESC LIMIT 1) st ON true
WHERE m.occ = 0 AND h.last_seen_at > %(now)s - %(pad_s)s * interval '1 second'
  AND st.state IS DISTINCT FROM 'offline'
  AND {_at_night(_LOCAL_NOW.format(zone="s.timezone"))}
ORDER BY inbed.time NULLS FIRST, s.id
"""


async def snapshot(
    conn: AsyncConn,
    config: AlertConfig,
    areas: Sequence[str],
    period: Period,
    now: datetime,
    *,
    depth: int = 1,
) -> Operations:
    """Every figure of the operations view for one scope: now, and over the period."""
    if depth < 1:
        raise ValueError("depth: at least 1 (the first segment of the area path)")
    params = _params(config, areas, period, now, depth)
    groups = await _now(conn, params)

    def group(name: str | None) -> dict[str, Any]:
        return groups.setdefault(name, _empty())

    for grp, kind, n in await _rows(conn, _KINDS, params):
        group(grp)["kinds"][kind] = int(n)
    for grp, severity, alerts, *rest in await _rows(conn, _ANSWERS, params):
        group(grp)["answers"][severity or "all"] = _answers(int(alerts), rest)
    overall = _figures(OVERALL, groups.pop(None, {}))
    by_area = [_figures(name or "", found) for name, found in sorted(groups.items(), key=_order)]
    return Operations(
        now,
        period,
        tuple(areas),
        depth,
        overall,
        by_area,
        await _workers(conn, params),
        await _unanswered(conn, params),
        await _out_of_bed(conn, params),
    )


@dataclass(frozen=True, slots=True)
class Now:
    """One area group's state at a moment: its fleet, and its alerts standing."""

    fleet: Fleet
    open_alerts: dict[str, dict[str, int]]  # severity -> age -> count, not yet acknowledged
    acknowledged: int


async def now_by_area(
    conn: AsyncConn, areas: Sequence[str], now: datetime, *, depth: int = 1
) -> dict[str | None, Now]:
    """The "now" figures alone, per area group (None: the whole scope): for gauges."""
    params = _params(None, areas, Period(now, now), now, depth)
    return {
        name: Now(found.get("fleet", Fleet()), found["open"], found["acknowledged"])
        for name, found in (await _now(conn, params)).items()
    }


def _empty() -> dict[str, Any]:
    return {"open": {}, "acknowledged": 0, "kinds": {}, "answers": {}}


async def _now(conn: AsyncConn, params: dict[str, Any]) -> dict[str | None, dict[str, Any]]:
    groups: dict[str | None, dict[str, Any]] = {}
    # In every query, a row whose group is NULL is the whole scope (ROLLUP, GROUPING SETS).
    for grp, *counts in await _rows(conn, _FLEET, params):
        groups.setdefault(grp, _empty())["fleet"] = Fleet(*(int(n) for n in counts))
    for grp, severity, state, age, n in await _rows(conn, _OPEN, params):
        found = groups.setdefault(grp, _empty())
        if state == "acknowledged":
            found["acknowledged"] += int(n)
        else:
            found["open"].setdefault(severity, dict.fromkeys(AGES, 0))[age] = int(n)
    return groups


def _order(item: tuple[str | None, dict[str, Any]]) -> tuple[bool, str]:
    name = item[0] or ""
    return (name == "", name)  # residents without an area last


def _figures(name: str, found: dict[str, Any]) -> AreaFigures:
    return AreaFigures(
        name,
        found.get("fleet", Fleet()),
        found.get("open", {}),
        found.get("acknowledged", 0),
        found.get("kinds", {}),
        found.get("answers", {}),
    )


def _spread(values: Sequence[Any]) -> Spread:
    count, p50, p90, top = values
    return Spread(int(count), _float(p50), _float(p90), _float(top))


def _answers(alerts: int, rest: Sequence[Any]) -> Answers:
    return Answers(
        alerts,
        _spread(rest[0:4]),
        _spread(rest[4:8]),
        _spread(rest[8:12]),
        int(rest[12]),
        int(rest[13]),
        int(rest[14]),
        int(rest[15]),
    )


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _params(
    config: AlertConfig | None, areas: Sequence[str], period: Period, now: datetime, depth: int
) -> dict[str, Any]:
    ladders = config or default_config()
    last = {s: len(ladders.ladder(s).steps) - 1 for s in Severity}
    return {
        "areas": list(areas),
        "depth": depth,
        "now": now,
        "start": period.start,
        "end": period.end,
        "pad_s": OFFLINE_AFTER_S["mattress"],
        "band_s": OFFLINE_AFTER_S["wristband"],
        "silent_s": SILENT_S,
        "low_bat": LOW_BATTERY_PCT,
        "night_start": NIGHT_START,
        "night_end": NIGHT_END,
        "last_critical": last[Severity.CRITICAL],
        "last_high": last[Severity.HIGH],
        "last_medium": last[Severity.MEDIUM],
        "last_low": last[Severity.LOW],
    }


async def _rows(conn: AsyncConn, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    cur = await conn.execute(sql, params)
    return list(await cur.fetchall())


async def _workers(conn: AsyncConn, params: dict[str, Any]) -> list[Worker]:
    return [
        Worker(ContactId(by), name, int(n), int(crit), _spread(r[0:4]), _spread(r[4:8]))
        for by, name, n, crit, *r in await _rows(conn, _WORKERS, params)
    ]


async def _unanswered(conn: AsyncConn, params: dict[str, Any]) -> list[Unanswered]:
    return [
        Unanswered(AlertId(i), ResidentId(r), n, area, FindingKind(k), Severity(s), at, tier, state)
        for i, r, n, area, k, s, at, tier, state in await _rows(conn, _UNANSWERED, params)
    ]


async def _out_of_bed(conn: AsyncConn, params: dict[str, Any]) -> list[OutOfBed]:
    return [
        OutOfBed(ResidentId(i), n, area, room, since)
        for i, n, area, room, since in await _rows(conn, _OUT_OF_BED, params)
    ]


# --- series for plots (the reports) -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AnswerTime:
    alert_id: AlertId
    area: str
    kind: FindingKind
    severity: Severity
    opened_at: datetime
    press_to_page_s: float | None
    page_to_ack_s: float | None
    answer_s: float | None


async def answer_times(
    conn: AsyncConn, areas: Sequence[str], period: Period, *, depth: int = 1
) -> list[AnswerTime]:
    """Each alert raised in the period with its times, for distributions."""
    params = {"areas": list(areas), "depth": depth, "start": period.start, "end": period.end}
    rows = await _rows(
        conn,
        f"WITH {_SCOPE} SELECT v.alert_id, s.grp, v.kind, v.severity, v.opened_at,"
        " v.press_to_page_s, v.page_to_ack_s, v.answer_s"
        " FROM alert_answer_times v JOIN scope s ON s.id = v.resident_id"
        " WHERE v.opened_at >= %(start)s AND v.opened_at < %(end)s ORDER BY v.opened_at",
        params,
    )
    return [
        AnswerTime(AlertId(i), g or "", FindingKind(k), Severity(s), at, p, a, ans)
        for i, g, k, s, at, p, a, ans in rows
    ]


async def alerts_per_day(
    conn: AsyncConn, areas: Sequence[str], period: Period, tz: str
) -> list[tuple[date, FindingKind, int]]:
    """Alerts raised per local day (in `tz`) and kind."""
    params = {"areas": list(areas), "depth": 1, "start": period.start, "end": period.end, "tz": tz}
    rows = await _rows(
        conn,
        f"WITH {_SCOPE} SELECT (a.opened_at AT TIME ZONE %(tz)s)::date, a.kind, count(*)"
        " FROM alerts a JOIN scope s ON s.id = a.resident_id"
        " WHERE a.opened_at >= %(start)s AND a.opened_at < %(end)s GROUP BY 1, 2 ORDER BY 1, 2",
        params,
    )
    return [(day, FindingKind(kind), int(n)) for day, kind, n in rows]


@dataclass(frozen=True, slots=True)
class Availability:
    """One night of the fleet: beds registered, pads that reported, and how fully."""

    night: date
    beds: int
    reporting: int  # pads with any sample in the night's summary span
    coverage: float  # mean over beds of samples per second of the span (1 Hz pads), capped at 1

    @property
    def share_reporting(self) -> float:
        return self.reporting / self.beds if self.beds else 0.0


async def availability(
    conn: AsyncConn, areas: Sequence[str], nights: Iterable[date]
) -> list[Availability]:
    """Per night, from the night summaries (one row per resident and night): cheap for a month
    of a city's beds, where the raw samples would not be."""
    params = {"areas": list(areas), "depth": 1, "nights": list(nights)}
    rows = await _rows(
        conn,
        f"WITH {_SCOPE},"
        " beds AS (SELECT DISTINCT s.id FROM scope s"
        "   JOIN devices d ON d.resident_id = s.id AND d.active AND d.kind = 'mattress')"
        " SELECT n.night, (SELECT count(*) FROM beds),"
        "  count(ns.resident_id) FILTER (WHERE ns.samples > 0),"
        # least() ignores NULLs: the outer join's empty row of a night nobody reported must
        # not count as one bed fully covered.
        "  coalesce(sum(least(1.0, ns.samples"
        "    / nullif(extract(epoch FROM ns.to_at - ns.from_at), 0)))"
        "   FILTER (WHERE ns.resident_id IS NOT NULL), 0)"
        "  / nullif((SELECT count(*) FROM beds), 0)"
        " FROM unnest(%(nights)s::date[]) AS n(night)"
        " LEFT JOIN night_summaries ns ON ns.night = n.night"
        "  AND ns.resident_id IN (SELECT id FROM beds)"
        " GROUP BY n.night ORDER BY n.night",
        params,
    )
    return [
        Availability(night, int(beds), int(rep), float(cov or 0.0))
        for night, beds, rep, cov in rows
    ]
