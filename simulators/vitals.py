"""Per-second vitals of one resident, rendered from a night plan in fixed ten-minute chunks."""

# A chunk depends only on the plan, the scripted effects and its own index, so any window of a
# night renders to the same samples however it is played (whole, in pieces, at any speed).

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt
from scipy.signal import lfilter

from simulators.physiology import (
    NATURAL_HR_BPM,
    NATURAL_RR_BPM,
    NATURAL_SPO2_PCT,
    STAGE_FIDGETS_PER_MIN,
    STAGE_HR_OFFSET,
    STAGE_HR_SD,
    STAGE_RR_OFFSET,
    STAGE_RR_SD,
    Stage,
)
from simulators.sleep import KNOT_S, NightPlan

CHUNK_S = 600
SMOOTH_MARGIN_S = 300  # rates follow a stage change with a ~60 s time constant
APNEA_MARK_S = 10  # protocol: rr = 0 means no breathing movement in the last 10 s
MOVE_BLANKS_VITALS = 25  # from this movement intensity the pad cannot measure hr or rr
SQ_MEASURABLE = 50

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


class EffectKind(StrEnum):
    """What a scripted scenario does to the body (device faults live in `simulators.faults`)."""

    HR_TARGET = "hr_target"  # heart rate pulled to `value`
    RR_TARGET = "rr_target"
    SPO2_TARGET = "spo2_target"
    APNEA = "apnea"  # no breathing movement
    NO_VITALS = "no_vitals"  # neither heartbeat nor breathing, body still on the pad
    IMMOBILE = "immobile"  # no movement at all
    BAND_OFF = "band_off"  # wristband not on the skin


@dataclass(frozen=True, slots=True)
class Effect:
    kind: EffectKind
    start_s: int
    end_s: int
    value: float = 0.0
    ramp_s: int = 0


@dataclass(frozen=True, slots=True)
class Vitals:
    """One chunk: latent truth and what the pad reports (NaN = null), second by second."""

    second: IntArray  # seconds from the plan's origin
    stage: IntArray
    occ: IntArray
    move: IntArray
    sq: IntArray
    hr_true: FloatArray
    rr_true: FloatArray
    spo2_true: FloatArray
    breathing: BoolArray
    heart: BoolArray
    worn: BoolArray
    hr: FloatArray  # reported
    rr: FloatArray  # reported
    lost: BoolArray  # sample never sent


def render_chunk(
    plan: NightPlan, effects: tuple[Effect, ...], chunk: int, offset_s: int = 0
) -> Vitals:
    """Seconds [chunk * CHUNK_S + offset_s, +CHUNK_S) of the night."""
    first = chunk * CHUNK_S + offset_s
    s = np.arange(first, first + CHUNK_S, dtype=np.int64)
    p = plan.profile
    rng = np.random.default_rng([plan.seed, p.index, plan.night_date.toordinal(), 2, chunk + 10**6])
    stage = plan.stage_at(s)
    occ = (stage != Stage.OUT).astype(np.int64)
    hr_true = _rate(plan, s, p.rest_hr_bpm, STAGE_HR_OFFSET, plan.hr_knots, 3.0)
    rr_true = _rate(plan, s, p.rest_rr_bpm, STAGE_RR_OFFSET, plan.rr_knots, 0.6)
    hr_true += _noise(rng, STAGE_HR_SD[stage])
    rr_true += _noise(rng, STAGE_RR_SD[stage])
    spo2 = p.spo2_pct + np.interp(s, _knot_x(plan), plan.rr_knots) + rng.normal(0, 0.4, CHUNK_S)
    hr_true, hr_w = _pull(hr_true, s, effects, EffectKind.HR_TARGET, NATURAL_HR_BPM, rng, 0.8)
    rr_true, rr_w = _pull(rr_true, s, effects, EffectKind.RR_TARGET, NATURAL_RR_BPM, rng, 0.5)
    spo2, _ = _pull(spo2, s, effects, EffectKind.SPO2_TARGET, NATURAL_SPO2_PCT, rng, 0.6)
    breathing, zero = _breathing(plan, s, effects)
    heart = ~_active(s, effects, EffectKind.NO_VITALS)
    still = _active(s, effects, EffectKind.IMMOBILE) | ~heart
    move, sq = _movement(plan, s, stage, occ, still, rng)
    measurable = (occ == 1) & (move < MOVE_BLANKS_VITALS) & (sq >= SQ_MEASURABLE)
    hr = np.where(measurable & heart, np.round(hr_true + rng.normal(0, 0.7, CHUNK_S)), np.nan)
    rr = np.where(measurable, np.round(rr_true + rng.normal(0, 0.4, CHUNK_S)), np.nan)
    # The device's own rounding noise must not step over a natural bound either.
    hr = np.where(hr_w > 0, hr, np.clip(hr, *NATURAL_HR_BPM))
    rr = np.where(rr_w > 0, rr, np.clip(rr, *NATURAL_RR_BPM))
    rr = np.where(measurable & zero, 0.0, rr)
    hr = np.where(measurable & _reports_zero(s, effects), 0.0, hr)
    quiet = (hr_w > 0) | (rr_w > 0) | ~breathing | _any_effect(s, effects)
    return Vitals(
        second=s,
        stage=stage,
        occ=occ,
        move=move,
        sq=sq,
        hr_true=hr_true,
        rr_true=rr_true,
        spo2_true=spo2,
        breathing=breathing,
        heart=heart,
        worn=~_active(s, effects, EffectKind.BAND_OFF),
        hr=hr,
        rr=rr,
        lost=_lost(rng, quiet),
    )


def _knot_x(plan: NightPlan) -> FloatArray:
    return np.arange(len(plan.hr_knots), dtype=np.float64) * KNOT_S


def _rate(
    plan: NightPlan, s: IntArray, rest: float, offsets: FloatArray, knots: FloatArray, dip: float
) -> FloatArray:
    """Resting rate + smoothed stage offset + night-time dip + slow drift."""
    wide = np.arange(s[0] - SMOOTH_MARGIN_S, s[-1] + 1, dtype=np.int64)
    target = offsets[plan.stage_at(wide)]
    smooth = lfilter([1 / 60], [1, -(1 - 1 / 60)], target, zi=[target[0] * (1 - 1 / 60)])[0]
    stage_part = np.asarray(smooth, dtype=np.float64)[SMOOTH_MARGIN_S:]
    span = max(plan.rise_s - plan.bedtime_s, 1)
    frac = np.clip((s - plan.bedtime_s) / span, 0.0, 1.0)
    circadian = -dip * np.sin(np.pi * frac)  # lowest in the small hours
    drift = np.interp(s, _knot_x(plan), knots)
    return rest + stage_part + circadian + drift


def _noise(rng: np.random.Generator, sd: FloatArray) -> FloatArray:
    white = rng.normal(0.0, 1.0, len(sd))
    # Smoothed so that successive seconds are correlated, as a rolling device estimate is.
    smooth = np.asarray(lfilter([0.5], [1, -0.5], white), dtype=np.float64)
    return smooth * sd * 1.7


def _weight(s: IntArray, e: Effect) -> FloatArray:
    ramp = max(e.ramp_s, 1)
    up = np.clip((s - e.start_s + 1) / ramp, 0.0, 1.0)
    down = np.clip((e.end_s - s) / ramp, 0.0, 1.0)
    return np.minimum(up, down)


def _pull(
    value: FloatArray,
    s: IntArray,
    effects: tuple[Effect, ...],
    kind: EffectKind,
    natural: tuple[float, float],
    rng: np.random.Generator,
    sd: float,
) -> tuple[FloatArray, FloatArray]:
    """Clip to the natural range, then blend toward any scripted target."""
    out = np.clip(value, *natural)
    total = np.zeros(len(s))
    for e in effects:
        if e.kind is kind and e.start_s < s[-1] + 1 and e.end_s > s[0]:
            w = _weight(s, e)
            target = e.value + rng.normal(0, sd, len(s))
            out = out * (1 - w) + target * w
            total = np.maximum(total, w)
    return out, total


def _active(s: IntArray, effects: tuple[Effect, ...], kind: EffectKind) -> BoolArray:
    mask = np.zeros(len(s), dtype=bool)
    for e in effects:
        if e.kind is kind:
            mask |= (s >= e.start_s) & (s < e.end_s)
    return mask


def _reports_zero(s: IntArray, effects: tuple[Effect, ...]) -> BoolArray:
    """Pads that say hr = 0 rather than null when they find no heartbeat on an occupied bed."""
    mask = np.zeros(len(s), dtype=bool)
    for e in effects:
        if e.kind is EffectKind.NO_VITALS and e.value:
            mask |= (s >= e.start_s) & (s < e.end_s)
    return mask


def _any_effect(s: IntArray, effects: tuple[Effect, ...]) -> BoolArray:
    mask = np.zeros(len(s), dtype=bool)
    for e in effects:
        mask |= (s >= e.start_s - 60) & (s < e.end_s + 60)
    return mask


def _breathing(
    plan: NightPlan, s: IntArray, effects: tuple[Effect, ...]
) -> tuple[BoolArray, BoolArray]:
    """Whether the chest moves, and where the pad reports rr = 0.

    A pause of D seconds shows as rr = 0 from its 10th second to its end, i.e. for D - 10
    samples: the pad needs 10 s without a breath before it may say so (protocol-v1 `rr`).
    """
    stops = [(int(a), int(a + n)) for a, n in zip(plan.pause_s, plan.pause_len_s, strict=True)]
    stops += [(e.start_s, e.end_s) for e in effects if e.kind in _NO_BREATH]
    breathing = np.ones(len(s), dtype=bool)
    zero = np.zeros(len(s), dtype=bool)
    for a, b in stops:
        if a <= s[-1] and b > s[0]:
            breathing &= ~((s >= a) & (s < b))
            zero |= (s >= a + APNEA_MARK_S) & (s < b)
    return breathing, zero


_NO_BREATH = frozenset({EffectKind.APNEA, EffectKind.NO_VITALS})


def _movement(
    plan: NightPlan,
    s: IntArray,
    stage: IntArray,
    occ: IntArray,
    still: BoolArray,
    rng: np.random.Generator,
) -> tuple[IntArray, IntArray]:
    n = len(s)
    move = np.zeros(n, dtype=np.int64)
    sq = plan.profile.sq_base + np.round(rng.normal(0, 2, n)).astype(np.int64)
    fidget = rng.random(n) < STAGE_FIDGETS_PER_MIN[stage] / 60
    for i in np.flatnonzero(fidget):
        length = int(rng.integers(1, 4))
        move[i : i + length] = rng.integers(2, 16, size=len(move[i : i + length]))
        sq[i : i + length] -= 15
    in_chunk = (plan.turnover_s + plan.turnover_len_s > s[0]) & (plan.turnover_s <= s[-1])
    for t, length in zip(plan.turnover_s[in_chunk], plan.turnover_len_s[in_chunk], strict=True):
        a, b = max(int(t - s[0]), 0), min(int(t + length - s[0]), n)
        peak = int(rng.integers(35, 95))
        move[a:b] = np.clip(peak + rng.integers(-15, 6, size=b - a), 26, 100)
        sq[a:b] = rng.integers(15, 40, size=b - a)
        recover = np.arange(1, min(15, n - b) + 1)
        sq[b : b + len(recover)] -= (45 * (1 - recover / 16)).astype(np.int64)
    move[still | (occ == 0)] = 0
    sq = np.where(occ == 1, np.clip(sq, 0, 100), rng.integers(0, 4, size=n))
    return move, sq


def _lost(rng: np.random.Generator, quiet: BoolArray) -> BoolArray:
    """Radio losses: a rare single sample, and now and then a burst of a few seconds."""
    n = len(quiet)
    lost = rng.random(n) < 0.0005
    if rng.random() < 0.05:  # about one burst every 3 hours
        at = int(rng.integers(0, n - 6))
        lost[at : at + int(rng.integers(2, 7))] = True
    return lost & ~quiet
