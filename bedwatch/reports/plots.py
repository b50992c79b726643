"""The reports' plots: matplotlib figures written as SVG whose text stays text, for the PDF."""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from alerts.operations import TARGET_60S, TARGET_180S
from detectors.findings import FindingKind, Severity

if TYPE_CHECKING:  # matplotlib is imported when a plot is drawn, never by the service
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.typing import RcKeyType

    from alerts.console.queries import Night as Vitals
    from alerts.digest import Night
    from alerts.operations import AnswerTime, Availability
    from bedwatch.reports.text import Words

WIDTH_IN = 6.8  # the A4 page's text width (report.css), so a plot is set at its own size
FONTS = ["Noto Sans CJK SC", "DejaVu Sans"]  # as report.css: the PDF's text and the plots' agree
RC: dict[RcKeyType, Any] = {
    "svg.fonttype": "none",  # text stays text: selectable, searchable, drawn by the PDF's fonts
    "svg.hashsalt": "bedwatch",  # the same report draws the same SVG
    "font.family": FONTS,
    "font.size": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 9,
    "axes.titlelocation": "left",
}
LINE = "#1f5f8b"
SECOND = "#b5562a"
MARK = "#c0392b"
SHADE = "#e6e6e6"
TICK_EVERY_MIN = 180
# A night's rates are drawn over at least these ranges (per minute), so that a flat night looks
# flat rather than its noise filling the plot.
HR_RANGE = (40.0, 100.0)
RR_RANGE = (8.0, 25.0)
SEVERITY_COLOURS = {
    Severity.CRITICAL: "#c62828",
    Severity.HIGH: "#e65100",
    Severity.MEDIUM: "#b28704",
    Severity.LOW: "#1565c0",
}
ANSWER_TICKS_S = (1, 10, 30, 60, 180, 600, 1800, 3600, 14_400)
TARGETS_S = (60, 180)  # answered within: the telecare standard's marks (TARGET_60S, TARGET_180S)
CURVE_POINTS = 400  # steps of an answer-time curve, at most


@contextmanager
def figure(height_in: float, rows: int = 1) -> Iterator[tuple[Figure, list[Axes]]]:
    """A figure of the page's width with `rows` axes sharing x."""
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(WIDTH_IN, height_in), layout="constrained")
        axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
        yield fig, list(axes)


def svg(fig: Figure) -> str:
    """The figure as an SVG document."""
    out = io.StringIO()
    with warnings.catch_warnings():
        # matplotlib measures text with the fonts it finds itself; where it has no CJK font but
        # fontconfig has one, the PDF still sets the text right (it stays text), only the
        # layout's idea of its width is off. Warnings are errors in the tests, so say it once.
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from font")
        fig.savefig(out, format="svg", metadata={"Date": None})
    return out.getvalue()


def _series(values: Sequence[float | None]) -> list[float]:
    return [float("nan") if v is None else v for v in values]


def night_vitals(vitals: Vitals, timezone: str, w: Words) -> str:
    """Heart and breathing rate minute by minute, out-of-bed time shaded, alerts marked."""
    minutes = list(range(vitals.minutes))
    out_of_bed = [v is not None and v < 0.5 for v in vitals.occ]
    marks = [(at - vitals.start).total_seconds() / 60 for at, _, _ in vitals.alerts]
    rows = ((vitals.hr, w("hr"), LINE, HR_RANGE), (vitals.rr, w("rr"), SECOND, RR_RANGE))
    with figure(3.4, rows=2) as (fig, axes):
        for ax, (values, label, colour, (low, high)) in zip(axes, rows, strict=True):
            ax.fill_between(
                minutes, 0, 1, where=out_of_bed, color=SHADE, transform=ax.get_xaxis_transform()
            )
            ax.plot(minutes, _series(values), color=colour, linewidth=0.7)
            for x in marks:
                ax.axvline(x, color=MARK, linewidth=0.8)
            ax.set_ylabel(f"{label} ({w('bpm')})")
            present = [v for v in values if v is not None]
            ax.set_ylim(min([low, *present]) - 2, max([high, *present]) + 2)
        local = vitals.start.astimezone(ZoneInfo(timezone))
        ticks = list(range(0, vitals.minutes + 1, TICK_EVERY_MIN))
        labels = [(local + timedelta(minutes=m)).strftime("%H:%M") for m in ticks]
        axes[-1].set_xticks(ticks, labels)
        axes[-1].set_xlim(0, vitals.minutes)
        return svg(fig)


def sleep_trends(nights: Sequence[Night], days: Sequence[date], w: Words) -> str:
    """The last nights side by side: time in bed, exits, HR and RR (mean, min-max), pauses."""
    by_day = {n.night: n for n in nights}
    xs = list(range(len(days)))

    def values(field: str) -> list[float]:
        return [_of(by_day.get(d), field) for d in days]

    with figure(4.8, rows=5) as (fig, axes):
        in_bed = [v / 3600 for v in values("time_in_bed_s")]
        axes[0].bar(xs, in_bed, color=LINE)
        axes[0].set_title(f"{w('time_in_bed')} ({w('hours_axis')})")
        axes[1].bar(xs, values("exits"), color=SECOND)
        axes[1].set_title(w("exits"))
        for ax, name, colour in ((axes[2], "hr", LINE), (axes[3], "rr", SECOND)):
            ax.fill_between(xs, values(f"{name}_min"), values(f"{name}_max"), color=SHADE)
            ax.plot(xs, values(f"{name}_mean"), color=colour, marker="o", markersize=3)
            ax.set_title(f"{w(f'{name}_mean')} ({w('bpm')})")
        axes[4].bar(xs, values("pauses_per_h"), color=LINE)
        axes[4].set_title(f"{w('pauses_per_h')} ({w('per_h')})")
        axes[-1].set_xticks(xs, [d.strftime("%m-%d") for d in days])
        return svg(fig)


def _of(night: Night | None, field: str) -> float:
    value = None if night is None else getattr(night, field)
    return float("nan") if value is None else float(value)


def answer_distribution(times: Sequence[AnswerTime], w: Words) -> str:
    """Per severity, the share of alerts answered within t (log t): where each curve crosses
    the 60 s and 180 s lines is the share answered in time; unanswered ones keep it below 100 %."""
    longest = max((t.answer_s or 0.0 for t in times), default=0.0)
    with figure(2.8) as (fig, (ax,)):
        for severity, colour in SEVERITY_COLOURS.items():
            raised = [t for t in times if t.severity is severity]
            answered = sorted(max(t.answer_s, 0.5) for t in raised if t.answer_s is not None)
            if not answered:
                continue
            # A month of a street is thousands of steps; a few hundred draw the same curve.
            every = max(1, len(answered) // CURVE_POINTS)
            ks = [*range(0, len(answered) - 1, every), len(answered) - 1]
            xs = [answered[0], *(answered[k] for k in ks), max(longest, answered[-1]) * 1.5]
            ys = [
                0.0,
                *(100 * (k + 1) / len(raised) for k in ks),
                100 * len(answered) / len(raised),
            ]
            label = f"{w.severity(severity)} ({len(raised)})"
            ax.step(xs, ys, where="post", color=colour, label=label)
        for target in TARGETS_S:
            ax.axvline(target, color="0.5", linestyle="--", linewidth=0.7)
            ax.annotate(f"{target} s", (target, 2), xytext=(3, 0), textcoords="offset points")
        shares = (100 * TARGET_60S, 100 * TARGET_180S)
        ax.plot(TARGETS_S, shares, "k^", markersize=4, label=w("targets", *shares))
        ax.set_xscale("log")
        ticks = [t for t in ANSWER_TICKS_S if t <= max(longest, 1.0) * 1.5]
        ax.set_xticks(ticks, [f"{t} s" if t < 60 else f"{t // 60} min" for t in ticks])
        ax.minorticks_off()
        ax.set_ylim(0, 102)
        ax.set_xlabel(w("answer_axis"))
        ax.set_ylabel(w("share_axis"))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left")  # a curve rises from lower left to upper right
        return svg(fig)


def alerts_per_day(
    per_day: Sequence[tuple[date, FindingKind, int]], days: Sequence[date], w: Words
) -> str:
    """Alerts raised each day, stacked by kind."""
    from matplotlib import colormaps
    from matplotlib.ticker import MaxNLocator

    kinds = [kind for kind in FindingKind if any(k is kind for _, k, _ in per_day)]
    counts = {(day, kind): n for day, kind, n in per_day}
    xs = list(range(len(days)))
    palette = colormaps["tab20"]
    with figure(3.0) as (fig, (ax,)):
        below = [0.0] * len(days)
        for i, kind in enumerate(kinds):
            heights = [float(counts.get((d, kind), 0)) for d in days]
            ax.bar(xs, heights, bottom=below, color=palette(i % 20), label=w.kind(kind))
            below = [b + h for b, h in zip(below, heights, strict=True)]
        _day_ticks(ax, days)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(w("alerts_axis"))
        if kinds:
            fig.legend(loc="outside lower center", ncols=min(len(kinds), 4), frameon=False)
        return svg(fig)


def availability(
    overall: Sequence[Availability], groups: Sequence[tuple[str, Sequence[Availability]]], w: Words
) -> str:
    """Per night, the share of pads that reported (each area group, and all), and how fully."""
    xs = list(range(len(overall)))
    with figure(3.0) as (fig, (ax,)):
        for label, nights in groups:
            ax.plot(xs, [100 * n.share_reporting for n in nights], linewidth=0.9, label=label)
        ax.plot(
            xs, [100 * n.share_reporting for n in overall], color="black", linewidth=1.8,
            label=w("all_areas"),
        )  # fmt: skip
        ax.plot(
            xs, [100 * n.coverage for n in overall], color="black", linestyle=":",
            label=w("coverage_all"),
        )  # fmt: skip
        _day_ticks(ax, [n.night for n in overall])
        ax.set_ylim(0, 102)
        ax.set_ylabel(w("reporting_axis"))
        fig.legend(loc="outside lower center", ncols=min(len(groups) + 2, 4), frameon=False)
        return svg(fig)


def _day_ticks(ax: Axes, days: Sequence[date]) -> None:
    step = max(1, len(days) // 8)
    ticks = list(range(0, len(days), step))
    ax.set_xticks(ticks, [days[k].strftime("%m-%d") for k in ticks])
    ax.set_xlim(-0.6, len(days) - 0.4)
