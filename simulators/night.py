"""A pure, seeded generator of resident-nights: protocol-v1 messages plus their ground truth.

No I/O and no clock: `make_night(...)` decides a night (profile, sleep plan, scripted scenarios)
and `Night.messages()` yields what the resident's mattress and wristband would publish, as
`Message(device_time_ms, device_id, channel, payload, qos, retain)` in send order; `Night.truth()`
gives the ground-truth lines. The same seed gives the same night sample for sample, however the
window is played. A 10-hour night (36,000 mattress samples, 5,000 messages) generates in about
0.1 s, 0.4 s with 50 Hz waveforms; `Night.vitals_window()` gives per-second numpy arrays in 0.02 s.

    night = make_night(residents_of(1)[0], seed=7, night_date=date(2025, 11, 26),
                       scenarios=[scenario("breathing_pause", at="02:30", duration_s=45)])
    for device_time_ms, device_id, channel, payload, qos, retain in night.messages():
        ...
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from simulators.faults import FaultKind, Message, redeliver
from simulators.ground_truth import NightTruth, Truth
from simulators.physiology import ResidentProfile, make_profile
from simulators.scenarios import Role, ScenarioSpec
from simulators.script import Script, build_script, finalise
from simulators.site import Devices
from simulators.sleep import NightPlan, night_date_of, plan_night
from simulators.streams import BAND_DRAIN_PCT_H, STEPS_PER_S_UP, device_stream
from simulators.vitals import CHUNK_S, Vitals, render_chunk
from simulators.wave import WaveMode

IntArray = npt.NDArray[np.int64]
BED_MARGIN_S = 30 * 60  # default window: from half an hour before bedtime to after rising


@dataclass(frozen=True, slots=True)
class NightOptions:
    batch: int = 10  # mattress samples per telemetry message (1 = one sample, unbatched)
    band_interval_s: int = 30
    wave: WaveMode = WaveMode.OFF
    wave_block_s: int = 5
    wave_fs_hz: int = 50
    keepalive_s: int = 60  # MQTT keepalive; the Last Will fires 1.5x this after a power cut

    def __post_init__(self) -> None:
        if not 1 <= self.batch <= 120:
            raise ValueError(f"batch: 1..120 samples a message (protocol-v1), got {self.batch}")
        if not 1 <= self.wave_block_s <= 10:
            raise ValueError(f"wave_block_s: 1..10 s (protocol-v1), got {self.wave_block_s}")
        if not 10 <= self.wave_fs_hz <= 250:
            raise ValueError(f"wave_fs_hz: 10..250 (protocol-v1), got {self.wave_fs_hz}")
        if not 1 <= self.band_interval_s <= 600 or not 5 <= self.keepalive_s <= 60:
            raise ValueError("band_interval_s 1..600 and keepalive_s 5..60")


@dataclass(slots=True)
class _ChunkCache:
    """The last few rendered chunks, so a resident's two devices render each chunk once."""

    items: dict[int, Vitals] = field(default_factory=dict)

    def get(self, night: Night, chunk: int) -> Vitals:
        v = self.items.get(chunk)
        if v is None:
            if len(self.items) >= 2:
                self.items.pop(min(self.items))
            offset = night.chunk_offset_s
            v = self.items[chunk] = render_chunk(night.plan, night.script.effects, chunk, offset)
        return v


@dataclass(frozen=True, slots=True)
class Night:
    devices: Devices
    plan: NightPlan
    script: Script
    start_ms: int  # the simulated window, device time
    end_ms: int
    night_index: int = 0
    options: NightOptions = field(default_factory=NightOptions)
    _cache: _ChunkCache = field(default_factory=_ChunkCache, repr=False, compare=False)

    @property
    def seed_key(self) -> tuple[int, int, int]:
        return (self.plan.seed, self.devices.index, self.plan.night_date.toordinal())

    def messages(self, *, broker_will: bool = False) -> Iterator[Message]:
        """Both devices' messages merged in send order.

        With `broker_will`, the Last Will `{"state":"offline"}` appears as a subscriber would
        get it from the broker after a power cut (1.5 x keepalive later); the MQTT transport
        leaves it out because there the broker really fires it.
        """
        return heapq.merge(
            self.device_messages(Role.MATTRESS, broker_will=broker_will),
            self.device_messages(Role.WRISTBAND, broker_will=broker_will),
        )

    def device_messages(self, role: Role, *, broker_will: bool = False) -> Iterator[Message]:
        stream = device_stream(self, role, broker_will)
        faults = tuple(f for f in self.script.faults if f.role is role)
        return redeliver(stream, faults, self.plan.origin_ms, [*self.seed_key, 6, len(role)])

    def truth(self) -> tuple[Truth, ...]:
        """The night line and every scripted occurrence that began inside the window."""
        night = NightTruth(
            resident_id=self.devices.resident_id,
            mattress_id=self.devices.mattress_id,
            wristband_id=self.devices.wristband_id,
            start_ms=self.start_ms,
            end_ms=self.end_ms,
            bedtime_ms=self.plan.ms(self.plan.bedtime_s),
            rise_ms=self.plan.ms(self.plan.rise_s),
        )
        inside = (t for t in self.script.truth if self.start_ms <= t.start_ms < self.end_ms)
        return (night, *inside)

    @property
    def chunk_offset_s(self) -> int:
        """Residents start their chunks at different seconds, so a fleet renders evenly."""
        return (self.devices.index * 7919) % CHUNK_S

    def chunks(self) -> range:
        origin = self.plan.origin_ms + self.chunk_offset_s * 1000
        first = (self.start_ms - origin) // 1000 // CHUNK_S
        last = (self.end_ms - origin - 1) // 1000 // CHUNK_S
        return range(first - 1, last + 1)

    def vitals(self, chunk: int) -> Vitals:
        return self._cache.get(self, chunk)

    def vitals_window(self) -> dict[str, npt.NDArray[Any]]:
        """Per-second arrays over the window (no JSON, no loss): for scoring and statistics."""
        parts = [self.vitals(c) for c in self.chunks()]
        names = (
            "second",
            "stage",
            "occ",
            "move",
            "sq",
            "hr",
            "rr",
            "hr_true",
            "rr_true",
            "spo2_true",
            "breathing",
            "heart",
            "worn",
        )
        out = {n: np.concatenate([getattr(p, n) for p in parts]) for n in names}
        ms = self.plan.origin_ms + out["second"] * 1000
        keep = (ms >= self.start_ms) & (ms < self.end_ms)
        out = {n: a[keep] for n, a in out.items()}
        out["ts_ms"] = ms[keep]
        return out

    # Helpers for the streams: device clock, window, battery, steps.

    def in_window_ms(self, ms: int) -> bool:
        return self.start_ms <= ms < self.end_ms

    def in_window(self, second: float) -> bool:
        return self.in_window_ms(self.plan.origin_ms + int(second * 1000))

    def window_mask(self, ms: IntArray) -> npt.NDArray[np.bool_]:
        return (ms >= self.start_ms) & (ms < self.end_ms)

    def skewed(self, role: Role, seconds: IntArray, true_ms: IntArray) -> IntArray:
        out = true_ms.astype(np.int64)
        for f in self.script.faults:
            if f.kind is FaultKind.SKEW and f.role is role:
                on = (seconds >= f.start_s) & (f.end_s is None or seconds < (f.end_s or 0))
                out = out + np.where(on, int(f.value), 0)
        return out

    def device_ms(self, role: Role, second: float) -> int:
        true_ms = self.plan.origin_ms + int(second * 1000)
        return int(self.skewed(role, np.array([int(second)]), np.array([true_ms]))[0])

    def battery_at(self, second: float) -> int:
        hours = (second - (self.start_ms - self.plan.origin_ms) / 1000) / 3600
        pct = self.plan.profile.band_battery_pct - BAND_DRAIN_PCT_H * hours
        for f in self.script.faults:
            if f.kind is FaultKind.BATTERY and f.covers(second):
                pct = min(pct, f.value - BAND_DRAIN_PCT_H * (second - f.start_s) / 3600)
        return int(np.clip(round(pct), 1, 100))

    def steps_at(self, second: int) -> int:
        """Steps since local midnight (06:00 after the origin), from time spent out of bed."""
        midnight = 6 * 3600
        since = midnight if second >= midnight else 0
        up = (second - since) - self.plan.in_bed_between(since, second)
        evening = 0 if second >= midnight else 1500 + 37 * (self.devices.index % 50)
        return int(evening + STEPS_PER_S_UP * up)


def make_night(
    devices: Devices,
    seed: int,
    *,
    night_date: date | None = None,
    start_ms: int | None = None,
    end_ms: int | None = None,
    scenarios: Sequence[ScenarioSpec] = (),
    night_index: int = 0,
    options: NightOptions = NightOptions(),
    profile: ResidentProfile | None = None,
) -> Night:
    """Decide one resident-night. Give `night_date` (the evening's local date) or `start_ms`;
    without a window it runs from 30 min before bedtime to 30 min after rising."""
    if night_date is None:
        if start_ms is None:
            raise ValueError("make_night needs night_date or start_ms")
        night_date = night_date_of(start_ms)
    profile = profile or make_profile(devices.index, seed)
    specs = [
        s for s in scenarios if s.applies(devices.resident_id, devices.index, night_index, seed)
    ]
    plan = plan_night(profile, night_date, seed)
    script = Script()
    if specs:
        key = [seed, devices.index, night_date.toordinal(), 5]
        script = build_script(specs, plan, devices, key, options.keepalive_s)
        plan = plan_night(profile, night_date, seed, script.constraints)
        script = finalise(script, plan)
    start = plan.ms(plan.bedtime_s - BED_MARGIN_S) if start_ms is None else start_ms
    end = plan.ms(plan.rise_s + BED_MARGIN_S) if end_ms is None else end_ms
    if end <= start:
        raise ValueError("the window must end after it starts")
    return Night(devices, plan, script, start, end, night_index, options)


def make_nights(
    residents: Sequence[Devices],
    seed: int,
    first_night: date,
    nights: int = 1,
    **kwargs: Any,
) -> Iterator[Night]:
    """Consecutive nights for each resident, night by night (night_index 0, 1, ...)."""
    for n in range(nights):
        for devices in residents:
            yield make_night(
                devices, seed, night_date=first_night + timedelta(days=n), night_index=n, **kwargs
            )
