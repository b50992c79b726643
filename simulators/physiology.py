"""Residents as the simulator sees them: a seeded profile and how each sleep stage shifts vitals."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

# Natural physiology stays strictly inside these bounds so that no detector has a right to alarm
# on an unscripted night (docs/design.md thresholds: HR <= 40 or >= 111, RR <= 8 or >= 21,
# SpO2 <= 93).
NATURAL_HR_BPM = (44.0, 105.0)
NATURAL_RR_BPM = (10.0, 20.0)
NATURAL_SPO2_PCT = (94.0, 99.0)


class Stage(IntEnum):
    """Where a resident is at a given second; an int so a night is a small numpy array."""

    OUT = 0  # out of bed
    WAKE = 1  # in bed, awake
    N1 = 2
    N2 = 3
    N3 = 4  # deep sleep: lowest heart and breathing rate, least movement
    REM = 5


# Offsets from the resident's resting (awake, lying) rates, after sleep-physiology reviews:
# HR falls ~5-10 % in NREM, most in N3, and is near waking values and irregular in REM.
STAGE_HR_OFFSET = np.array([8.0, 2.0, -2.0, -4.5, -8.0, 0.0])
STAGE_RR_OFFSET = np.array([2.0, 0.5, -0.3, -0.8, -1.6, 0.8])
# Per-second variability of the latent rate (REM breathing is the most irregular).
STAGE_HR_SD = np.array([2.5, 1.5, 1.0, 0.8, 0.6, 1.8])
STAGE_RR_SD = np.array([0.8, 0.5, 0.4, 0.3, 0.25, 0.9])
# Small fidgets per minute by stage (REM has muscle atonia, N3 is still).
STAGE_FIDGETS_PER_MIN = np.array([0.0, 0.8, 0.4, 0.2, 0.05, 0.05])


@dataclass(frozen=True, slots=True)
class ResidentProfile:
    """One old person's baseline; every night of theirs varies around it."""

    index: int  # position in the fleet, 1-based; part of every seed
    age: int
    rest_hr_bpm: float  # awake, lying still
    rest_rr_bpm: float
    spo2_pct: float
    bedtime_local_h: float  # mean bedtime, hours after local midnight of the evening (e.g. 21.5)
    rise_local_h: float  # mean rising time, hours after local midnight of the morning (>= 7)
    schedule_sd_min: float  # night-to-night spread of bedtime and rising
    sleep_latency_min: float
    deep_sleep_factor: float  # share of a young adult's N3 this resident still gets
    toilet_trips_mean: float  # nocturia: mean trips out of bed a night
    wakes_per_h: float  # short awakenings in bed per hour of sleep
    turnovers_per_h: float
    natural_pauses_per_h: float  # short central pauses (10-22 s), common in the old
    sq_base: int  # signal quality with this body on this pad
    band_battery_pct: float  # wristband charge at the start of the first night


def make_profile(index: int, seed: int) -> ResidentProfile:
    """A plausible 68-95 year old, the same for the same index and seed."""
    rng = np.random.default_rng([seed, index, 0])
    age = int(rng.integers(68, 96))
    # Resting HR drifts down a little with age in this population; spread from cohort studies.
    rest_hr = float(np.clip(72 - 0.25 * (age - 70) + rng.normal(0, 6), 56, 80))
    rest_rr = float(np.clip(15.5 + rng.normal(0, 1.4), 12.5, 18.0))
    return ResidentProfile(
        index=index,
        age=age,
        rest_hr_bpm=round(rest_hr, 1),
        rest_rr_bpm=round(rest_rr, 1),
        spo2_pct=round(float(rng.uniform(95.5, 97.5)), 1),
        bedtime_local_h=round(float(rng.uniform(20.75, 22.5)), 2),
        rise_local_h=round(float(rng.uniform(7.25, 7.9)), 2),
        schedule_sd_min=round(float(rng.uniform(8, 20)), 1),
        sleep_latency_min=round(float(rng.uniform(8, 35)), 1),
        deep_sleep_factor=round(float(rng.uniform(0.3, 0.8)), 2),
        toilet_trips_mean=round(float(rng.uniform(0.4, 2.2)), 2),
        wakes_per_h=round(float(rng.uniform(0.6, 2.0)), 2),
        turnovers_per_h=round(float(rng.uniform(1.0, 2.5)), 2),
        natural_pauses_per_h=round(float(rng.uniform(0.2, 2.0)), 2),
        sq_base=int(rng.integers(80, 95)),
        band_battery_pct=round(float(rng.uniform(45, 100)), 1),
    )
