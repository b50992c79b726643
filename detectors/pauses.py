"""Breathing pauses, from runs of rr = 0 and from gaps between breaths found in the waveform."""

from __future__ import annotations

from detectors.findings import Finding, FindingKind, Severity
from detectors.persist import CLEAR, FIRE, NORMAL, ON, UNKNOWN
from detectors.settings import DetectorSettings
from detectors.state import MattressState, ResidentState
from detectors.vitals import SAMPLE_PERIOD_MS, active_severity, mattress_valid
from detectors.wave import WaveEstimate
from detectors.wavestream import window_start_ms
from ingest.records import DeviceId, MattressSample, ResidentId

PAUSE_GAP_TOLERANCE_MS = 2_000  # one lost sample at 1 Hz does not end an rr = 0 run


def step_rr_pause(
    r: ResidentState, m: MattressState, sample: MattressSample, s: DetectorSettings
) -> list[Finding]:
    """rr = 0 says no breath for the last 10 s, so a run's pause began 10 s before it."""
    rr = sample.rr
    if rr is None or not mattress_valid(sample, s) or not sample.hr:
        # Without a heartbeat either, this is vitals_absent's (critical) case, not a pause.
        score = UNKNOWN
    else:
        score = ON if rr == 0 else NORMAL
    span = s.rr_zero_span_s * 1000
    ep = m.pause
    if score == NORMAL:
        ep.drop_pending()  # a breath ends a pause at once: only lost samples are tolerated
    ts = sample.ts_ms
    # A run of n samples a second apart shows a pause of about n - 1 + 10 + 1 seconds: the
    # first says 10 s have passed, the last holds until the next sample shows a breath.
    window = s.pause_alarm_s * 1000 - span - SAMPLE_PERIOD_MS
    decision = ep.update(ts, score, float("nan"), window, PAUSE_GAP_TOLERANCE_MS, 5_000)
    if (
        score == ON
        and ep.start_ms != m.pause_counted_ms
        and ts - ep.start_ms + span + (SAMPLE_PERIOD_MS) >= s.pause_count_s * 1000
    ):
        m.pause_counted_ms = ep.start_ms
        if sample.occ == 1:
            r.night.pauses_rr += 1
    if decision == FIRE:
        began = int(ep.start_ms - span)
        return _fire(r, sample.device_id, sample.resident_id, ts, began, source="rr")
    if decision == CLEAR:
        return _clear(r, sample.device_id, sample.resident_id, ts)
    return []


def step_wave_pause(
    r: ResidentState,
    m: MattressState,
    device_id: DeviceId,
    resident_id: ResidentId,
    est: WaveEstimate,
    s: DetectorSettings,
) -> list[Finding]:
    """Follow breaths window by window; a gap of pause_alarm_s in bed, without movement, fires."""
    w = m.wave
    t0 = window_start_ms(w, est)
    end = int(w.end_ms)
    if m.occ != 1:
        w.last_breath_ms = -1  # no one to breathe: a pause cannot be told
        return _end_wave_pause(r, m, device_id, resident_id, end) if w.pause_fired else []
    if est.movement_end_s >= 0:
        # Moving is not a pause: the gap is measured again from the end of the movement.
        w.last_breath_ms = max(w.last_breath_ms, int(t0 + est.movement_end_s * 1000))
    out: list[Finding] = []
    # Peak to peak, a pause spans the pause plus about one breath (the exhalation before it and
    # the inhalation after it), so a gap is held against the limit less one breath period.
    period = w.breath_period_ms
    count_ms, alarm_ms = s.pause_count_s * 1000 + period, s.pause_alarm_s * 1000 + period
    for t in est.breaths_s:
        b = int(t0 + t * 1000)
        if b <= w.last_breath_ms + 500:
            continue  # seen in the previous window already
        if w.last_breath_ms >= 0 and w.pause_fired:
            out += _end_wave_pause(r, m, device_id, resident_id, b)
        if w.last_breath_ms >= 0 and b - w.last_breath_ms >= count_ms:
            _count(r, w.last_breath_ms, m)
        w.last_breath_ms = b
    if w.last_breath_ms < 0:
        return out
    confirmed = int(t0 + (est.duration_s - 2.0) * 1000)  # the window's trusted end
    gap = confirmed - w.last_breath_ms
    if gap >= count_ms:
        _count(r, w.last_breath_ms, m)
    # No heartbeat on the pad either: vitals_absent's (critical) case, not a pause.
    if gap >= alarm_ms and not w.pause_fired and m.beating:
        w.pause_fired = True
        w.pause_from_ms = w.last_breath_ms
        out += _fire(
            r,
            device_id,
            resident_id,
            end,
            w.last_breath_ms,
            source="wave",
            gap_s=gap / 1000,
            breath_period_s=round(period / 1000, 2),
        )
    return out


def _count(r: ResidentState, began_ms: int, m: MattressState) -> None:
    if m.wave.counted_from_ms != began_ms:
        m.wave.counted_from_ms = began_ms
        r.night.pauses_wave += 1


def _end_wave_pause(
    r: ResidentState, m: MattressState, device_id: DeviceId, resident_id: ResidentId, at_ms: int
) -> list[Finding]:
    m.wave.pause_fired = False
    return _clear(r, device_id, resident_id, at_ms)


def _fire(
    r: ResidentState,
    device_id: DeviceId,
    resident_id: ResidentId | None,
    at_ms: int,
    began_ms: int,
    **evidence: object,
) -> list[Finding]:
    if not r.pause.raise_to(Severity.HIGH, began_ms):
        return []
    assert resident_id is not None
    ev = {"from_ms": began_ms, "to_ms": at_ms, "pause_s": (at_ms - began_ms) / 1000, **evidence}
    return [
        Finding(
            resident_id,
            FindingKind.BREATHING_PAUSE,
            Severity.HIGH,
            at_ms,
            began_ms,
            device_id=device_id,
            evidence=ev,
        )
    ]


def _clear(
    r: ResidentState, device_id: DeviceId, resident_id: ResidentId | None, at_ms: int
) -> list[Finding]:
    started = r.pause.started_ms
    if not r.pause.settle(active_severity(r, FindingKind.BREATHING_PAUSE)):
        return []
    assert resident_id is not None
    return [
        Finding(
            resident_id,
            FindingKind.BREATHING_PAUSE,
            Severity.HIGH,
            at_ms,
            started,
            cleared=True,
            device_id=device_id,
            evidence={"to_ms": at_ms},
        )
    ]
