"""Occupancy findings: bed_exit_no_return in the local night window, and immobile in bed."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from detectors.findings import Finding, FindingKind, Severity
from detectors.persist import CLEAR, FIRE, NORMAL, ON
from detectors.settings import DetectorSettings
from detectors.state import ExitState, MattressState, ResidentState
from ingest.records import MattressSample, ResidentId

IMMOBILE_GAP_TOLERANCE_MS = 300_000  # lost samples up to minutes do not undo hours of stillness


def step_exit(
    r: ResidentState, m: MattressState, sample: MattressSample, s: DetectorSettings, zone: ZoneInfo
) -> list[Finding]:
    """Track one pad's occupancy; an exit in the night not followed by a return is a finding."""
    e = m.exit
    ts = sample.ts_ms
    if sample.occ == 1:
        if e.out_since_ms < 0:
            e.in_bed = True
            return []
        if e.back_since_ms < 0:
            e.back_since_ms = ts
        if ts - e.back_since_ms < s.bed_return_confirm_s * 1000:
            return []
        return _returned(e, sample)
    e.back_since_ms = -1  # a flicker of occupancy during an absence is not a return
    if e.in_bed:
        e.in_bed = False
        e.out_since_ms = ts
        e.deadline_ms = exit_deadline_ms(ts, s, zone)
        e.fired = False
    if e.fired or e.deadline_ms < 0 or ts < e.deadline_ms:
        return []
    e.fired = True
    if r.alarm_ms >= 0 and r.alarm_ms >= e.out_since_ms - s.alarm_inhibits_exit_s * 1000:
        return []  # an open sos or fall already has someone on the way
    rid = _rid(sample.resident_id)
    evidence = {
        "out_since_ms": e.out_since_ms,
        "absent_s": (ts - e.out_since_ms) / 1000,
        "window_s": s.exit_return_window_s,
    }
    return [
        Finding(
            rid,
            FindingKind.BED_EXIT_NO_RETURN,
            Severity.HIGH,
            ts,
            e.out_since_ms,
            device_id=sample.device_id,
            evidence=evidence,
        )
    ]


def _returned(e: ExitState, sample: MattressSample) -> list[Finding]:
    out: list[Finding] = []
    if e.fired and e.deadline_ms >= 0:
        rid = _rid(sample.resident_id)
        out.append(
            Finding(
                rid,
                FindingKind.BED_EXIT_NO_RETURN,
                Severity.HIGH,
                sample.ts_ms,
                e.out_since_ms,
                cleared=True,
                device_id=sample.device_id,
                evidence={
                    "back_ms": e.back_since_ms,
                    "absent_s": (e.back_since_ms - e.out_since_ms) / 1000,
                },
            )
        )
    e.in_bed = True
    e.out_since_ms = e.deadline_ms = e.back_since_ms = -1
    e.fired = False
    return out


def exit_deadline_ms(exit_ms: int, s: DetectorSettings, zone: ZoneInfo) -> int:
    """When an exit at `exit_ms` becomes a finding, or -1 when the absence is not the night's.

    It is when either the exit or its deadline falls in the night window: leaving at 20:58 and
    lying on the floor at 21:18 is a night-time exit with no return like any other.
    """
    deadline = exit_ms + int(s.exit_return_window_s * 1000)
    in_night = _in_night(exit_ms, s, zone) or _in_night(deadline, s, zone)
    return deadline if in_night else -1


def _in_night(ms: int, s: DetectorSettings, zone: ZoneInfo) -> bool:
    start, end = s.local_time("night_start_local"), s.local_time("night_end_local")
    tod = datetime.fromtimestamp(ms / 1000, zone).time()
    return (tod >= start or tod < end) if start > end else (start <= tod < end)


def step_immobile(m: MattressState, sample: MattressSample, s: DetectorSettings) -> list[Finding]:
    """In bed without a repositioning movement for the window (pressure-sore prevention)."""
    if sample.occ == 1 and sample.move < s.immobile_move_min:
        score = ON
    else:
        score = NORMAL  # a movement, or leaving the bed, is the repositioning asked for
        m.immobile.drop_pending()  # at once: only lost samples are tolerated within a run
    window = s.immobile_window_s * 1000
    decision = m.immobile.update(
        sample.ts_ms, score, float(sample.move), window, IMMOBILE_GAP_TOLERANCE_MS, 0
    )
    if decision == FIRE:
        rid = _rid(sample.resident_id)
        return [
            Finding(
                rid,
                FindingKind.IMMOBILE,
                Severity.MEDIUM,
                sample.ts_ms,
                m.immobile.start_ms,
                device_id=sample.device_id,
                evidence=m.immobile.evidence(sample.ts_ms, window),
            )
        ]
    if decision == CLEAR:
        rid = _rid(sample.resident_id)
        return [
            Finding(
                rid,
                FindingKind.IMMOBILE,
                Severity.MEDIUM,
                sample.ts_ms,
                sample.ts_ms,
                cleared=True,
                device_id=sample.device_id,
                evidence={"move": sample.move, "occ": sample.occ},
            )
        ]
    return []


def _rid(resident_id: ResidentId | None) -> ResidentId:
    assert resident_id is not None, "the runner hands on only records of known residents"
    return resident_id
