"""A run of one pad's samples through every pad detector; a quiet sample costs no call."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from detectors.findings import Finding
from detectors.nights import NightSummary, add_samples, step_night
from detectors.pauses import PAUSE_GAP_TOLERANCE_MS, step_rr_pause
from detectors.presence import IMMOBILE_GAP_TOLERANCE_MS, step_exit, step_immobile
from detectors.settings import ResidentConfig
from detectors.state import MattressState, ResidentState
from detectors.vitals import step_absent, step_pad_rate
from ingest.records import MattressSample, SampleSource

DEVICE = SampleSource.DEVICE


def run_pad(  # noqa: PLR0915 (one loop, so that a quiet sample costs no call)
    r: ResidentState,
    m: MattressState,
    samples: Sequence[MattressSample],
    config: ResidentConfig,
    *,
    emit: Callable[[Finding], None],
    behind: Callable[[MattressSample], None] | None,
    night_closed: Callable[[NightSummary, int], list[Finding]] | None,
) -> None:
    """Each sample, in order, through vitals_absent, heart and breathing rate, pauses, bed exit,
    immobility and the night, exactly as one at a time; findings to `emit`, sample by sample.

    Every detector has a quiet case (nothing running, a normal value) decided here in a line or
    two; anything else goes to the detector's own step function. `behind` takes samples not
    after the pad's last; `night_closed` a night the samples end. Both None: a late analysis
    (no night, nothing held back).
    """
    s = config.settings
    lim = config.limits
    sq_min, artefact, still_min = lim.sq_min, lim.artefact_move_min, lim.immobile_move_min
    gap_ms, imm_window = lim.gap_tolerance_ms, lim.immobile_window_ms
    hr_low, hr_mid, rr_low, rr_mid = lim.hr_low, lim.hr_elevated, lim.rr_low, lim.rr_elevated
    absent, pause, immobile, e = m.absent, m.pause, m.immobile, m.exit
    hr_high, hr_elevated, rr_high, rr_elevated = m.hr_high, m.hr_elevated, m.rr_high, m.rr_elevated
    night = r.night if night_closed is not None else None
    pending: list[MattressSample] = []  # in the open night, not yet added to it
    out: list[Finding] = []  # one sample's findings, emitted together once it is done
    for sample in samples:
        _, _, ts, hr, rr, move, occ, sq, source = sample
        if source is not DEVICE:
            continue  # our own derived samples, handed back: not evidence twice
        if ts <= m.last_ts_ms:
            if behind is not None:
                behind(sample)
            continue
        m.last_ts_ms = ts
        m.occ = occ
        in_bed = occ == 1
        r.in_bed = in_bed
        valid = in_bed and sq >= sq_min and move < artefact
        # vitals_absent: no heartbeat or no breathing on a readable body.
        if valid:
            m.beating = bool(hr)
            absent_on = hr is None or hr == 0 or rr == 0
        else:
            absent_on = False
        if absent_on or (absent.start_ms >= 0 and absent.fired):
            out += step_absent(r, m, sample, s)
        elif absent.start_ms >= 0 and ts - absent.last_on_ms > gap_ms:
            absent.start_ms = -1  # a run interrupted too long: what Episode.update does
        # heart_rate and breathing_rate: no rate of an absent or unreadable body.
        hr_value = hr if valid and not absent_on else None
        rr_value = rr if valid and not absent_on and rr else None
        if not (
            (hr_value is None or hr_low < hr_value < hr_mid)
            and hr_high.start_ms < 0
            and hr_elevated.start_ms < 0
        ):
            out += step_pad_rate(r, m, sample, hr_value, s, heart=True)
        if not (
            (rr_value is None or rr_low < rr_value < rr_mid)
            and rr_high.start_ms < 0
            and rr_elevated.start_ms < 0
        ):
            out += step_pad_rate(r, m, sample, rr_value, s, heart=False)
        # breathing_pause from rr = 0 runs (with a heartbeat: without, it is vitals_absent).
        if valid and rr == 0 and hr:
            out += step_rr_pause(r, m, sample, s)
        elif pause.start_ms >= 0:
            if pause.fired:
                out += step_rr_pause(r, m, sample, s)
            elif (valid and rr is not None and hr) or ts - pause.last_on_ms > (
                PAUSE_GAP_TOLERANCE_MS
            ):
                pause.start_ms = -1  # a breath, or lost samples past the tolerance
        # bed_exit_no_return: in bed with no exit open, or out with nothing to decide yet.
        if in_bed:
            if e.out_since_ms < 0:
                e.in_bed = True
            else:
                out += step_exit(r, m, sample, s, config.zone)
        elif not e.in_bed and (e.fired or e.deadline_ms < 0 or ts < e.deadline_ms):
            e.back_since_ms = -1
        else:
            out += step_exit(r, m, sample, s, config.zone)
        # immobile: a still sample extends the run (its evidence summarised), a movement ends it.
        if in_bed and move < still_min:
            start = immobile.start_ms
            if start >= 0 and (
                immobile.fired
                or (
                    ts - immobile.last_on_ms <= IMMOBILE_GAP_TOLERANCE_MS
                    and ts - start < imm_window
                )
            ):
                value = float(move)
                immobile.n += 1
                immobile.vsum += value
                # Comparisons, not min() and max(): this runs for most samples of a night.
                if value < immobile.vmin:  # noqa: PLR1730
                    immobile.vmin = value
                if value > immobile.vmax:  # noqa: PLR1730
                    immobile.vmax = value
                immobile.last_on_ms = ts
                immobile.normal_since_ms = -1
            else:
                out += step_immobile(m, sample, s)
        elif immobile.fired:
            out += step_immobile(m, sample, s)
        else:
            immobile.start_ms = -1
        # The night: samples inside the open one are added in a batch; one at its edge, alone.
        if night is not None and night_closed is not None:
            if night.from_ms >= 0 and ts < night.to_ms:
                pending.append(sample)
            elif night.from_ms >= 0 or ts >= night.idle_until_ms:
                if pending:
                    add_samples(night, pending, s)
                    pending.clear()
                summary = step_night(night, config.resident_id, sample, s, config.zone)
                if summary is not None:
                    out += night_closed(summary, ts)
        if out:
            for finding in out:
                emit(finding)
            out.clear()
    if pending:
        assert night is not None
        add_samples(night, pending, s)
