"""The sleep report's pages: the night's figures and plot, then the trend of the last nights."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from alerts.digest import Night
from alerts.messages import evidence_line
from bedwatch.reports import document, plots
from bedwatch.reports.sleep import NIGHTS, Seen, SleepReport
from bedwatch.reports.text import DASH, Lang, Words, clock, hours, number

e = document.e


def render(report: SleepReport, lang: Lang) -> bytes:
    return document.pdf(html(report, lang))


def html(report: SleepReport, lang: Lang) -> str:
    w = Words(lang)
    where = [report.name]
    if report.room:
        where.append(f"{w('room')} {report.room}")
    where.append(w("night_of", report.night.isoformat()))
    body = [
        document.section(w("this_night"), _facts(report, w)),
        document.section(
            w("night_vitals"),
            document.figure(
                plots.night_vitals(report.vitals, report.timezone, w), w("out_of_bed_shade")
            ),
        ),
        document.section(
            w("findings_night"), _findings(report.findings_of(report.night), report, w)
        ),
        document.section(w("findings_nights", NIGHTS), _counts(report.findings, w)),
        document.section(
            w("trends", NIGHTS),
            document.figure(plots.sleep_trends(report.nights, report.days, w)),
            new_page=True,
        ),
        document.section(w("nights_table"), _nights(report, w)),
    ]
    return document.page(
        w,
        title=w("sleep_title"),
        subtitle=" · ".join(where),
        made_at=report.made_at.astimezone(_zone(report)),
        body="".join(body),
    )


def _zone(report: SleepReport) -> ZoneInfo:
    return ZoneInfo(report.timezone)


def _onset(night: Night | None, timezone: str) -> str:
    if night is None or night.sleep_onset_ms is None:
        return DASH
    return clock(datetime.fromtimestamp(night.sleep_onset_ms / 1000, UTC), timezone)


# What the night's box shows: label key, how a night's value is written, and the value to take
# the median of over the last nights (None: no median, e.g. a clock time).
Fact = tuple[str, Callable[[Night], str], Callable[[Night], float | None] | None]
FACTS: Sequence[Fact] = (
    ("time_in_bed", lambda n: hours(n.time_in_bed_s), lambda n: n.time_in_bed_s),
    ("exits", lambda n: str(n.exits), lambda n: n.exits),
    ("longest_absence", lambda n: hours(n.longest_absence_s), lambda n: n.longest_absence_s),
    ("restlessness", lambda n: f"{number(n.restlessness_pct)} %", lambda n: n.restlessness_pct),
    ("hr_mean", lambda n: _range(n.hr_mean, n.hr_min, n.hr_max), lambda n: n.hr_mean),
    ("rr_mean", lambda n: _range(n.rr_mean, n.rr_min, n.rr_max), lambda n: n.rr_mean),
    ("pauses_per_h", lambda n: number(n.pauses_per_h), lambda n: n.pauses_per_h),
)
_AS_HOURS = {"time_in_bed", "longest_absence"}


def _range(mean: float | None, low: float | None, high: float | None) -> str:
    spread = "" if low is None or high is None else f" ({low:.0f}-{high:.0f})"
    return f"{number(mean)}{spread}"


def _facts(report: SleepReport, w: Words) -> str:
    night = report.summary
    if night is None:
        return f'<p class="empty">{e(w("no_summary"))}</p>'
    usual = w("usual", len(report.nights))
    items = [(w("onset"), _onset(night, report.timezone), "")]
    for key, show, value in FACTS:
        known = [v for n in report.nights if value and (v := value(n)) is not None]
        median = statistics.median(known) if known else None
        typical = hours(median) if key in _AS_HOURS else number(median)
        items.append((w(key), show(night), f"{usual} {typical}"))
    return (
        '<dl class="facts">'
        + "".join(
            f"<div><dt>{e(label)}</dt><dd>{e(shown)}<br><small>{e(note)}</small></dd></div>"
            for label, shown, note in items
        )
        + "</dl>"
    )


def _findings(found: Sequence[Seen], report: SleepReport, w: Words) -> str:
    if not found:
        return f'<p class="empty">{e(w("no_findings"))}</p>'
    zone = _zone(report)
    rows = [
        (
            f.started_at.astimezone(zone).strftime("%m-%d %H:%M"),
            w.kind(f.kind) + (w("late") if f.late else ""),
            w.severity(f.severity),
            evidence_line(f.evidence, zh=w.lang is Lang.ZH),
        )
        for f in found
    ]
    return document.table([w("when"), w("what"), w("level"), w("evidence")], rows)


def _nights(report: SleepReport, w: Words) -> str:
    by_day = {n.night: n for n in report.nights}
    rows = []
    for day in reversed(report.days):
        n = by_day.get(day)
        rows.append(
            [
                day.isoformat(),
                DASH if n is None else hours(n.time_in_bed_s),
                _onset(n, report.timezone),
                DASH if n is None else str(n.exits),
                DASH if n is None else number(n.hr_mean),
                DASH if n is None else number(n.rr_mean),
                DASH if n is None else number(n.pauses_per_h),
            ]
        )
    head = ["night", "time_in_bed", "onset", "exits", "hr_mean", "rr_mean", "pauses_per_h"]
    marks = ["this" if day == report.night else "" for day in reversed(report.days)]
    return document.table([w(k) for k in head], rows, numeric=range(1, len(head)), row_class=marks)


def _counts(found: Sequence[Seen], w: Words) -> str:
    counts = Counter((f.kind, f.severity) for f in found)
    if not counts:
        return f'<p class="empty">{e(w("no_findings"))}</p>'
    rows = [
        (w.kind(kind), w.severity(severity), str(n))
        for (kind, severity), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    return document.table([w("what"), w("level"), w("count")], rows, numeric={2})
