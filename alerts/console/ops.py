"""The operations view for supervisors: the areas and period a request asks for, and its HTML."""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from alerts.console.queries import latest_night
from alerts.console.text import Words
from alerts.console.views import ago, template
from alerts.model import AlertState, Resident, area_within
from alerts.operations import (
    AGES,
    TARGET_60S,
    TARGET_180S,
    Answers,
    AreaFigures,
    Operations,
    Period,
    Spread,
)
from detectors.findings import FindingKind, Severity
from ingest.records import ResidentId

e = html.escape

PERIODS = ("30d", "week", "month", "last_month")
# A rolling month by default: a street office's screen should not go blank on the 1st, and the
# calendar months its monthly report needs are one tap away.
DEFAULT_PERIOD = "30d"
CUSTOM = "custom"
MAX_DAYS = 400
MAX_DEPTH = 6
DEFAULT_ZONE = "Asia/Shanghai"  # the site file's default for a resident


class Refused(Exception):
    """The request names an area outside the supervisor's."""


@dataclass(frozen=True, slots=True)
class View:
    """What one request asks to see: whose areas, how deep, over which local days."""

    areas: tuple[str, ...]  # the scope given to the figures
    area: str  # the area asked for ('' for all of the supervisor's)
    depth: int  # area groups are the first `depth` segments of a resident's area
    period_key: str
    first: date  # local days, both included
    last: date
    zone: str

    @property
    def period(self) -> Period:
        tz = ZoneInfo(self.zone)
        start = datetime.combine(self.first, time(0), tz)
        return Period(start, datetime.combine(self.last + timedelta(days=1), time(0), tz))

    def query(self, *, area: str | None = None, period: str | None = None) -> str:
        """This view's query string with another area (one level deeper) or period."""
        params: dict[str, str] = {}
        if area is None and self.area:
            params |= {"area": self.area, "depth": str(self.depth)}
        elif area:
            params |= {"area": area, "depth": str(area.count("/") + 2)}
        key = period or self.period_key
        params["period"] = key
        if key == CUSTOM:
            params |= {"from": self.first.isoformat(), "to": self.last.isoformat()}
        return "?" + urlencode(params)


def choose(params: Mapping[str, str], areas: tuple[str, ...], zone: str, today: date) -> View:
    """The view a supervisor with `areas` asks for; Refused outside them, ValueError if bad."""
    asked = params.get("area", "")
    scope: tuple[str, ...]
    if asked:
        if not area_within(asked, areas):
            raise Refused(asked)
        scope, natural = (asked,), asked.count("/") + 2
    else:
        # One area of their own: open on its parts, not on a single row that repeats the total.
        single = len(areas) == 1 and areas[0] != "*"
        scope, natural = areas, areas[0].count("/") + 2 if single else 1
    depth = int(params["depth"]) if params.get("depth") else natural
    if not 1 <= depth <= MAX_DEPTH:
        raise ValueError(f"depth {depth}")
    key, first, last = _days(params, today)
    return View(scope, asked, depth, key, first, last, zone)


def _days(params: Mapping[str, str], today: date) -> tuple[str, date, date]:
    key = params.get("period") or DEFAULT_PERIOD
    if key == CUSTOM:
        first = date.fromisoformat(params.get("from", ""))
        last = date.fromisoformat(params.get("to", ""))
        if not first <= last or (last - first).days >= MAX_DAYS:
            raise ValueError(f"{first}..{last}")
        return key, first, last
    if key == "30d":
        return key, today - timedelta(days=29), today
    if key == "week":  # from Monday
        return key, today - timedelta(days=today.weekday()), today
    if key == "month":
        return key, today.replace(day=1), today
    if key == "last_month":
        end = today.replace(day=1) - timedelta(days=1)
        return key, end.replace(day=1), end
    raise ValueError(f"period {key!r}")


def zone_of(residents: Iterable[Resident], areas: tuple[str, ...]) -> str:
    """A supervisor's zone: that of most residents in their areas (contacts have none)."""
    zones = Counter(r.timezone for r in residents if area_within(r.area, areas))
    return zones.most_common(1)[0][0] if zones else DEFAULT_ZONE


# --- the page around the live parts


def body(w: Words, view: View, areas: tuple[str, ...], *, now: str, period: str) -> str:
    """The view: `now` and `period` are the fragments the stream replaces."""
    return template("operations.html").substitute(
        heading=e(w("operations")),
        live=e(w("live")),
        reconnecting=e(w("reconnecting")),
        area_label=e(w("area")),
        crumbs=crumbs(w, view, areas),
        events=e("/console/operations/events" + view.query()),
        now=now,
        period_label=e(w("period")),
        periods=periods(w, view),
        period=period,
    )


def crumbs(w: Words, view: View, areas: tuple[str, ...]) -> str:
    """All my areas › kangjian › kangjian/kangle: each level up that is the supervisor's."""
    parts = [f'<a href="{e(view.query(area=""))}">{e(w("all_areas"))}</a>']
    segments = view.area.split("/") if view.area else []
    for n in range(1, len(segments) + 1):
        path = "/".join(segments[:n])
        if n == len(segments):
            parts.append(f'<strong aria-current="page">{e(path)}</strong>')
        elif area_within(path, areas):
            parts.append(f'<a href="{e(view.query(area=path))}">{e(path)}</a>')
    return " › ".join(parts)


def periods(w: Words, view: View) -> str:
    """The period chooser: four links and a from-to form (the current choice marked)."""
    links = "".join(
        f'<a href="{e(view.query(period=key))}"'
        + (' aria-current="true" class="on"' if key == view.period_key else "")
        + f">{e(w('period_' + key))}</a>"
        for key in PERIODS
    )
    keep = (
        f'<input type="hidden" name="area" value="{e(view.area)}">'
        f'<input type="hidden" name="depth" value="{view.depth}">'
        if view.area
        else ""
    )
    custom = " on" if view.period_key == CUSTOM else ""
    return (
        f'<div class="choices">{links}</div>'
        f'<div class="custom{custom}">{keep}<input type="hidden" name="period" value="{CUSTOM}">'
        f'<label>{e(w("from"))} <input type="date" name="from" required'
        f' value="{view.first.isoformat()}"></label>'
        f'<label>{e(w("to"))} <input type="date" name="to" required'
        f' value="{view.last.isoformat()}"></label>'
        f'<button type="submit">{e(w("show"))}</button></div>'
    )


# --- now: resent by the stream on every alert change and every few seconds


def now_section(w: Words, ops: Operations, view: View) -> str:
    local = ops.now.astimezone(ZoneInfo(view.zone))
    return (
        f"<h2>{e(w('now'))} <small>{e(w('as_of', local.strftime('%Y-%m-%d %H:%M')))}</small></h2>"
        f"{_tiles(w, ops.overall)}"
        f'<div class="ops-grid">'
        f'<article class="panel wide"><h3>{e(w("by_area_now"))}</h3>{_areas_now(w, ops, view)}'
        "</article>"
        f'<article class="panel"><h3>{e(w("open_by_age"))}</h3>{_open_by_age(w, ops.overall)}'
        "</article>"
        f'<article class="panel"><h3>{e(w("out_of_bed_now"))}</h3>{_out_of_bed(w, ops, view)}'
        "</article></div>"
    )


def _tiles(w: Words, f: AreaFigures) -> str:
    fleet = f.fleet
    critical = sum(f.open_alerts.get(Severity.CRITICAL, {}).values())
    tiles = [
        ("beds", fleet.beds, "", ""),
        (
            "online_beds",
            fleet.online,
            f" / {fleet.beds}",
            "" if fleet.online == fleet.beds else "warn",
        ),
        ("silent_1h", fleet.silent_1h, "", "warn" if fleet.silent_1h else ""),
        ("low_battery", fleet.low_battery, "", "warn" if fleet.low_battery else ""),
        ("strap_off", fleet.strap_off, "", "warn" if fleet.strap_off else ""),
        ("out_of_bed_now", fleet.out_of_bed, "", "high" if fleet.out_of_bed else ""),
        (
            "open_alerts",
            f.open_total,
            "",
            "critical" if critical else "high" if f.open_total else "",
        ),
        ("in_hand", f.acknowledged, "", ""),
    ]
    return (
        '<div class="tiles">'
        + "".join(
            f'<div class="tile {tone}" data-figure="{key}"><b>{n}</b><small>{e(of)}</small>'
            f"<span>{e(w(key))}</span></div>"
            for key, n, of, tone in tiles
        )
        + "</div>"
    )


def _areas_now(w: Words, ops: Operations, view: View) -> str:
    keys = ("beds", "online_beds", "silent_1h", "low_battery", "strap_off", "out_of_bed_now")
    head = "".join(f"<th>{e(w(k))}</th>" for k in (*keys, "open_alerts", "in_hand"))

    def cells(f: AreaFigures) -> str:
        fl = f.fleet
        counts = (fl.beds, fl.online, fl.silent_1h, fl.low_battery, fl.strap_off, fl.out_of_bed)
        hot = ' class="hot"' if f.open_total else ""
        return (
            "".join(f"<td>{_count(n)}</td>" for n in counts)
            + f"<td{hot}>{_count(f.open_total)}</td><td>{_count(f.acknowledged)}</td>"
        )

    header = f'<tr><th scope="col">{e(w("area"))}</th>{head}</tr>'
    return _by_area(w, ops, view, header, cells)


def _open_by_age(w: Words, f: AreaFigures) -> str:
    head = "".join(f'<th scope="col">{e(w("age_" + age))}</th>' for age in AGES)
    rows = ""
    for s in Severity:
        ages = f.open_alerts.get(s, {})
        cells = "".join(
            f'<td class="hot sev-{s}">{n}</td>' if (n := ages.get(age, 0)) else "<td>·</td>"
            for age in AGES
        )
        rows += (
            f'<tr data-severity="{s}"><th scope="row"><span class="sev-dot sev-{s}"></span>'
            f"{e(w.severity(s))}</th>{cells}<td>{_count(sum(ages.values()))}</td></tr>"
        )
    header = f'<tr><th scope="col">{e(w("severity"))}</th>{head}<th>{e(w("total"))}</th></tr>'
    return _table(header, rows)


def _out_of_bed(w: Words, ops: Operations, view: View) -> str:
    if not ops.out_of_bed:
        return f'<p class="empty">{e(w("nobody_out"))}</p>'
    tz = ZoneInfo(view.zone)
    items = ""
    for o in ops.out_of_bed:
        since = ""
        if o.since is not None:
            at = o.since.astimezone(tz).strftime("%H:%M")
            since = f" · {e(w('out_since', at))} ({ago(w, o.since, ops.now)})"
        items += (
            f'<li data-resident="{e(o.resident_id)}"><a href="/console/residents/'
            f'{e(o.resident_id)}/night">{e(o.name)}</a> <small>{e(o.room)} · '
            f"{e(o.area or w('no_area'))}</small>{since}</li>"
        )
    return f'<ul class="out-list">{items}</ul>'


# --- the period: resent on every alert change


def period_section(
    w: Words, ops: Operations, view: View, residents: Mapping[ResidentId, Resident]
) -> str:
    every = ops.overall.answers
    span = f"{view.first.isoformat()} – {view.last.isoformat()}"
    return (
        f"<h2>{e(w('period'))} {e(span)} <small>{e(w('by_raised'))}</small></h2>"
        '<div class="ops-grid">'
        f'<article class="panel"><h3>{e(w("service_level"))}</h3>{_service_level(w, every)}'
        "</article>"
        f'<article class="panel"><h3>{e(w("alerts_by_kind"))}</h3>{_by_kind(w, ops.overall)}'
        "</article>"
        f'<article class="panel wide"><h3>{e(w("answer_times"))}</h3>{_answer_table(w, every)}'
        "</article>"
        f'<article class="panel wide"><h3>{e(w("by_area_period"))}</h3>'
        f"{_areas_period(w, ops, view)}</article>"
        f'<article class="panel wide"><h3>{e(w("workers"))}</h3>{_workers(w, ops)}</article>'
        f'<article class="panel wide"><h3>{e(w("unanswered"))}</h3>'
        f"{_unanswered(w, ops, view, residents)}</article></div>"
    )


def _service_level(w: Words, every: Mapping[str, Answers]) -> str:
    critical = every.get(Severity.CRITICAL)
    if critical is None or not critical.alerts:
        return f'<p class="empty">{e(w("no_critical"))}</p>'
    gauges = "".join(
        _gauge(w, key, done, critical.alerts, target)
        for key, done, target in (
            ("within_60s", critical.within_60s, TARGET_60S),
            ("within_180s", critical.within_180s, TARGET_180S),
        )
    )
    overall = every.get("all", Answers())
    counts = (
        f'<p class="counts"><span data-figure="last_tier">{e(w("last_tier"))} '
        f"<b>{overall.last_tier}</b></span>"
        f'<span data-figure="unanswered">{e(w("unanswered_n"))} <b>{overall.unanswered}</b>'
        "</span></p>"
    )
    return f'<div class="gauges">{gauges}</div>{counts}'


def _gauge(w: Words, key: str, done: int, of: int, target: float) -> str:
    share = done / of
    tone = "meets" if share >= target else "misses"
    return (
        f'<div class="gauge {tone}" data-figure="{key}">'
        f"<span>{e(w(key))}</span><b>{_pct(share)}</b>"
        f"<small>{done} / {of} · {e(w('target', _pct(target)))}</small>"
        '<svg class="meter" viewBox="0 0 100 8" preserveAspectRatio="none" aria-hidden="true">'
        f'<rect class="track" width="100" height="8"/><rect class="fill" width="{share * 100:.1f}"'
        f' height="8"/><rect class="goal" x="{target * 100 - 0.5:.1f}" width="1" height="8"/>'
        "</svg></div>"
    )


def _by_kind(w: Words, f: AreaFigures) -> str:
    if not f.by_kind:
        return f'<p class="empty">{e(w("no_period_alerts"))}</p>'
    top = max(f.by_kind.values())
    rows = "".join(
        f'<li data-kind="{e(kind)}"><span>{e(w.kind(FindingKind(kind)))}</span>'
        '<svg class="bar" viewBox="0 0 100 8" preserveAspectRatio="none" aria-hidden="true">'
        f'<rect width="{n / top * 100:.1f}" height="8"/></svg><b>{n}</b></li>'
        for kind, n in sorted(f.by_kind.items(), key=lambda item: (-item[1], item[0]))
    )
    return f'<ul class="kinds">{rows}</ul>'


def _answer_table(w: Words, every: Mapping[str, Answers]) -> str:
    spreads = ("press_to_page", "page_to_ack", "raised_to_ack")
    singles = ("within_60s", "within_180s", "last_tier", "unanswered_n")
    header = (
        f'<tr><th rowspan="2" scope="col">{e(w("severity"))}</th>'
        f'<th rowspan="2" scope="col">{e(w("alerts_n"))}</th>'
        + "".join(f'<th colspan="3" scope="colgroup">{e(w(k))}</th>' for k in spreads)
        + "".join(f'<th rowspan="2" scope="col">{e(w(k))}</th>' for k in singles)
        + "</tr><tr>"
        + "<th>p50</th><th>p90</th><th>max</th>" * len(spreads)
        + "</tr>"
    )
    rows = ""
    for key in [*(s.value for s in Severity), "all"]:
        a = every.get(key)
        if a is None or (key != "all" and not a.alerts):
            continue
        label = w("all_severities") if key == "all" else w.severity(Severity(key))
        target = key == Severity.CRITICAL
        rows += (
            f'<tr data-severity="{key}"><th scope="row">{e(label)}</th><td>{a.alerts}</td>'
            f"{_spread(w, a.press_to_page)}{_spread(w, a.page_to_ack)}{_spread(w, a.answer)}"
            f"{_share(a.within_60s, a.alerts, TARGET_60S if target else None)}"
            f"{_share(a.within_180s, a.alerts, TARGET_180S if target else None)}"
            f"<td>{_count(a.last_tier)}</td><td>{_count(a.unanswered)}</td></tr>"
        )
    if not rows:
        return f'<p class="empty">{e(w("no_period_alerts"))}</p>'
    return _table(header, rows)


def _areas_period(w: Words, ops: Operations, view: View) -> str:
    header = (
        f'<tr><th rowspan="2" scope="col">{e(w("area"))}</th>'
        f'<th rowspan="2" scope="col">{e(w("alerts_n"))}</th>'
        f'<th colspan="5" scope="colgroup">{e(w.severity(Severity.CRITICAL))}'
        f" · {e(w('raised_to_ack'))}</th>"
        f'<th rowspan="2" scope="col">{e(w("last_tier"))}</th>'
        f'<th rowspan="2" scope="col">{e(w("unanswered_n"))}</th></tr>'
        f"<tr><th>p50</th><th>p90</th><th>max</th><th>≤ 60 s</th><th>≤ 180 s</th></tr>"
    )

    def cells(f: AreaFigures) -> str:
        every, crit = f.answers.get("all", Answers()), f.answers.get(Severity.CRITICAL, Answers())
        return (
            f"<td>{_count(every.alerts)}</td>{_spread(w, crit.answer)}"
            f"{_share(crit.within_60s, crit.alerts, TARGET_60S)}"
            f"{_share(crit.within_180s, crit.alerts, TARGET_180S)}"
            f"<td>{_count(every.last_tier)}</td><td>{_count(every.unanswered)}</td>"
        )

    return _by_area(w, ops, view, header, cells)


def _workers(w: Words, ops: Operations) -> str:
    if not ops.workers:
        return f'<p class="empty">{e(w("no_workers"))}</p>'
    header = (
        f'<tr><th rowspan="2" scope="col">{e(w("worker"))}</th>'
        f'<th rowspan="2" scope="col">{e(w("handled"))}</th>'
        f'<th rowspan="2" scope="col">{e(w("of_critical"))}</th>'
        f'<th colspan="3" scope="colgroup">{e(w("raised_to_ack"))}</th>'
        f'<th colspan="3" scope="colgroup">{e(w("page_to_ack"))}</th></tr>'
        + "<tr>"
        + "<th>p50</th><th>p90</th><th>max</th>" * 2
        + "</tr>"
    )
    rows = "".join(
        f'<tr data-worker="{e(k.contact_id)}"><th scope="row">{e(k.name)}</th>'
        f"<td>{k.acknowledged}</td><td>{k.critical}</td>"
        f"{_spread(w, k.answer)}{_spread(w, k.page_to_ack)}</tr>"
        for k in ops.workers
    )
    return _table(header, rows)


def _unanswered(
    w: Words, ops: Operations, view: View, residents: Mapping[ResidentId, Resident]
) -> str:
    if not ops.unanswered:
        return f'<p class="empty">{e(w("none_unanswered"))}</p>'
    keys = ("raised_at", "resident", "area", "kind", "severity", "tier", "state")
    header = "<tr>" + "".join(f'<th scope="col">{e(w(k))}</th>' for k in keys) + "</tr>"
    rows = ""
    for u in ops.unanswered:
        known = residents.get(u.resident_id)
        zone = known.timezone if known is not None else view.zone
        at = u.opened_at.astimezone(ZoneInfo(zone)).strftime("%m-%d %H:%M")
        # The night the alert fell in, so the plots around it are one tap away.
        night = latest_night(u.opened_at, zone).isoformat()
        rows += (
            f'<tr data-alert="{u.alert_id}"><td>{at}</td><th scope="row"><a href="/console/'
            f'residents/{e(u.resident_id)}/night?night={night}">{e(u.name)}</a></th>'
            f"<td>{e(u.area or w('no_area'))}</td><td>{e(w.kind(u.kind))}</td>"
            f'<td><span class="sev-dot sev-{u.severity}"></span>{e(w.severity(u.severity))}</td>'
            f"<td>{u.tier}</td><td>{e(w.state(AlertState(u.state)))}</td></tr>"
        )
    return _table(header, rows, kind="figures list")


# --- cells


def _table(head: str, body: str, foot: str = "", *, kind: str = "figures") -> str:
    # Wide tables scroll inside their panel on a phone rather than widening the page.
    tfoot = f"<tfoot>{foot}</tfoot>" if foot else ""
    return (
        f'<div class="scroll"><table class="{kind}"><thead>{head}</thead>'
        f"<tbody>{body}</tbody>{tfoot}</table></div>"
    )


def _by_area(
    w: Words, ops: Operations, view: View, header: str, cells: Callable[[AreaFigures], str]
) -> str:
    """A row per area group, and the whole scope's below them when there is more than one."""
    body = "".join(
        f'<tr data-area="{e(g.area)}"><th scope="row">{_area(w, view, g.area)}</th>{cells(g)}</tr>'
        for g in ops.groups
    )
    total = ""
    if len(ops.groups) != 1:
        total = f'<tr class="total"><th scope="row">{e(w("total"))}</th>{cells(ops.overall)}</tr>'
    return _table(header, body, total)


def _area(w: Words, view: View, name: str) -> str:
    """A group's name, linking one level deeper unless it is a leaf or the residents without
    an area."""
    if not name:
        return e(w("no_area"))
    # Named below the area in view (the crumbs say where that is): '12', not 'kangjian/kangle/12'.
    label = next((name[len(a) + 1 :] for a in view.areas if name.startswith(a + "/")), name)
    if name == view.area:
        return e(label)
    return f'<a href="{e(view.query(area=name))}">{e(label)}</a>'


def _spread(w: Words, s: Spread) -> str:
    return "".join(f"<td>{_seconds(w, v)}</td>" for v in (s.p50, s.p90, s.max))


def _seconds(w: Words, value: float | None) -> str:
    """A duration to the second, readable ('4 分 22 秒'); the exact seconds in data-s."""
    if value is None:
        return '<span class="none">—</span>'
    s = int(value + 0.5)  # half a second up, as people round (round() would go to even)
    if s < 60:
        text = w("seconds", s)
    elif s < 3600:
        text = w("minutes_seconds", s // 60, s % 60)
    else:
        text = w("hours_minutes", s // 3600, s % 3600 // 60)
    return f'<span data-s="{s}">{e(text)}</span>'


def _share(done: int, of: int, target: float | None) -> str:
    if not of:
        return '<td><span class="none">—</span></td>'
    share = done / of
    tone = "" if target is None else (' class="meets"' if share >= target else ' class="misses"')
    return f"<td{tone}>{_pct(share)} <small>{done}/{of}</small></td>"


def _pct(share: float) -> str:
    return f"{share * 100:.1f} %"


def _count(n: int) -> str:
    return str(n) if n else '<span class="none">0</span>'
