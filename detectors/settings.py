"""Per-resident detector settings: every threshold of docs/design.md, its default and unit."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ingest.records import DeviceId, DeviceKind, ResidentId


@dataclass(frozen=True, slots=True)
class DetectorSettings:
    """Thresholds and windows. Rates are per minute; `*_s` seconds; `*_pct` percent."""

    # Signal validity: samples below this quality, or moving this much, are not vital signs.
    sq_min: int = 50
    artefact_move_min: int = 30
    # A sustained condition may be interrupted (or have lost samples) this long and still count.
    gap_tolerance_s: float = 15.0
    wristband_gap_tolerance_s: float = 90.0
    # A fired condition clears after this long on the normal side of the hysteresis band.
    clear_after_s: float = 60.0

    sos_join_window_s: float = 120.0

    vitals_absent_window_s: float = 60.0

    night_start_local: str = "21:00"
    night_end_local: str = "07:00"
    exit_return_window_s: float = 1200.0
    bed_return_confirm_s: float = 5.0  # occupied this long before a return counts
    alarm_inhibits_exit_s: float = 1800.0  # an sos/fall this recent mutes bed_exit_no_return

    pause_alarm_s: float = 30.0
    pause_count_s: float = 10.0
    rr_zero_span_s: float = 10.0  # the protocol: rr = 0 means no breathing in the last 10 s
    apnea_index_per_h: float = 15.0
    apnea_min_in_bed_s: float = 3600.0

    hr_low_bpm: float = 40.0
    hr_high_bpm: float = 131.0
    hr_high_window_s: float = 120.0
    hr_elevated_bpm: float = 111.0
    hr_elevated_window_s: float = 600.0
    hr_hysteresis_bpm: float = 5.0

    rr_low_per_min: float = 8.0
    rr_high_per_min: float = 25.0
    rr_high_window_s: float = 120.0
    rr_elevated_per_min: float = 21.0
    rr_elevated_window_s: float = 600.0
    rr_hysteresis_per_min: float = 2.0

    spo2_low_pct: float = 91.0
    spo2_medium_pct: float = 93.0
    spo2_pair_max_gap_s: float = 300.0  # two readings further apart are not "in a row"

    immobile_window_s: float = 7200.0
    immobile_move_min: int = 5  # move at or above this is a repositioning
    restless_move_min: int = 20  # move at or above this counts as restless in the summary

    mattress_silent_s: float = 300.0
    wristband_silent_s: float = 1800.0

    low_battery_pct: int = 15
    battery_ok_pct: int = 25

    summary_from_local: str = "18:00"  # a night's summary covers this local time ...
    summary_to_local: str = "12:00"  # ... to this one the next day
    exit_count_min_s: float = 60.0  # absences shorter than this are not counted as exits
    sleep_onset_still_s: float = 600.0
    sleep_change_z: float = 3.0
    sleep_change_nights: int = 14
    sleep_change_min_nights: int = 7

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, str):
                _parse_hhmm(f.name, value)
            elif isinstance(value, int | float) and (not math.isfinite(value) or value < 0):
                raise ValueError(f"detector setting {f.name}: must be finite and >= 0, got {value}")
        if self.hr_low_bpm >= self.hr_elevated_bpm or self.hr_elevated_bpm > self.hr_high_bpm:
            raise ValueError("detector settings: need hr_low_bpm < hr_elevated_bpm <= hr_high_bpm")
        if not self.rr_low_per_min < self.rr_elevated_per_min <= self.rr_high_per_min:
            raise ValueError(
                "detector settings: need rr_low_per_min < rr_elevated_per_min <= rr_high_per_min"
            )
        if self.spo2_low_pct >= self.spo2_medium_pct:
            raise ValueError("detector settings: need spo2_low_pct < spo2_medium_pct")
        if self.low_battery_pct >= self.battery_ok_pct:
            raise ValueError("detector settings: need low_battery_pct < battery_ok_pct")
        if (
            self.sleep_change_min_nights < 3
            or self.sleep_change_nights < self.sleep_change_min_nights
        ):
            raise ValueError(
                "detector settings: need 3 <= sleep_change_min_nights <= sleep_change_nights"
            )

    def local_time(self, name: str) -> time:
        """One of the `*_local` settings as a time of day."""
        return _parse_hhmm(name, getattr(self, name))


_FIELDS = {f.name: f for f in dataclasses.fields(DetectorSettings)}


def parse_detector_settings(mapping: Mapping[str, object]) -> DetectorSettings:
    """Settings from a site file's `detectors = {...}` table; unknown keys and bad values raise."""
    values: dict[str, object] = {}
    for key, value in mapping.items():
        if key not in _FIELDS:
            raise ValueError(f"unknown detector setting {key!r}; known: {', '.join(_FIELDS)}")
        values[key] = _convert(key, value, type(_FIELDS[key].default))
    return _interned(DetectorSettings(**values))  # type: ignore[arg-type]


_INTERNED: dict[DetectorSettings, DetectorSettings] = {}
_INTERNED_MAX = 1024


def _interned(s: DetectorSettings) -> DetectorSettings:
    """One object for equal settings: most residents have the defaults, or a site's own."""
    same = _INTERNED.get(s)
    if same is not None:
        return same
    if len(_INTERNED) < _INTERNED_MAX:
        _INTERNED[s] = s
    return s


def _convert(key: str, value: object, kind: type) -> object:
    if isinstance(value, bool):
        raise ValueError(f"detector setting {key}: expected a number, got {value!r}")
    if kind is str:
        if not isinstance(value, str):
            raise ValueError(f"detector setting {key}: expected a time 'HH:MM', got {value!r}")
        _parse_hhmm(key, value)
        return value
    if kind is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
            raise ValueError(f"detector setting {key}: expected a whole number, got {value!r}")
        return value
    if not isinstance(value, int | float):
        raise ValueError(f"detector setting {key}: expected a number, got {value!r}")
    return float(value)


def _parse_hhmm(key: str, text: str) -> time:
    hours, sep, minutes = text.partition(":")
    if not (sep and hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
        raise ValueError(f"detector setting {key}: expected a time 'HH:MM', got {text!r}")
    if int(hours) > 23 or int(minutes) > 59:
        raise ValueError(f"detector setting {key}: no such time of day {text!r}")
    return time(int(hours), int(minutes))


DEFAULT_SETTINGS = DetectorSettings()


@dataclass(frozen=True, slots=True)
class Limits:
    """The settings a pad sample is compared with, in the units it carries (ms, counts)."""

    sq_min: int
    artefact_move_min: int
    immobile_move_min: int
    gap_tolerance_ms: float
    hr_low: float
    hr_elevated: float
    rr_low: float
    rr_elevated: float
    immobile_window_ms: float


@lru_cache(maxsize=64)
def limits(s: DetectorSettings) -> Limits:
    """Shared by every resident with equal settings (most have the defaults)."""
    return Limits(
        sq_min=s.sq_min,
        artefact_move_min=s.artefact_move_min,
        immobile_move_min=s.immobile_move_min,
        gap_tolerance_ms=s.gap_tolerance_s * 1000,
        hr_low=s.hr_low_bpm,
        hr_elevated=s.hr_elevated_bpm,
        rr_low=s.rr_low_per_min,
        rr_elevated=s.rr_elevated_per_min,
        immobile_window_ms=s.immobile_window_s * 1000,
    )


@dataclass(frozen=True, slots=True)
class ResidentConfig:
    """Who is watched, where (for the local night window), with which devices and settings."""

    resident_id: ResidentId
    timezone: str
    devices: Mapping[DeviceId, DeviceKind]
    settings: DetectorSettings = DEFAULT_SETTINGS  # frozen: shared, not copied

    # Derived once, here, rather than for every sample.
    zone: ZoneInfo = field(init=False, repr=False, compare=False)  # of `timezone`
    limits: Limits = field(init=False, repr=False, compare=False)  # of `settings`
    pads: tuple[DeviceId, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "zone", _zone(self.timezone))
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"resident {self.resident_id}: unknown timezone {self.timezone!r}"
            ) from exc
        object.__setattr__(self, "limits", limits(self.settings))
        pads = tuple(d for d, kind in self.devices.items() if kind is DeviceKind.MATTRESS)
        object.__setattr__(self, "pads", pads)

    def has_kind(self, kind: DeviceKind) -> bool:
        return kind in self.devices.values()


_ZONES: dict[str, ZoneInfo] = {}


def _zone(name: str) -> ZoneInfo:
    zone = _ZONES.get(name)
    if zone is None:
        zone = _ZONES[name] = ZoneInfo(name)
    return zone


__all__ = [
    "DEFAULT_SETTINGS",
    "DetectorSettings",
    "ResidentConfig",
    "parse_detector_settings",
]
