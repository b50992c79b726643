"""A night's vitals drawn as inline SVG on the server: no script, no library, any screen width."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

WIDTH = 480
HEIGHT = 120
LEFT = 36  # room for the value axis labels
BOTTOM = 18  # room for the time axis labels
TOP = 6
TICK_EVERY_MIN = 180


class Style(StrEnum):
    LINE = "line"  # a rate: a line broken where there is no data
    AREA = "area"  # a share 0..1 (occupancy): a filled step area
    BARS = "bars"  # an intensity (movement): one bar per minute


@dataclass(frozen=True, slots=True)
class Chart:
    name: str  # CSS class and accessible label
    label: str
    values: Sequence[float | None]
    low: float  # the value axis always covers low..high, more if the data goes beyond
    high: float
    style: Style
    unit: str = ""


def svg(chart: Chart, start: datetime, timezone: str, marks: Sequence[datetime] = ()) -> str:
    """One chart, one slot per minute from `start`; `marks` are drawn as vertical lines."""
    low, high = _range(chart)
    frame = _Frame(len(chart.values), low, high)
    parts = [
        f'<svg class="chart chart-{chart.name}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img"'
        f' aria-label="{html.escape(chart.label)}">',
        *_grid(frame, start, timezone, chart.unit),
        _shape(chart, frame),
        *(_mark(frame, start, at) for at in marks),
        "</svg>",
    ]
    return "".join(parts)


def _range(chart: Chart) -> tuple[float, float]:
    present = [v for v in chart.values if v is not None]
    low = min([chart.low, *present])
    high = max([chart.high, *present])
    return math.floor(low), math.ceil(high) if high > low else low + 1


@dataclass(frozen=True, slots=True)
class _Frame:
    slots: int
    low: float
    high: float

    def x(self, slot: float) -> float:
        return LEFT + (WIDTH - LEFT) * slot / max(self.slots, 1)

    def y(self, value: float) -> float:
        span = HEIGHT - TOP - BOTTOM
        return TOP + span * (1 - (value - self.low) / (self.high - self.low))


def _grid(frame: _Frame, start: datetime, timezone: str, unit: str) -> list[str]:
    out = []
    local = start.astimezone(ZoneInfo(timezone))
    for minute in range(0, frame.slots + 1, TICK_EVERY_MIN):
        x = frame.x(minute)
        label = (local + timedelta(minutes=minute)).strftime("%H:%M")
        bottom = HEIGHT - BOTTOM
        out.append(f'<line class="grid" x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{bottom}"/>')
        anchor = "start" if minute == 0 else "end" if minute >= frame.slots else "middle"
        out.append(f'<text x="{x:.1f}" y="{HEIGHT - 4}" text-anchor="{anchor}">{label}</text>')
    for value in (frame.low, frame.high):
        y = frame.y(value)
        out.append(f'<line class="grid" x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH}" y2="{y:.1f}"/>')
        text = f"{value:g}{unit}"
        out.append(f'<text x="{LEFT - 3}" y="{y + 4:.1f}" text-anchor="end">{text}</text>')
    return out


def _shape(chart: Chart, frame: _Frame) -> str:
    if chart.style is Style.LINE:
        return f'<path class="series" d="{_line(chart.values, frame)}"/>'
    if chart.style is Style.AREA:
        return f'<path class="series area" d="{_area(chart.values, frame)}"/>'
    return f'<path class="series bars" d="{_bars(chart.values, frame)}"/>'


def _line(values: Sequence[float | None], frame: _Frame) -> str:
    commands = []
    pen_down = False
    for slot, value in enumerate(values):
        if value is None:
            pen_down = False
            continue
        op = "L" if pen_down else "M"
        commands.append(f"{op}{frame.x(slot + 0.5):.1f},{frame.y(value):.1f}")
        pen_down = True
    return " ".join(commands)


def _area(values: Sequence[float | None], frame: _Frame) -> str:
    """Each minute with a reading as a rectangle up to its share of the minute in bed."""
    base = frame.y(frame.low)
    return " ".join(
        f"M{frame.x(slot):.1f},{base:.1f}V{frame.y(v):.1f}H{frame.x(slot + 1):.1f}V{base:.1f}Z"
        for slot, v in enumerate(values)
        if v
    )


def _bars(values: Sequence[float | None], frame: _Frame) -> str:
    base = frame.y(frame.low)
    return " ".join(
        f"M{frame.x(slot + 0.5):.1f},{base:.1f}V{frame.y(v):.1f}"
        for slot, v in enumerate(values)
        if v
    )


def _mark(frame: _Frame, start: datetime, at: datetime) -> str:
    slot = (at - start).total_seconds() / 60
    x = frame.x(slot)
    return f'<line class="mark" x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{HEIGHT - BOTTOM}"/>'
