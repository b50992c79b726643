"""The operations report's pages: answer times, alerts by kind, the fleet, who answered."""

from __future__ import annotations

from collections.abc import Sequence
from zoneinfo import ZoneInfo

from alerts.operations import Answers, AreaFigures, Availability, Spread
from bedwatch.reports import document, plots
from bedwatch.reports.operations import OperationsReport
from bedwatch.reports.text import Lang, Words, seconds
from detectors.findings import FindingKind, Severity

e = document.e
ANSWER_NUMERIC = range(1, 9)


def render(report: OperationsReport, lang: Lang) -> bytes:
    return document.pdf(html(report, lang))


def html(report: OperationsReport, lang: Lang) -> str:
    w = Words(lang)
    ops = report.figures
    scope = w("every_area") if "*" in ops.areas else ", ".join(ops.areas)
    period = w("period", report.days[0].isoformat(), report.days[-1].isoformat())
    body = [
        document.section(w("answers"), _answers(report, w)),
        document.section(w("alerts_by_day"), _alerts(report, w), new_page=True),
        document.section(w("fleet"), _fleet(report, w), new_page=True),
        document.section(w("workers"), _workers(report, w), new_page=True),
        document.section(w("unanswered_list"), _unanswered(report, w)),
    ]
    return document.page(
        w,
        title=w("operations_title"),
        subtitle=" · ".join((w("scope", scope), period, w("by_depth", ops.depth))),
        made_at=ops.now.astimezone(ZoneInfo(report.timezone)),
        body="".join(body),
    )


def _area(w: Words, group: AreaFigures | None) -> str:
    if group is None:
        return w("all_areas")
    return group.area or w("no_area")


def _spread(s: Spread, *, p90: bool = True) -> str:
    parts = [s.p50, s.p90, s.max] if p90 else [s.p50, s.max]
    return " / ".join(seconds(v) for v in parts)


def _share(n: int, of: int) -> str:
    return f"{n} ({100 * n / of:.1f} %)" if of else str(n)


def _answer_row(label: str, a: Answers) -> list[str]:
    return [
        label,
        str(a.alerts),
        _share(a.within_60s, a.alerts),
        _share(a.within_180s, a.alerts),
        _spread(a.press_to_page, p90=False),
        _spread(a.page_to_ack),
        _spread(a.answer),
        str(a.last_tier),
        str(a.unanswered),
    ]


def _answer_head(w: Words, first: str) -> list[str]:
    keys = ["alerts_n", "within_60", "within_180", "press_to_page", "page_to_ack", "answer"]
    return [first, *(w(k) for k in keys), w("last_tier"), w("unanswered")]


def _answers(report: OperationsReport, w: Words) -> str:
    ops = report.figures
    areas = [(None, ops.overall), *((g, g) for g in ops.groups)]
    by_area = [
        _answer_row(_area(w, label), found.answers.get(Severity.CRITICAL, Answers()))
        for label, found in areas
    ]
    by_severity = [
        _answer_row(w.severity(s), ops.overall.answers.get(s, Answers())) for s in Severity
    ]
    by_severity.append(_answer_row(w("all_severities"), ops.overall.answers.get("all", Answers())))
    return (
        f"<h3>{e(w('critical_by_area'))}</h3>"
        + document.table(
            _answer_head(w, w("area")), by_area, numeric=ANSWER_NUMERIC, row_class=["total"]
        )
        + f"<h3>{e(w('by_severity'))}</h3>"
        + document.table(
            _answer_head(w, w("level")),
            by_severity,
            numeric=ANSWER_NUMERIC,
            row_class=[""] * len(Severity) + ["total"],
        )
        + document.figure(plots.answer_distribution(report.times, w), w("distribution"))
    )


def _alerts(report: OperationsReport, w: Words) -> str:
    ops = report.figures
    columns = [ops.overall, *ops.groups]
    kinds = [k for k in FindingKind if k in ops.overall.by_kind]
    rows = [
        [w.kind(k), *(str(c.by_kind.get(k, 0)) for c in columns[1:]), str(columns[0].by_kind[k])]
        for k in kinds
    ]
    head = [w("kind"), *(_area(w, g) for g in ops.groups), w("total")]
    table = (
        document.table(head, rows, numeric=range(1, len(head)))
        if rows
        else f'<p class="empty">{e(w("none"))}</p>'
    )
    figure = plots.alerts_per_day(report.per_day, report.days, w)
    return document.figure(figure) + f"<h3>{e(w('alerts_by_kind'))}</h3>" + table


def _reporting(nights: Sequence[Availability]) -> tuple[str, str]:
    """Bed-nights reported, of all, and the mean coverage, over the period."""
    beds = sum(n.beds for n in nights)
    if not beds:
        return "0", "—"
    reported = sum(n.reporting for n in nights)
    covered = sum(n.coverage * n.beds for n in nights) / beds
    return _share(reported, beds), f"{100 * covered:.1f} %"


def _fleet(report: OperationsReport, w: Words) -> str:
    ops = report.figures
    groups = list(zip(ops.groups, report.group_nights, strict=True))
    figure = plots.availability(report.nights, [(_area(w, g), n) for g, n in groups], w)
    areas = [(None, ops.overall, report.nights), *((g, g, n) for g, n in groups)]
    rows = []
    for label, found, nights in areas:
        f = found.fleet
        current = [f.online, f.silent_1h, f.low_battery, f.strap_off, f.out_of_bed]
        current.append(found.open_total)
        rows.append([_area(w, label), str(f.beds), *_reporting(nights), *map(str, current)])
    keys = ["beds", "reporting", "coverage", "online_now", "silent_1h", "low_battery"]
    keys += ["strap_off", "out_of_bed_now", "open_now"]
    now = ops.now.astimezone(ZoneInfo(report.timezone)).strftime("%Y-%m-%d %H:%M")
    return (
        document.figure(figure, w("availability"))
        + f"<h3>{e(w('fleet_table'))}</h3>"
        + document.table(
            [w("area"), *(w(k) for k in keys)], rows, numeric=range(1, 10), row_class=["total"]
        )
        + f'<p class="note">{e(w("now_note", now))}</p>'
    )


def _workers(report: OperationsReport, w: Words) -> str:
    workers = report.figures.workers
    if not workers:
        return f'<p class="empty">{e(w("none"))}</p>'
    rows = [
        [x.name, str(x.acknowledged), str(x.critical), _spread(x.answer), _spread(x.page_to_ack)]
        for x in workers
    ]
    head = [w("worker"), w("acknowledged"), w("critical_n"), w("answer"), w("page_to_ack")]
    return document.table(head, rows, numeric=range(1, 5))


def _unanswered(report: OperationsReport, w: Words) -> str:
    found = report.figures.unanswered
    if not found:
        return f'<p class="empty">{e(w("none"))}</p>'
    zone = ZoneInfo(report.timezone)
    rows = [
        [
            u.opened_at.astimezone(zone).strftime("%m-%d %H:%M"),
            u.name,
            u.area or w("no_area"),
            w.kind(u.kind),
            w.severity(u.severity),
            str(u.tier),
        ]
        for u in found
    ]
    head = [w("when"), w("resident"), w("area"), w("what"), w("level"), w("tier")]
    return document.table(head, rows, numeric={5})
