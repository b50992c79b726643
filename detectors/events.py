"""Wristband events and housekeeping: sos, fall, wristband_removed, low_battery."""

from __future__ import annotations

from collections.abc import Mapping

from detectors import snapshot
from detectors.findings import Finding, FindingKind, Severity
from detectors.settings import DetectorSettings, ResidentConfig
from detectors.state import ResidentState, WristbandState
from ingest.records import (
    EMERGENCY_EVENTS,
    DeviceEvent,
    DeviceId,
    EventType,
    ResidentId,
    WristbandSample,
)


class Emergencies:
    """SOS presses, cancels and falls decided apart from the rest of detection, the moment
    they are decoded, so that no other work (and no other process) stands before them.

    Same rules as `step_event`, on a state of its own per resident (in memory: after a restart a
    press delivered again is decided again, and the alert engine knows it for the same press).
    """

    def __init__(self) -> None:
        self._residents: Mapping[ResidentId, ResidentConfig] = {}
        self._states: dict[ResidentId, ResidentState] = {}

    def set_residents(self, residents: Mapping[ResidentId, ResidentConfig]) -> None:
        self._residents = residents

    def restore(self, blob: bytes) -> None:
        """The presses and falls a detector snapshot remembers (the worker sees every event
        too): one delivered again after a restart is not decided twice."""
        self._states = {}
        for rid, full in snapshot.loads(blob, ResidentState).items():
            state = self._states[ResidentId(rid)] = ResidentState(sos=full.sos)  # no more
            for device_id, band in full.bands.items():
                state.band(device_id).last_fall_id_ms = band.last_fall_id_ms

    def step(self, event: DeviceEvent) -> list[Finding]:
        if event.type not in EMERGENCY_EVENTS or event.resident_id is None:
            return []
        config = self._residents.get(event.resident_id)
        settings = config.settings if config is not None else DetectorSettings()
        state = self._states.setdefault(event.resident_id, ResidentState())
        return step_event(state, state.band(event.device_id), event, settings)


def step_event(
    r: ResidentState, b: WristbandState, event: DeviceEvent, s: DetectorSettings
) -> list[Finding]:
    """SOS and falls at once (never held back); the rest as low-severity housekeeping."""
    rid = _rid(event.resident_id)
    ts = event.ts_ms
    ev = _event_evidence(event)
    kind = event.type
    if kind is EventType.SOS:
        sos = r.sos
        if sos.first_ms >= 0 and event.identity_ms in (sos.last_id_ms, sos.last_ms):
            # The press already counted, delivered again (a restart between detection and the
            # broker's ack): the restored state remembers it.
            return []
        if sos.first_ms < 0 or ts - sos.last_ms > s.sos_join_window_s * 1000:
            sos.first_ms, sos.presses = ts, 0
        sos.presses += 1
        sos.last_ms, sos.last_id_ms = ts, event.identity_ms
        r.alarm_ms = max(r.alarm_ms, ts)
        ev.update(presses=sos.presses, first_ms=sos.first_ms)
        return [
            Finding(
                rid,
                FindingKind.SOS,
                Severity.CRITICAL,
                ts,
                sos.first_ms,
                device_id=event.device_id,
                evidence=ev,
            )
        ]
    if kind is EventType.SOS_CANCEL:
        first = r.sos.first_ms if r.sos.first_ms >= 0 else ts
        r.sos.first_ms, r.sos.presses = -1, 0
        r.alarm_ms = -1
        return [
            Finding(
                rid,
                FindingKind.SOS,
                Severity.CRITICAL,
                ts,
                first,
                cleared=True,
                device_id=event.device_id,
                evidence=ev,
            )
        ]
    if kind is EventType.FALL:
        if event.identity_ms == b.last_fall_id_ms:
            return []  # the same fall delivered again (after a restart): the state remembers it
        b.last_fall_id_ms = event.identity_ms
        r.alarm_ms = max(r.alarm_ms, ts)
        return [
            Finding(
                rid,
                FindingKind.FALL,
                Severity.CRITICAL,
                ts,
                ts,
                device_id=event.device_id,
                evidence=ev,
            )
        ]
    if kind is EventType.REMOVED:
        b.removed = True
        return [
            Finding(
                rid,
                FindingKind.WRISTBAND_REMOVED,
                Severity.LOW,
                ts,
                ts,
                device_id=event.device_id,
                evidence=ev,
            )
        ]
    if event.bat is not None and event.bat >= s.battery_ok_pct:
        return []  # a low_battery event that reports a charged battery is not one
    b.battery_low = True
    return [
        Finding(
            rid,
            FindingKind.LOW_BATTERY,
            Severity.LOW,
            ts,
            ts,
            device_id=event.device_id,
            evidence=ev,
        )
    ]


def _event_evidence(event: DeviceEvent) -> dict[str, object]:
    ev: dict[str, object] = {"event": event.type.value}
    for name in ("conf", "bat", "lat", "lon"):
        value = getattr(event, name)
        if value is not None:
            ev[name] = value
    if event.degraded:
        ev["degraded"] = True
    return ev


def step_band_housekeeping(
    b: WristbandState, sample: WristbandSample, s: DetectorSettings
) -> list[Finding]:
    """Strap off in two readings in a row, or back on; battery low, or charged again."""
    rid = _rid(sample.resident_id)
    out: list[Finding] = []
    ts = sample.ts_ms
    if sample.worn == 0:
        if b.unworn_prev and not b.removed:
            b.removed = True
            out.append(
                Finding(
                    rid,
                    FindingKind.WRISTBAND_REMOVED,
                    Severity.LOW,
                    ts,
                    ts,
                    device_id=sample.device_id,
                    evidence={"worn": 0},
                )
            )
        b.unworn_prev = True
    elif sample.worn == 1:
        b.unworn_prev = False
        if b.removed:
            b.removed = False
            out.append(
                Finding(
                    rid,
                    FindingKind.WRISTBAND_REMOVED,
                    Severity.LOW,
                    ts,
                    ts,
                    cleared=True,
                    device_id=sample.device_id,
                    evidence={"worn": 1},
                )
            )
    out += battery(rid, b, sample.bat, ts, sample.device_id, s)
    return out


def battery(
    rid: ResidentId,
    b: WristbandState,
    bat: int | None,
    ts: int,
    device_id: DeviceId,
    s: DetectorSettings,
) -> list[Finding]:
    """Low at `low_battery_pct`, cleared only once charged past `battery_ok_pct`."""
    if bat is None:
        return []
    if not b.battery_low and bat <= s.low_battery_pct:
        b.battery_low = True
        return [
            Finding(
                rid,
                FindingKind.LOW_BATTERY,
                Severity.LOW,
                ts,
                ts,
                device_id=device_id,
                evidence={"bat": bat},
            )
        ]
    if b.battery_low and bat >= s.battery_ok_pct:
        b.battery_low = False
        return [
            Finding(
                rid,
                FindingKind.LOW_BATTERY,
                Severity.LOW,
                ts,
                ts,
                cleared=True,
                device_id=device_id,
                evidence={"bat": bat},
            )
        ]
    return []


def _rid(resident_id: ResidentId | None) -> ResidentId:
    assert resident_id is not None, "the runner hands on only records of known residents"
    return resident_id
