"""Simulated bed-nights end to end: simulator → ingest's Decoder and order → runner → findings."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np

from detectors.findings import Finding
from detectors.nights import NightSummary
from detectors.runner import DetectorRunner
from detectors.scoring import finding_to_json
from detectors.settings import ResidentConfig
from ingest.intake import InOrder
from ingest.protocol import Decoder, DeviceInfo
from ingest.records import DeviceId, DeviceKind, ResidentId
from simulators.night import NightOptions, make_night
from simulators.scenarios import ScenarioSpec, scenario
from simulators.site import Devices, residents_of
from simulators.wave import WaveMode

LATENCY_MS = 150  # device to service
TICK_MS = 10_000  # the service clock's granularity for device_silent
FIRST_NIGHT = date(2025, 11, 3)
SLOTS = ("23:30", "03:45")  # two scenarios a night, far enough apart not to overlap


def scenario_mix() -> list[tuple[str, dict[str, Any]]]:
    """The kinds a night may get, with their parameters; see `night_scenarios`."""
    return [
        ("sos", {"cancel_after_s": "never"}),
        ("sos", {"cancel_after_s": 20}),
        ("fall", {}),
        ("bed_exit", {"return_after_s": "never"}),
        ("bed_exit", {"return_after_s": 420}),
        ("breathing_pause", {"duration_s": 45}),
        ("breathing_pause", {"duration_s": 15}),
        ("vitals_gone", {"duration_s": 240}),
        ("vitals_gone", {"duration_s": 240, "hr": "zero"}),
        ("bradycardia", {"hr_bpm": 36, "duration_s": 600}),
        ("tachycardia", {"hr_bpm": 142, "duration_s": 600}),
        ("tachycardia", {"hr_bpm": 118, "duration_s": 1200}),
        ("fast_breathing", {"rr_bpm": 28, "duration_s": 600}),
        ("slow_breathing", {"rr_bpm": 7, "duration_s": 600}),
        ("low_spo2", {"spo2_pct": 89, "duration_s": 900}),
        ("immobile", {"duration_s": 10800}),
        ("band_removed", {"duration_s": 1800}),
        ("low_battery", {"bat_pct": 14}),
        ("device_offline", {"device": "mattress", "duration_s": 900}),
        ("device_offline", {"device": "wristband", "duration_s": 2400}),
        ("duplicates", {"device": "mattress", "duration_s": 1800, "fraction": 0.3}),
        ("out_of_order", {"device": "wristband", "duration_s": 3600, "fraction": 0.3}),
        ("apnea_night", {"per_hour": 25}),
    ]


def night_scenarios(rng: np.random.Generator) -> list[ScenarioSpec]:
    """One or two scenarios of the mix for one resident-night (a whole-night one alone)."""
    mix = scenario_mix()
    picks = rng.choice(len(mix), size=2, replace=False)
    specs: list[ScenarioSpec] = []
    for slot, i in zip(SLOTS, picks, strict=True):
        kind, params = mix[int(i)]
        if kind == "apnea_night":
            return [scenario(kind, **params)]
        if kind == "immobile" and slot != SLOTS[0]:
            continue  # three hours from the late slot would run into the morning
        specs.append(scenario(kind, at=slot, **params))
    return specs


@dataclass(slots=True)
class SimRun:
    truth: list[dict[str, Any]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    summaries: list[NightSummary] = field(default_factory=list)
    derived: int = 0
    messages: int = 0

    def findings_json(self) -> list[dict[str, Any]]:
        return [finding_to_json(f) for f in self.findings]


def simulate(
    beds: int, nights: int, *, seed: int = 1, wave_every: int = 5, batch: int = 10
) -> SimRun:
    """`beds` residents for `nights` consecutive nights each; every `wave_every`-th bed's pad
    also sends its raw waveform (0: none)."""
    run = SimRun()
    rng = np.random.default_rng([seed, 99])
    for devices in residents_of(beds):
        wave = WaveMode.RAW if wave_every and devices.index % wave_every == 0 else WaveMode.OFF
        options = NightOptions(batch=batch, wave=wave)
        _play_resident(run, devices, nights, seed, options, rng)
    return run


def _play_resident(
    run: SimRun,
    devices: Devices,
    nights: int,
    seed: int,
    options: NightOptions,
    rng: np.random.Generator,
) -> None:
    rid = ResidentId(devices.resident_id)
    mat, band = DeviceId(devices.mattress_id), DeviceId(devices.wristband_id)
    config = ResidentConfig(
        rid, "Asia/Shanghai", {mat: DeviceKind.MATTRESS, band: DeviceKind.WRISTBAND}
    )
    runner = DetectorRunner(
        residents={rid: config},
        on_finding=run.findings.append,
        on_derived=lambda rows: _count(run, len(rows)),
        on_summary=run.summaries.append,
    )
    decoder = Decoder(
        devices={
            mat: DeviceInfo(DeviceKind.MATTRESS, rid),
            band: DeviceInfo(DeviceKind.WRISTBAND, rid),
        }
    )
    ordered = InOrder(runner)
    for n in range(nights):
        night = make_night(
            devices,
            seed,
            night_date=FIRST_NIGHT + timedelta(days=n),
            night_index=n,
            scenarios=night_scenarios(rng),
            options=options,
        )
        run.truth += [t.to_json() for t in night.truth()]
        next_tick = night.start_ms
        for msg in night.messages(broker_will=True):
            received = msg.device_time_ms + LATENCY_MS
            while next_tick <= received:
                runner.tick(next_tick)
                next_tick += TICK_MS
            topic = f"bedwatch/v1/{msg.device_id}/{msg.channel}"
            ordered.feed(decoder.decode(topic, msg.payload, received, retained=msg.retain))
            run.messages += 1
        for t in _ticks(next_tick, night.end_ms):
            runner.tick(t)
    runner.close_nights()


def _ticks(start: int, end: int) -> Iterator[int]:
    return iter(range(start, end + 1, TICK_MS))


def _count(run: SimRun, n: int) -> None:
    run.derived += n


def split_beds(total_nights: int, nights_per_bed: int) -> tuple[int, int]:
    """Beds and nights per bed for at least `total_nights` bed-nights."""
    per = max(1, min(nights_per_bed, total_nights))
    return -(-total_nights // per), per


__all__: Sequence[str] = ("SimRun", "night_scenarios", "scenario_mix", "simulate", "split_beds")
