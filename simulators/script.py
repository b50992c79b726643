"""Scenario specs placed into one resident-night: constraints, effects, events, faults, truth."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from simulators.faults import Fault, FaultKind, Malformed, expected_reason
from simulators.ground_truth import Expect, ScenarioTruth
from simulators.physiology import Stage
from simulators.scenarios import Role, ScenarioKind, ScenarioSpec
from simulators.site import Devices
from simulators.sleep import Interval, NightPlan, PlanConstraints, local_seconds
from simulators.vitals import Effect, EffectKind

FOREVER_S = 10**7  # an effect that lasts to the end of any window
# Detector thresholds from docs/design.md, used only to say what a correct detector should raise.
EXIT_NO_RETURN_S = 20 * 60
NIGHT_WINDOW_H = (21.0, 7.0)
PAUSE_ALARM_S = 30
VITALS_ABSENT_S = 60
IMMOBILE_S = 2 * 3600
SILENT_S = {Role.MATTRESS: 5 * 60, Role.WRISTBAND: 30 * 60}


# A pause of D seconds shows as rr = 0 for its last D - 10 s (the pad's 10 s window), so only
# pauses longer than 10 s are visible in telemetry and can count into the apnea index.
VISIBLE_PAUSE_S = 11
APNEA_INDEX_PER_H = 15  # AASM moderate


@dataclass(frozen=True, slots=True)
class ScriptedEvent:
    second: float  # from the night's origin
    role: Role
    type: str  # protocol-v1 event type
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BadMessage:
    second: float
    role: Role
    variant: Malformed


@dataclass(frozen=True, slots=True)
class Script:
    """What the scenarios of one resident-night amount to."""

    constraints: PlanConstraints = field(default_factory=PlanConstraints)
    effects: tuple[Effect, ...] = ()
    events: tuple[ScriptedEvent, ...] = ()
    faults: tuple[Fault, ...] = ()
    malformed: tuple[BadMessage, ...] = ()
    truth: tuple[ScenarioTruth, ...] = ()


@dataclass(slots=True)
class _Builder:
    plan: NightPlan  # provisional: the night as it would be without scenarios
    devices: Devices
    rng: np.random.Generator
    keepalive_s: int
    in_bed: list[Interval] = field(default_factory=list)
    quiet: list[Interval] = field(default_factory=list)
    exits: list[tuple[int, int | None]] = field(default_factory=list)
    moves: list[int] = field(default_factory=list)
    effects: list[Effect] = field(default_factory=list)
    events: list[ScriptedEvent] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    malformed: list[BadMessage] = field(default_factory=list)
    truth: list[ScenarioTruth] = field(default_factory=list)

    def record(
        self,
        spec: ScenarioSpec | str,
        role: Role,
        start: float,
        end: float | None,
        expect: list[Expect],
        params: Mapping[str, Any] | None = None,
    ) -> None:
        name = spec if isinstance(spec, str) else str(spec.kind)
        values: dict[str, Any] = {} if isinstance(spec, str) else dict(spec.params)
        values.update(params or {})
        device = self.devices.mattress_id if role is Role.MATTRESS else self.devices.wristband_id
        self.truth.append(
            ScenarioTruth(
                resident_id=self.devices.resident_id,
                device_id=device,
                scenario=name,
                start_ms=self.plan.ms(0) + int(start * 1000),
                end_ms=None if end is None else self.plan.ms(0) + int(end * 1000),
                expect=tuple(expect),
                params=values,
            )
        )

    def lie_still(self, start: int, end: int) -> None:
        """Keep the resident in bed and free of natural events around a scripted condition."""
        self.in_bed.append((start - 600, end + 600))
        self.quiet.append((start - 90, end + 30))


def build_script(
    specs: list[ScenarioSpec], plan: NightPlan, devices: Devices, seed: list[int], keepalive_s: int
) -> Script:
    b = _Builder(plan, devices, np.random.default_rng(seed), keepalive_s)
    for spec in specs:
        at = _place(b, spec)
        _HANDLERS[spec.kind](b, spec, at)
    return Script(
        constraints=PlanConstraints(
            in_bed=tuple(b.in_bed), quiet=tuple(b.quiet), exits=tuple(b.exits), moves=tuple(b.moves)
        ),
        effects=tuple(b.effects),
        events=tuple(sorted(b.events, key=lambda e: e.second)),
        faults=tuple(b.faults),
        malformed=tuple(sorted(b.malformed, key=lambda m: m.second)),
        truth=tuple(b.truth),
    )


def _duration(spec: ScenarioSpec) -> int:
    for name in ("duration_s", "return_after_s"):
        if name in spec.params and spec.param(name) is not None:
            return int(spec.param(name))
    return 0


def _place(b: _Builder, spec: ScenarioSpec) -> int:
    if spec.at is not None:
        return local_seconds(b.plan.origin_ms, spec.at)
    lo = b.plan.sleep_onset_s + 1200
    hi = max(b.plan.final_wake_s - _duration(spec) - 1200, lo + 1)
    return int(b.rng.integers(lo, hi))


def _in_night_window(b: _Builder, second: int) -> bool:
    hour = (18 + second / 3600) % 24
    return hour >= NIGHT_WINDOW_H[0] or hour < NIGHT_WINDOW_H[1]


def _sos(b: _Builder, spec: ScenarioSpec, at: int) -> None:
    b.events.append(ScriptedEvent(at, Role.WRISTBAND, "sos"))
    cancel = spec.param("cancel_after_s")
    end = None if cancel is None else at + cancel
    if end is not None:
        b.events.append(ScriptedEvent(end, Role.WRISTBAND, "sos_cancel"))
    b.record(spec, Role.WRISTBAND, at, end, [Expect.SOS], {"cancelled": end is not None})


def _fall(b: _Builder, spec: ScenarioSpec, at: int) -> None:
    walk = int(spec.params["walk_s"])
    ret = spec.param("return_after_s")
    back = None if ret is None else at + int(ret)
    b.in_bed.append((at - walk - 1800, at - walk))
    b.quiet.append((at - walk - 600, at + (ret or 0) + 600))
    b.exits.append((at - walk, back))
    b.events.append(ScriptedEvent(at, Role.WRISTBAND, "fall", {"conf": spec.params["conf"]}))
    # An open fall suppresses bed_exit_no_return (docs/design.md inhibition), so only `fall` is due.
    b.record(spec, Role.WRISTBAND, at, back, [Expect.FALL], {"left_bed_s": walk})


def _bed_exit(b: _Builder, spec: ScenarioSpec, at: int) -> None:
    ret = spec.param("return_after_s")
    back = None if ret is None else at + int(ret)
    b.in_bed.append((at - 1800, at))
    if back is not None:
        b.in_bed.append((back, back + 900))
    b.quiet.append((at - 600, (back or at) + 600))
    b.exits.append((at, back))
    alarm = (back is None or back - at > EXIT_NO_RETURN_S) and _in_night_window(b, at)
    b.record(spec, Role.MATTRESS, at, back, [Expect.BED_EXIT_NO_RETURN] if alarm else [])


def _pause(b: _Builder, start: int, length: int) -> list[Expect]:
    b.effects.append(Effect(EffectKind.APNEA, start, start + length))
    expect = [Expect.BREATHING_PAUSE] if length >= PAUSE_ALARM_S else []
    if length - 10 >= VITALS_ABSENT_S:  # rr = 0 shows for the last D - 10 s of a pause
        expect.append(Expect.VITALS_ABSENT)
    return expect


def _breathing_pause(b: _Builder, spec: ScenarioSpec, at: int) -> None:
    length = int(spec.params["duration_s"])
    b.lie_still(at, at + length)
    expect = _pause(b, at, length)
    b.record(spec, Role.MATTRESS, at, at + length, expect, {"rr_zero_s": max(length - 10, 0)})


def _apnea_night(b: _Builder, spec: ScenarioSpec, at: int) -> None:
    p = b.plan
    duration = spec.param("duration_s")
    start = at if spec.at is not None or duration is not None else p.sleep_onset_s + 600
    end = p.final_wake_s - 600 if duration is None else start + int(duration)
    lo, hi, per_hour = int(spec.params["min_s"]), int(spec.params["max_s"]), spec.params["per_hour"]
    b.in_bed.append((start - 600, end + 600))
    t, count = start, 0
    while t < end and per_hour > 0:
        length = int(b.rng.integers(lo, hi + 1))
        asleep = p.stage_at(np.array([t, t + length]))
        if np.all(asleep >= Stage.N1):
            b.quiet.append((t - 20, t + length + 10))
            expect = _pause(b, t, length)
            b.record(
                "breathing_pause",
                Role.MATTRESS,
                t,
                t + length,
                expect,
                {"duration_s": length, "rr_zero_s": max(length - 10, 0), "part_of": "apnea_night"},
            )
            count += 1 if length >= VISIBLE_PAUSE_S else 0
        t += length + max(int(b.rng.exponential(3600 / per_hour)), 20)
    # The index, and so whether apnea_index is expected, is settled by finalise() once the
    # night's final time in bed is known: the scenarios above lengthen it.
    b.record(spec, Role.MATTRESS, start, end, [], {**spec.params, "pauses": count})


def finalise(script: Script, plan: NightPlan) -> Script:
    """Truth that depends on the final night plan: the apnea index needs the time in bed."""
    hours = max(plan.in_bed_s() / 3600, 1.0)
    truth = []
    for line in script.truth:
        if line.scenario != ScenarioKind.APNEA_NIGHT:
            truth.append(line)
            continue
        index = int(line.params["pauses"]) / hours
        expect = (Expect.APNEA_INDEX,) if index >= APNEA_INDEX_PER_H else ()
        params = {**line.params, "index_per_h": round(index, 2)}
        truth.append(replace(line, expect=expect, params=params))
    return replace(script, truth=tuple(truth))


def _hr_expect(bpm: float, sustained_s: int) -> list[Expect]:
    if (bpm <= 40 or bpm >= 131) and sustained_s >= 120:
        return [Expect.HEART_RATE]
    if 111 <= bpm <= 130 and sustained_s >= 600:
        return [Expect.HEART_RATE]
    return []


def _rr_expect(bpm: float, sustained_s: int) -> list[Expect]:
    if (bpm <= 8 or bpm >= 25) and sustained_s >= 120:
        return [Expect.BREATHING_RATE]
    if 21 <= bpm <= 24 and sustained_s >= 600:
        return [Expect.BREATHING_RATE]
    return []


def _spo2_expect(pct: float, sustained_s: int) -> list[Expect]:
    return [Expect.SPO2] if pct <= 93 and sustained_s >= 60 else []


_TARGETS: Mapping[
    ScenarioKind, tuple[EffectKind, str, Role, Callable[[float, int], list[Expect]]]
] = {
    ScenarioKind.BRADYCARDIA: (EffectKind.HR_TARGET, "hr_bpm", Role.MATTRESS, _hr_expect),
    ScenarioKind.TACHYCARDIA: (EffectKind.HR_TARGET, "hr_bpm", Role.MATTRESS, _hr_expect),
    ScenarioKind.FAST_BREATHING: (EffectKind.RR_TARGET, "rr_bpm", Role.MATTRESS, _rr_expect),
    ScenarioKind.SLOW_BREATHING: (EffectKind.RR_TARGET, "rr_bpm", Role.MATTRESS, _rr_expect),
    ScenarioKind.LOW_SPO2: (EffectKind.SPO2_TARGET, "spo2_pct", Role.WRISTBAND, _spo2_expect),
}


def _target(b: _Builder, spec: ScenarioSpec, at: int) -> None:
    effect, key, role, expect = _TARGETS[spec.kind]
    length, ramp, value = (
        int(spec.params["duration_s"]),
        int(spec.params["ramp_s"]),
        spec.params[key],
    )
    b.lie_still(at, at + length)
    b.effects.append(Effect(effect, at, at + length, float(value), ramp))
    # The condition is the full-strength plateau between the ramps: that is when it truly
    # begins and ends, and what a detector can count on.
    b.record(spec, role, at + ramp, at + length - ramp, expect(float(value), length - 2 * ramp))


def _immobile(b: _Builder, spec: ScenarioSpec, at: int) -> None:
    length = int(spec.params["duration_s"])
    b.in_bed.append((at - 600, at + length + 600))
    b.quiet.append((at, at + length))
    b.moves.extend((at - 8, at + length))  # the turnovers that bound the still spell
    b.effects.append(Effect(EffectKind.IMMOBILE, at, at + length))
    b.record(
        spec, Role.MATTRESS, at, at + length, [Expect.IMMOBILE] if length >= IMMOBILE_S else []
    )


def _vitals_gone(b: _Builder, spec: ScenarioSpec, at: int) -> None:
    length = int(spec.params["duration_s"])
    b.lie_still(at, at + length)
    zero = 1.0 if spec.params["hr"] == "zero" else 0.0
    b.effects.append(Effect(EffectKind.NO_VITALS, at, at + length, zero))
    expect = [Expect.VITALS_ABSENT] if length >= VITALS_ABSENT_S else []
    b.record(spec, Role.MATTRESS, at, at + length, expect)


def _band_removed(b: _Builder, spec: ScenarioSpec, at: int) -> None:
    duration = spec.param("duration_s")
    end = None if duration is None else at + int(duration)
    b.events.append(ScriptedEvent(at, Role.WRISTBAND, "removed"))
    b.effects.append(Effect(EffectKind.BAND_OFF, at, FOREVER_S if end is None else end))
    b.record(spec, Role.WRISTBAND, at, end, [Expect.WRISTBAND_REMOVED])


def _low_battery(b: _Builder, spec: ScenarioSpec, at: int) -> None:
    pct = int(spec.params["bat_pct"])
    b.faults.append(Fault(FaultKind.BATTERY, Role.WRISTBAND, at, None, pct))
    b.events.append(ScriptedEvent(at, Role.WRISTBAND, "low_battery", {"bat": pct}))
    b.record(spec, Role.WRISTBAND, at, None, [Expect.LOW_BATTERY])


def _device_fault(b: _Builder, spec: ScenarioSpec, at: int) -> None:
    role = Role(spec.params["device"])
    duration = spec.param("duration_s")
    end = None if duration is None else at + int(duration)
    kind, value, extra = _FAULTS[spec.kind](spec)
    b.faults.append(Fault(kind, role, at, end, value, extra))
    expect: list[Expect] = []
    if kind is FaultKind.OFFLINE:
        will_s = 1.5 * b.keepalive_s  # the broker gives up on a silent client after this
        if end is None or end - at >= min(will_s, SILENT_S[role]):
            expect = [Expect.DEVICE_SILENT]
    b.record(spec, role, at, end, expect)


_FAULTS: Mapping[ScenarioKind, Callable[[ScenarioSpec], tuple[FaultKind, float, float]]] = {
    ScenarioKind.DEVICE_OFFLINE: lambda s: (FaultKind.OFFLINE, 0.0, 0.0),
    ScenarioKind.CLOCK_SKEW: lambda s: (FaultKind.SKEW, float(s.params["skew_s"]) * 1000, 0.0),
    ScenarioKind.DUPLICATES: lambda s: (FaultKind.DUPLICATE, float(s.params["fraction"]), 0.0),
    ScenarioKind.OUT_OF_ORDER: lambda s: (
        FaultKind.REORDER,
        float(s.params["fraction"]),
        float(s.params["max_delay_s"]),
    ),
}


def _malformed(b: _Builder, spec: ScenarioSpec, at: int) -> None:
    role = Role(spec.params["device"])
    count, length = int(spec.params["count"]), int(spec.param("duration_s") or 3600)
    variants = list(Malformed)
    for i in range(count):
        second = at + (i + 0.5) * length / max(count, 1)
        variant = variants[i % len(variants)]
        b.malformed.append(BadMessage(second, role, variant))
        reason = expected_reason(variant, role)
        b.record(spec, role, second, second, [], {"variant": str(variant), "reason": reason})


_HANDLERS: Mapping[ScenarioKind, Callable[[_Builder, ScenarioSpec, int], None]] = {
    ScenarioKind.SOS: _sos,
    ScenarioKind.FALL: _fall,
    ScenarioKind.BED_EXIT: _bed_exit,
    ScenarioKind.BREATHING_PAUSE: _breathing_pause,
    ScenarioKind.APNEA_NIGHT: _apnea_night,
    ScenarioKind.BRADYCARDIA: _target,
    ScenarioKind.TACHYCARDIA: _target,
    ScenarioKind.FAST_BREATHING: _target,
    ScenarioKind.SLOW_BREATHING: _target,
    ScenarioKind.LOW_SPO2: _target,
    ScenarioKind.IMMOBILE: _immobile,
    ScenarioKind.VITALS_GONE: _vitals_gone,
    ScenarioKind.BAND_REMOVED: _band_removed,
    ScenarioKind.LOW_BATTERY: _low_battery,
    ScenarioKind.DEVICE_OFFLINE: _device_fault,
    ScenarioKind.CLOCK_SKEW: _device_fault,
    ScenarioKind.DUPLICATES: _device_fault,
    ScenarioKind.OUT_OF_ORDER: _device_fault,
    ScenarioKind.MALFORMED: _malformed,
}
