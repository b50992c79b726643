"""Vital-sign findings: vitals_absent, heart_rate, breathing_rate (pad and band) and spo2."""

from __future__ import annotations

from detectors.findings import Finding, FindingKind, Severity
from detectors.persist import BAND, CLEAR, FIRE, NORMAL, ON, UNKNOWN, Episode, Reported
from detectors.settings import DetectorSettings
from detectors.state import MattressState, ResidentState, WristbandState
from ingest.records import DeviceId, MattressSample, ResidentId, WristbandSample

NAN = float("nan")
# protocol-v1: pad samples are normally 1 s apart, and each stands for its second, so n samples
# cover n seconds: a window of W s is full at the W-th sample (W - 1 s after the first).
SAMPLE_PERIOD_MS = 1_000


def mattress_valid(sample: MattressSample, s: DetectorSettings) -> bool:
    """Someone lies on the pad, still enough and with signal good enough to read vital signs."""
    return sample.occ == 1 and sample.sq >= s.sq_min and sample.move < s.artefact_move_min


def absent_score(sample: MattressSample, s: DetectorSettings) -> int | None:
    """vitals_absent's score: ON with no heartbeat or breathing, UNKNOWN when unreadable."""
    if not mattress_valid(sample, s):
        return UNKNOWN
    hr, rr = sample.hr, sample.rr
    if hr is None or hr == 0 or rr == 0:
        return ON
    return NORMAL if rr is not None else BAND


def step_absent(
    r: ResidentState, m: MattressState, sample: MattressSample, s: DetectorSettings
) -> list[Finding]:
    """One pad sample through vitals_absent."""
    out: list[Finding] = []
    window = s.vitals_absent_window_s * 1000 - SAMPLE_PERIOD_MS
    decision = m.absent.update(
        sample.ts_ms,
        absent_score(sample, s),
        NAN,
        window,
        s.gap_tolerance_s * 1000,
        s.clear_after_s * 1000,
    )
    if decision:
        _decide(
            out,
            r.absent,
            decision,
            FindingKind.VITALS_ABSENT,
            Severity.CRITICAL,
            m.absent,
            sample,
            window + SAMPLE_PERIOD_MS,
            r,
            hr=sample.hr,
            rr=sample.rr,
        )
    return out


def step_pad_rate(
    r: ResidentState,
    m: MattressState,
    sample: MattressSample,
    value: float | None,
    s: DetectorSettings,
    *,
    heart: bool,
) -> list[Finding]:
    """One pad sample's heart rate (`heart`) or breathing rate through both NEWS2 levels."""
    out: list[Finding] = []
    _rates(
        out,
        r,
        m.hr_high if heart else m.rr_high,
        m.hr_elevated if heart else m.rr_elevated,
        sample.device_id,
        sample.resident_id,
        sample.ts_ms,
        value,
        s.gap_tolerance_s * 1000,
        s,
        heart=heart,
        period=SAMPLE_PERIOD_MS,
    )
    return out


def step_wristband(
    r: ResidentState,
    b: WristbandState,
    sample: WristbandSample,
    s: DetectorSettings,
    *,
    in_bed: bool,
) -> list[Finding]:
    """One band reading through heart_rate (in bed only) and spo2."""
    out: list[Finding] = []
    worn = sample.worn != 0
    hr = sample.hr if worn and in_bed and sample.hr else None
    _rates(
        out,
        r,
        b.hr_high,
        b.hr_elevated,
        sample.device_id,
        sample.resident_id,
        sample.ts_ms,
        hr,
        s.wristband_gap_tolerance_s * 1000,
        s,
        heart=True,
    )
    if worn and sample.spo2 is not None:
        _spo2(out, r, b, sample, s)
    return out


def _rates(
    out: list[Finding],
    r: ResidentState,
    high: Episode,
    elevated: Episode,
    device_id: DeviceId,
    resident_id: ResidentId | None,
    ts: int,
    value: float | None,
    tolerance: float,
    s: DetectorSettings,
    *,
    heart: bool,
    period: float = 0.0,
) -> None:
    """Both NEWS2 levels of one rate from one source."""
    if heart:
        low, top, mid, hys = s.hr_low_bpm, s.hr_high_bpm, s.hr_elevated_bpm, s.hr_hysteresis_bpm
        w_high, w_mid = s.hr_high_window_s * 1000 - period, s.hr_elevated_window_s * 1000 - period
        kind, reported = FindingKind.HEART_RATE, r.hr
    else:
        low, top, mid = s.rr_low_per_min, s.rr_high_per_min, s.rr_elevated_per_min
        hys = s.rr_hysteresis_per_min
        w_high, w_mid = s.rr_high_window_s * 1000 - period, s.rr_elevated_window_s * 1000 - period
        kind, reported = FindingKind.BREATHING_RATE, r.rr
    if value is None:
        score_high = score_mid = UNKNOWN
        v = NAN
    else:
        v = value
        if v <= low or v >= top:
            score_high = ON
        elif low + hys < v < top - hys:
            score_high = NORMAL
        else:
            score_high = BAND
        score_mid = ON if v >= mid else (NORMAL if v < mid - hys else BAND)
    clear = s.clear_after_s * 1000
    d_high = high.update(ts, score_high, v, w_high, tolerance, clear)
    d_mid = elevated.update(ts, score_mid, v, w_mid, tolerance, clear)
    if not (d_high or d_mid):
        return
    sample_like = (device_id, resident_id, ts)
    if d_high:
        _decide_raw(
            out,
            reported,
            d_high,
            kind,
            Severity.HIGH,
            high,
            sample_like,
            w_high + period,
            r,
            limits=[low, top],
        )
    if d_mid:
        _decide_raw(
            out,
            reported,
            d_mid,
            kind,
            Severity.MEDIUM,
            elevated,
            sample_like,
            w_mid + period,
            r,
            limits=[mid],
        )


def _spo2(
    out: list[Finding],
    r: ResidentState,
    b: WristbandState,
    sample: WristbandSample,
    s: DetectorSettings,
) -> None:
    """Two readings in a row decide; the lower level of the two is the finding's level."""
    assert sample.spo2 is not None
    ts = sample.ts_ms
    level = 2 if sample.spo2 <= s.spo2_low_pct else (1 if sample.spo2 <= s.spo2_medium_pct else 0)
    in_row = b.spo2_prev_level >= 0 and ts - b.spo2_prev_ms <= s.spo2_pair_max_gap_s * 1000
    prev, prev_pct = b.spo2_prev_level, b.spo2_prev_pct
    prev_ms = b.spo2_prev_ms
    b.spo2_prev_level, b.spo2_prev_ms, b.spo2_prev_pct = level, ts, sample.spo2
    if not in_row:
        return
    rid = _rid(sample.resident_id)
    ev = {"spo2_pct": [prev_pct, sample.spo2], "from_ms": prev_ms, "to_ms": ts}
    pair = min(prev, level)
    if pair > b.spo2_level:
        if b.spo2_level == 0:
            b.spo2_started_ms = prev_ms
        b.spo2_level = pair
        severity = Severity.HIGH if pair == 2 else Severity.MEDIUM
        if r.spo2.raise_to(severity, b.spo2_started_ms):
            out.append(
                Finding(
                    rid,
                    FindingKind.SPO2,
                    severity,
                    ts,
                    r.spo2.started_ms,
                    device_id=sample.device_id,
                    evidence=ev,
                )
            )
    elif b.spo2_level and max(prev, level) == 0:
        b.spo2_level = 0
        open_severity = r.spo2.severity
        if r.spo2.settle(None):
            out.append(
                Finding(
                    rid,
                    FindingKind.SPO2,
                    Severity(open_severity),
                    ts,
                    b.spo2_started_ms,
                    cleared=True,
                    device_id=sample.device_id,
                    evidence=ev,
                )
            )


def _decide(
    out: list[Finding],
    reported: Reported,
    decision: int,
    kind: FindingKind,
    severity: Severity,
    ep: Episode,
    sample: MattressSample,
    window: float,
    r: ResidentState,
    **values: object,
) -> None:
    _decide_raw(
        out,
        reported,
        decision,
        kind,
        severity,
        ep,
        (sample.device_id, sample.resident_id, sample.ts_ms),
        window,
        r,
        **values,
    )


def _decide_raw(
    out: list[Finding],
    reported: Reported,
    decision: int,
    kind: FindingKind,
    severity: Severity,
    ep: Episode,
    src: tuple[DeviceId, ResidentId | None, int],
    window: float,
    r: ResidentState,
    **values: object,
) -> None:
    """Turn an episode's FIRE/CLEAR into what the resident-level kind must report, if anything."""
    device_id, resident_id, ts = src
    rid = _rid(resident_id)
    if decision == FIRE:
        if reported.raise_to(severity, ep.start_ms):
            out.append(
                Finding(
                    rid,
                    kind,
                    severity,
                    ts,
                    reported.started_ms,
                    device_id=device_id,
                    evidence=ep.evidence(ts, window, **values),
                )
            )
    elif decision == CLEAR:
        open_severity = reported.severity
        if reported.settle(active_severity(r, kind)):
            out.append(
                Finding(
                    rid,
                    kind,
                    Severity(open_severity),
                    ts,
                    reported.started_ms,
                    cleared=True,
                    device_id=device_id,
                    evidence={"to_ms": ts},
                )
            )


def active_severity(r: ResidentState, kind: FindingKind) -> Severity | None:
    """The highest level of `kind` still fired on any source of the resident."""
    levels: list[tuple[Episode, Severity]] = []
    for m in r.mattresses.values():
        if kind is FindingKind.HEART_RATE:
            levels += [(m.hr_high, Severity.HIGH), (m.hr_elevated, Severity.MEDIUM)]
        elif kind is FindingKind.BREATHING_RATE:
            levels += [(m.rr_high, Severity.HIGH), (m.rr_elevated, Severity.MEDIUM)]
        elif kind is FindingKind.VITALS_ABSENT:
            levels.append((m.absent, Severity.CRITICAL))
        elif kind is FindingKind.BREATHING_PAUSE:
            levels.append((m.pause, Severity.HIGH))
            if m.wave.pause_fired:
                return Severity.HIGH
    if kind is FindingKind.HEART_RATE:
        for b in r.bands.values():
            levels += [(b.hr_high, Severity.HIGH), (b.hr_elevated, Severity.MEDIUM)]
    fired = [sev for ep, sev in levels if ep.fired]
    return min(fired, key=lambda sev: sev.rank) if fired else None


def _rid(resident_id: ResidentId | None) -> ResidentId:
    assert resident_id is not None, "the runner hands on only records of known residents"
    return resident_id
