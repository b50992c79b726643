"""Night summaries: one per resident and local night, accumulated sample by sample."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from detectors.settings import DetectorSettings
from ingest.records import MattressSample, ResidentId, ms_to_datetime

GAP_MS = 10_000  # a longer gap between samples counts as one sample's second, not as time in bed


@dataclass(frozen=True, slots=True)
class NightSummary:
    """One resident's night, from `summary_from_local` to `summary_to_local` the next day.

    `night` is the local date the night began. Times are device time (epoch ms); `exits` counts
    absences from bed of at least `exit_count_min_s` that ended with a return (the morning rise
    is not an exit); `restlessness_pct` is the share of in-bed seconds with movement at or above
    `restless_move_min`; HR/RR are over valid in-bed samples; `pauses` are breathing pauses of
    at least `pause_count_s`, from the pad's rr = 0 runs (`pause_source` "rr"), or from gaps
    between breaths in the waveform for a pad that reports no rates ("wave"); `pauses_wave`
    is the waveform's count whatever the source, to compare.
    """

    resident_id: ResidentId
    night: date
    from_ms: int
    to_ms: int
    samples: int
    time_in_bed_s: float
    bedtime_ms: int | None
    rise_ms: int | None
    sleep_onset_ms: int | None
    exits: int
    longest_absence_s: float
    restlessness_pct: float
    hr_mean: float | None
    hr_min: float | None
    hr_max: float | None
    rr_mean: float | None
    rr_min: float | None
    rr_max: float | None
    pauses: int
    pauses_per_h: float
    pause_source: str
    pauses_wave: int

    def to_row(self) -> dict[str, Any]:
        """Column name → value for `night_summaries`; times as UTC datetimes."""
        row = asdict(self)
        for key, column in _TIME_COLUMNS.items():
            value = row.pop(key)
            row[column] = None if value is None else ms_to_datetime(value)
        return row

    def metrics(self) -> list[float | None]:
        """The values `sleep_change` compares with the resident's own past nights."""
        return [
            self.time_in_bed_s,
            float(self.exits),
            self.restlessness_pct,
            self.hr_mean,
            self.rr_mean,
        ]


_TIME_COLUMNS = {
    "from_ms": "from_at",
    "to_ms": "to_at",
    "bedtime_ms": "bedtime_at",
    "rise_ms": "rise_at",
    "sleep_onset_ms": "sleep_onset_at",
}
METRIC_NAMES = ("time_in_bed_s", "exits", "restlessness_pct", "hr_mean", "rr_mean")


@dataclass(slots=True)
class NightState:
    from_ms: int = -1  # the open night's span; -1: none open
    to_ms: int = -1
    night_ord: int = 0  # date.toordinal() of the open night
    idle_until_ms: int = -1  # no night before this (between the summary's end and next start)
    last_ts_ms: int = 0
    samples: int = 0
    in_bed_ms: int = 0
    in_bed_samples: int = 0
    restless_samples: int = 0
    hr_n: int = 0
    hr_sum: float = 0.0
    hr_min: float = 0.0
    hr_max: float = 0.0
    rr_n: int = 0
    rr_sum: float = 0.0
    rr_min: float = 0.0
    rr_max: float = 0.0
    pauses_rr: int = 0
    pauses_wave: int = 0
    wave_in_bed_ms: int = 0
    exits: int = 0
    longest_absence_ms: int = 0
    in_bed: bool = False
    out_since_ms: int = -1
    bedtime_ms: int = -1
    rise_ms: int = -1
    onset_ms: int = -1
    still_since_ms: int = -1


def step_night(
    n: NightState,
    resident_id: ResidentId,
    sample: MattressSample,
    s: DetectorSettings,
    zone: ZoneInfo,
) -> NightSummary | None:
    """Add one pad sample; returns the previous night's summary when this sample ends it."""
    ts = sample.ts_ms
    summary = None
    if ts >= n.to_ms or n.from_ms < 0:
        if n.from_ms >= 0:
            summary = close_night(n, resident_id, s)
        if ts < n.idle_until_ms or not _open_night(n, ts, s, zone):
            return summary
    add_samples(n, (sample,), s)
    return summary


def add_samples(n: NightState, samples: Sequence[MattressSample], s: DetectorSettings) -> None:
    """Pad samples that fall in the open night."""
    restless, still_min = s.restless_move_min, s.immobile_move_min
    sq_min, artefact = s.sq_min, s.artefact_move_min
    onset_still_ms = s.sleep_onset_still_s * 1000
    # The counters in locals for the loop (this runs for every sample of a night).
    last, count, bed_ms, bed_samples, restless_samples = (
        n.last_ts_ms,
        n.samples,
        n.in_bed_ms,
        n.in_bed_samples,
        n.restless_samples,
    )
    hr_n, hr_sum, hr_min, hr_max = n.hr_n, n.hr_sum, n.hr_min, n.hr_max
    rr_n, rr_sum, rr_min, rr_max = n.rr_n, n.rr_sum, n.rr_min, n.rr_max
    for sample in samples:
        _, _, ts, hr, rr, move, occ, sq, _ = sample
        if ts <= last:
            continue
        dt = ts - last if last and ts - last <= GAP_MS else 1000
        last = ts
        count += 1
        if occ != 1:
            if n.in_bed:
                _left_bed(n, ts)
            continue
        if not n.in_bed:
            _back_in_bed(n, ts, s)
        bed_ms += dt
        bed_samples += 1
        if move >= restless:
            restless_samples += 1
        if n.onset_ms < 0:
            if move >= still_min or n.still_since_ms < 0:
                n.still_since_ms = ts
            elif ts - n.still_since_ms >= onset_still_ms:
                n.onset_ms = n.still_since_ms
        if sq < sq_min or move >= artefact:
            continue  # vital signs not readable (vitals.mattress_valid)
        if hr:
            if hr_n == 0 or hr < hr_min:
                hr_min = hr
            if hr_n == 0 or hr > hr_max:
                hr_max = hr
            hr_n += 1
            hr_sum += hr
        if rr:
            if rr_n == 0 or rr < rr_min:
                rr_min = rr
            if rr_n == 0 or rr > rr_max:
                rr_max = rr
            rr_n += 1
            rr_sum += rr
    n.last_ts_ms, n.samples, n.in_bed_ms, n.in_bed_samples = last, count, bed_ms, bed_samples
    n.restless_samples = restless_samples
    n.hr_n, n.hr_sum, n.hr_min, n.hr_max = hr_n, hr_sum, hr_min, hr_max
    n.rr_n, n.rr_sum, n.rr_min, n.rr_max = rr_n, rr_sum, rr_min, rr_max


def _left_bed(n: NightState, ts: int) -> None:
    n.in_bed = False
    n.out_since_ms = n.rise_ms = ts
    n.still_since_ms = -1


def _back_in_bed(n: NightState, ts: int, s: DetectorSettings) -> None:
    n.in_bed = True
    if n.bedtime_ms < 0:
        n.bedtime_ms = ts
    if n.out_since_ms >= 0:
        absence = ts - n.out_since_ms
        if absence >= s.exit_count_min_s * 1000:
            n.exits += 1
            n.longest_absence_ms = max(n.longest_absence_ms, absence)
        n.out_since_ms = -1


def _open_night(n: NightState, ts: int, s: DetectorSettings, zone: ZoneInfo) -> bool:
    """Open the night that contains `ts`, or note when the next one starts."""
    start_t, end_t = s.local_time("summary_from_local"), s.local_time("summary_to_local")
    local = datetime.fromtimestamp(ts / 1000, zone)
    day = local.date()
    for first in (day - timedelta(days=1), day):
        begin = _epoch_ms(first, start_t, zone)
        end = _epoch_ms(first + timedelta(days=1) if start_t >= end_t else first, end_t, zone)
        if begin <= ts < end:
            fresh = NightState(from_ms=begin, to_ms=end, night_ord=first.toordinal())
            _assign(n, fresh)
            return True
    n.idle_until_ms = _epoch_ms(day, start_t, zone)
    return False


def close_night(n: NightState, resident_id: ResidentId, s: DetectorSettings) -> NightSummary:
    """The summary of the open night; the state is left idle until the next one starts."""
    in_bed_h = n.in_bed_ms / 3_600_000
    # The pad's own rr = 0 runs when it reports breathing rates; the waveform's breath gaps
    # only for pads that do not (both are kept, for comparison).
    use_wave = n.rr_n == 0 and n.in_bed_ms > 0 and n.wave_in_bed_ms >= n.in_bed_ms / 2
    pauses = n.pauses_wave if use_wave else n.pauses_rr
    summary = NightSummary(
        resident_id=resident_id,
        night=date.fromordinal(n.night_ord),
        from_ms=n.from_ms,
        to_ms=n.to_ms,
        samples=n.samples,
        time_in_bed_s=n.in_bed_ms / 1000,
        bedtime_ms=n.bedtime_ms if n.bedtime_ms >= 0 else None,
        rise_ms=n.rise_ms if n.rise_ms >= 0 else None,
        sleep_onset_ms=n.onset_ms if n.onset_ms >= 0 else None,
        exits=n.exits,
        longest_absence_s=n.longest_absence_ms / 1000,
        restlessness_pct=round(100 * n.restless_samples / n.in_bed_samples, 2)
        if n.in_bed_samples
        else 0.0,
        hr_mean=round(n.hr_sum / n.hr_n, 2) if n.hr_n else None,
        hr_min=n.hr_min if n.hr_n else None,
        hr_max=n.hr_max if n.hr_n else None,
        rr_mean=round(n.rr_sum / n.rr_n, 2) if n.rr_n else None,
        rr_min=n.rr_min if n.rr_n else None,
        rr_max=n.rr_max if n.rr_n else None,
        pauses=pauses,
        pauses_per_h=round(pauses / in_bed_h, 2) if in_bed_h > 0 else 0.0,
        pause_source="wave" if use_wave else "rr",
        pauses_wave=n.pauses_wave,
    )
    idle = n.to_ms
    _assign(n, NightState(idle_until_ms=idle))
    return summary


def _assign(n: NightState, fresh: NightState) -> None:
    for name in NightState.__slots__:
        setattr(n, name, getattr(fresh, name))


def _epoch_ms(day: date, at: time, zone: ZoneInfo) -> int:
    return int(datetime.combine(day, at, tzinfo=zone).timestamp() * 1000)
