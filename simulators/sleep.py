"""A resident's night as a plan: bedtime, sleep cycles, wakes, toilet trips, turnovers, pauses."""

# Everything here is in whole seconds from the night's origin (18:00 local on the evening of the
# night), is decided once per resident-night from its seed, and is cheap: a handful of intervals,
# no per-second arrays are kept. `simulators.vitals` renders seconds from it on demand.

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
from scipy.signal import lfilter

from simulators.physiology import ResidentProfile, Stage

TIMEZONE = ZoneInfo("Asia/Shanghai")
ORIGIN_LOCAL = time(18, 0)
RISE_NOT_BEFORE_H = 7.05  # the bed-exit detector watches 21:00-07:00: a natural rise is after it
KNOT_S = 300  # slow drift of heart and breathing rate: one random knot every 5 minutes
SPAN_S = 30 * 3600  # knots cover the frame and a generous tail
MAX_NATURAL_GAP_S = 50 * 60  # natural turnovers come at least this often (immobile is 2 h)

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
Interval = tuple[int, int]


@dataclass(frozen=True, slots=True)
class PlanConstraints:
    """What scripted scenarios need from the night before any natural event is placed."""

    in_bed: tuple[Interval, ...] = ()  # must lie in bed through these
    quiet: tuple[Interval, ...] = ()  # no natural wakes, trips, turnovers or pauses here
    exits: tuple[tuple[int, int | None], ...] = ()  # scripted time out of bed (None: no return)
    moves: tuple[int, ...] = ()  # scripted turnovers (e.g. the ones that bound a still spell)


@dataclass(frozen=True, slots=True)
class NightPlan:
    profile: ResidentProfile
    night_date: date  # the evening's local date
    origin_ms: int  # 18:00 local on night_date, as epoch ms
    seed: int
    bedtime_s: int
    sleep_onset_s: int
    final_wake_s: int
    rise_s: int
    seg_start_s: IntArray  # stage segments covering [bedtime_s, rise_s), OUT elsewhere
    seg_stage: IntArray
    turnover_s: IntArray  # body movements: turning over, getting in and out of bed
    turnover_len_s: IntArray
    pause_s: IntArray  # natural breathing pauses (always < 30 s)
    pause_len_s: IntArray
    hr_knots: FloatArray = field(repr=False)
    rr_knots: FloatArray = field(repr=False)

    def ms(self, second: int) -> int:
        return self.origin_ms + second * 1000

    def stage_at(self, seconds: IntArray) -> IntArray:
        """Stage of each given second (vectorised)."""
        idx = np.searchsorted(self.seg_start_s, seconds, side="right") - 1
        stages = self.seg_stage[np.clip(idx, 0, None)]
        outside = (seconds < self.bedtime_s) | (seconds >= self.rise_s) | (idx < 0)
        return np.where(outside, Stage.OUT, stages)

    def in_bed_between(self, a: int, b: int) -> int:
        """Seconds spent in bed in [a, b)."""
        ends = np.append(self.seg_start_s[1:], self.rise_s)
        lo = np.maximum(self.seg_start_s, a)
        hi = np.minimum(ends, b)
        inside = (self.seg_stage != Stage.OUT) & (hi > lo)
        return int((hi - lo)[inside].sum())

    def in_bed_s(self) -> int:
        stages = self.seg_stage
        lengths = np.diff(np.append(self.seg_start_s, self.rise_s))
        return int(lengths[stages != Stage.OUT].sum())


def night_origin_ms(night_date: date) -> int:
    local = datetime.combine(night_date, ORIGIN_LOCAL, tzinfo=TIMEZONE)
    return int(local.timestamp() * 1000)


def night_date_of(epoch_ms: int) -> date:
    """The night a moment belongs to: noon to noon, local time."""
    local = datetime.fromtimestamp(epoch_ms / 1000, TIMEZONE) - timedelta(hours=12)
    return local.date()


def local_seconds(plan_origin_ms: int, hhmm: time) -> int:
    """Seconds from a night's origin to a local clock time (before noon means the next morning)."""
    day = datetime.fromtimestamp(plan_origin_ms / 1000, TIMEZONE).date()
    if hhmm.hour < 12:
        day += timedelta(days=1)
    moment = datetime.combine(day, hhmm, tzinfo=TIMEZONE)
    return int(moment.timestamp() * 1000 - plan_origin_ms) // 1000


def plan_night(
    profile: ResidentProfile,
    night_date: date,
    seed: int,
    constraints: PlanConstraints = PlanConstraints(),
) -> NightPlan:
    """Decide one night for one resident; the same arguments always give the same night."""
    rng = np.random.default_rng([seed, profile.index, night_date.toordinal(), 1])
    origin_ms = night_origin_ms(night_date)
    bedtime, onset, final_wake, rise = _schedule(profile, rng, constraints)
    stages = _hypnogram(profile, rng, onset - bedtime, final_wake - bedtime, rise - bedtime)
    _place_wakes(profile, rng, stages, bedtime, onset, final_wake, constraints)
    _place_trips(profile, rng, stages, bedtime, onset, final_wake, constraints)
    _place_exits(stages, bedtime, constraints)
    for start, end in constraints.exits:
        if end is None:  # leaving for good: that is this night's rising
            rise = min(rise, start)
            final_wake = min(final_wake, start - 90)
            stages = stages[: rise - bedtime]
    change = np.flatnonzero(np.diff(stages)) + 1
    starts = np.concatenate(([0], change)).astype(np.int64)
    seg_stage = stages[starts].astype(np.int64)
    turn_s, turn_len = _turnovers(profile, rng, stages, bedtime, constraints)
    pause_s, pause_len = _natural_pauses(profile, rng, stages, bedtime, turn_s, constraints)
    return NightPlan(
        profile=profile,
        night_date=night_date,
        origin_ms=origin_ms,
        seed=seed,
        bedtime_s=bedtime,
        sleep_onset_s=onset,
        final_wake_s=final_wake,
        rise_s=rise,
        seg_start_s=starts + bedtime,
        seg_stage=seg_stage,
        turnover_s=turn_s,
        turnover_len_s=turn_len,
        pause_s=pause_s,
        pause_len_s=pause_len,
        hr_knots=_ar1(rng, SPAN_S // KNOT_S + 2, 0.85, 1.6),
        rr_knots=_ar1(rng, SPAN_S // KNOT_S + 2, 0.85, 0.35),
    )


def _schedule(
    p: ResidentProfile, rng: np.random.Generator, c: PlanConstraints
) -> tuple[int, int, int, int]:
    sd_s = p.schedule_sd_min * 60
    bedtime = int((p.bedtime_local_h - 18) * 3600 + rng.normal(0, sd_s))
    rise_h = max(p.rise_local_h + rng.normal(0, p.schedule_sd_min / 60), RISE_NOT_BEFORE_H)
    rise = int((rise_h + 6) * 3600)
    # A scripted in-bed condition moves the night so that it lies inside the time in bed.
    for start, end in c.in_bed:
        bedtime = min(bedtime, start - 30 * 60)
        rise = max(rise, end + 30 * 60)
    bedtime = max(bedtime, 600)
    latency = int(np.clip(rng.normal(p.sleep_latency_min, 5), 3, 60) * 60)
    onset = bedtime + latency
    final_wake = rise - int(rng.uniform(5, 25) * 60)
    return bedtime, onset, max(final_wake, onset + 3600), rise


def _hypnogram(
    p: ResidentProfile, rng: np.random.Generator, onset: int, final_wake: int, n: int
) -> npt.NDArray[np.int8]:
    stages = np.full(n, Stage.WAKE, dtype=np.int8)
    t, k = onset, 0
    while t < final_wake:
        cycle = rng.normal(90, 8) * 60
        n1 = rng.uniform(3, 8) * 60 if k == 0 else rng.uniform(1, 4) * 60
        n3 = max(0.0, 30 - 8 * k) * p.deep_sleep_factor * rng.uniform(0.7, 1.3) * 60
        rem = min(35.0, (8 + 5 * k) * rng.uniform(0.8, 1.2)) * 60
        n2 = max(cycle - n1 - n3 - rem, 10 * 60)
        for stage, length in (
            (Stage.N1, n1),
            (Stage.N2, 0.6 * n2),
            (Stage.N3, n3),
            (Stage.N2, 0.4 * n2),
            (Stage.REM, rem),
        ):
            end = min(t + int(length), final_wake)
            stages[t:end] = stage
            t = end
        k += 1
    return stages


def _overlaps(start: int, end: int, intervals: tuple[Interval, ...], margin: int = 0) -> bool:
    return any(start < b + margin and a - margin < end for a, b in intervals)


def _place_wakes(
    p: ResidentProfile,
    rng: np.random.Generator,
    stages: npt.NDArray[np.int8],
    bedtime: int,
    onset: int,
    final_wake: int,
    c: PlanConstraints,
) -> None:
    count = rng.poisson(p.wakes_per_h * (final_wake - onset) / 3600)
    for at in rng.uniform(onset + 1800, final_wake - 600, size=count).astype(int):
        length = int(rng.uniform(60, 240))
        if _overlaps(at, at + length + 120, c.quiet, 300):
            continue
        stages[at - bedtime : at - bedtime + length] = Stage.WAKE
        stages[at - bedtime + length : at - bedtime + length + 120] = Stage.N1


def _place_trips(
    p: ResidentProfile,
    rng: np.random.Generator,
    stages: npt.NDArray[np.int8],
    bedtime: int,
    onset: int,
    final_wake: int,
    c: PlanConstraints,
) -> None:
    busy: list[Interval] = [(a, b if b is not None else final_wake) for a, b in c.exits]
    count = min(int(rng.poisson(p.toilet_trips_mean)), 3)
    for at in np.sort(rng.uniform(onset + 1800, final_wake - 2400, size=count)).astype(int):
        before, out, after = (
            int(rng.uniform(lo, hi)) for lo, hi in ((60, 180), (180, 600), (180, 480))
        )
        span = (at - before, at + out + after + 180)
        if _overlaps(*span, c.quiet + c.in_bed + tuple(busy), 600):
            continue
        busy.append(span)
        i = at - bedtime
        stages[i - before : i] = Stage.WAKE
        stages[i : i + out] = Stage.OUT
        stages[i + out : i + out + after] = Stage.WAKE
        stages[i + out + after : i + out + after + 180] = Stage.N1


def _place_exits(stages: npt.NDArray[np.int8], bedtime: int, c: PlanConstraints) -> None:
    for start, end in c.exits:
        i = max(start - bedtime, 0)
        j = len(stages) if end is None else max(end - bedtime, i)
        stages[max(i - 90, 0) : i] = Stage.WAKE  # waking and sitting up first
        stages[i:j] = Stage.OUT
        if end is not None:
            stages[j : j + 300] = Stage.WAKE


def _turnovers(
    p: ResidentProfile,
    rng: np.random.Generator,
    stages: npt.NDArray[np.int8],
    bedtime: int,
    c: PlanConstraints,
) -> tuple[IntArray, IntArray]:
    in_bed = stages != Stage.OUT
    n = len(stages)
    count = rng.poisson(p.turnovers_per_h * n / 3600)
    cand = rng.integers(0, max(n, 1), size=count)
    keep_p = np.array([0.0, 1.0, 1.0, 0.8, 0.2, 0.2])[stages[cand]]
    cand = cand[rng.random(count) < keep_p]
    # Getting into and out of bed is a big movement on the pad too.
    edges = np.flatnonzero(np.diff(in_bed.astype(np.int8)))
    enter = edges[in_bed[edges + 1]] + 1
    leave = edges[~in_bed[edges + 1]] - 8
    if in_bed[0]:
        enter = np.append(enter, 0)
    if in_bed[-1]:
        leave = np.append(leave, n - 9)
    anchors = np.sort(np.concatenate((cand, enter, leave, [0, n - 1])))
    anchors = _fill_gaps(anchors, in_bed, bedtime, c)
    times = anchors + bedtime
    ok = np.array([not _overlaps(int(t), int(t) + 12, c.quiet) for t in times], dtype=bool)
    times = np.unique(
        np.concatenate(
            (times[ok & in_bed[np.clip(anchors, 0, n - 1)]], np.asarray(c.moves, dtype=np.int64))
        )
    )
    lengths = rng.integers(3, 12, size=len(times))
    return times.astype(np.int64), lengths.astype(np.int64)


def _fill_gaps(
    anchors: IntArray, in_bed: npt.NDArray[np.bool_], bedtime: int, c: PlanConstraints
) -> IntArray:
    """Insert turnovers so nobody lies still for long unless a scenario says so."""
    out = list(anchors)
    i = 0
    while i < len(out) - 1:
        a, b = out[i], out[i + 1]
        mid = (a + b) // 2
        if b - a > MAX_NATURAL_GAP_S and not _overlaps(
            mid + bedtime, mid + bedtime + 10, c.quiet, 60
        ):
            out.insert(i + 1, mid)
            continue
        i += 1
    result = np.array(out, dtype=np.int64)
    return result[in_bed[np.clip(result, 0, len(in_bed) - 1)]]


def _natural_pauses(
    p: ResidentProfile,
    rng: np.random.Generator,
    stages: npt.NDArray[np.int8],
    bedtime: int,
    turnovers: IntArray,
    c: PlanConstraints,
) -> tuple[IntArray, IntArray]:
    asleep = np.flatnonzero((stages == Stage.N1) | (stages == Stage.N2))
    if len(asleep) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    count = rng.poisson(p.natural_pauses_per_h * len(asleep) / 3600)
    starts = np.sort(rng.choice(asleep, size=count)) + bedtime
    # Natural pauses stay well under the 30 s alarm line (rr=0 then shows for at most 12 s).
    lengths = rng.integers(10, 23, size=count)
    keep = []
    last_end = -(10**9)
    for s, n in zip(starts, lengths, strict=True):
        near_move = len(turnovers) and np.min(np.abs(turnovers - s)) < 120
        if s < last_end + 120 or near_move or _overlaps(int(s), int(s + n), c.quiet, 300):
            continue
        keep.append((s, n))
        last_end = s + n
    arr = np.array(keep, dtype=np.int64).reshape(-1, 2)
    return arr[:, 0].copy(), arr[:, 1].copy()


def _ar1(rng: np.random.Generator, n: int, phi: float, sd: float) -> FloatArray:
    """A stationary AR(1) series with standard deviation `sd`."""
    noise = rng.normal(0, sd * np.sqrt(1 - phi * phi), size=n)
    start = rng.normal(0, sd)
    return np.asarray(lfilter([1.0], [1.0, -phi], noise, zi=[phi * start])[0], dtype=np.float64)
