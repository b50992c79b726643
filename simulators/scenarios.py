"""Scripted scenarios as data: a TOML file of `[[scenario]]` tables, checked strictly when loaded.

```toml
[[scenario]]
kind = "breathing_pause"     # one of ScenarioKind
residents = ["r-0001"]       # optional: only these residents (default: every resident)
share = 0.1                  # optional: a seeded tenth of the residents it would apply to
nights = [0]                 # optional: only these night indices (default: every night)
at = "02:30"                 # optional local time (before noon = next morning); default: a
                             # seeded random moment while asleep
duration_s = 45              # the kind's own parameters, see PARAMS for names and defaults
```
Durations and returns that may not end take the string "never".
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import time
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

NEVER = "never"


class ScenarioError(ValueError):
    """A scenario file or table that does not follow the schema."""


class ScenarioKind(StrEnum):
    SOS = "sos"
    FALL = "fall"
    BED_EXIT = "bed_exit"
    BREATHING_PAUSE = "breathing_pause"
    APNEA_NIGHT = "apnea_night"
    BRADYCARDIA = "bradycardia"
    TACHYCARDIA = "tachycardia"
    FAST_BREATHING = "fast_breathing"
    SLOW_BREATHING = "slow_breathing"
    LOW_SPO2 = "low_spo2"
    IMMOBILE = "immobile"
    VITALS_GONE = "vitals_gone"
    BAND_REMOVED = "band_removed"
    LOW_BATTERY = "low_battery"
    DEVICE_OFFLINE = "device_offline"
    CLOCK_SKEW = "clock_skew"
    DUPLICATES = "duplicates"
    OUT_OF_ORDER = "out_of_order"
    MALFORMED = "malformed"


class Role(StrEnum):
    """Which of a resident's two devices a scenario concerns."""

    MATTRESS = "mattress"
    WRISTBAND = "wristband"


_DEVICE = Role.MATTRESS.value
PARAMS: Mapping[ScenarioKind, Mapping[str, Any]] = MappingProxyType(
    {
        ScenarioKind.SOS: {"cancel_after_s": NEVER},
        ScenarioKind.FALL: {"return_after_s": 600, "walk_s": 90, "conf": 0.92},
        ScenarioKind.BED_EXIT: {"return_after_s": 600},
        ScenarioKind.BREATHING_PAUSE: {"duration_s": 40},
        ScenarioKind.APNEA_NIGHT: {"per_hour": 25.0, "min_s": 10, "max_s": 40, "duration_s": NEVER},
        ScenarioKind.BRADYCARDIA: {"hr_bpm": 36, "duration_s": 900, "ramp_s": 60},
        ScenarioKind.TACHYCARDIA: {"hr_bpm": 140, "duration_s": 900, "ramp_s": 60},
        ScenarioKind.FAST_BREATHING: {"rr_bpm": 28, "duration_s": 900, "ramp_s": 60},
        ScenarioKind.SLOW_BREATHING: {"rr_bpm": 7, "duration_s": 900, "ramp_s": 60},
        ScenarioKind.LOW_SPO2: {"spo2_pct": 89, "duration_s": 1800, "ramp_s": 60},
        ScenarioKind.IMMOBILE: {"duration_s": 3 * 3600},
        ScenarioKind.VITALS_GONE: {"duration_s": 300, "hr": "null"},
        ScenarioKind.BAND_REMOVED: {"duration_s": 3600},
        ScenarioKind.LOW_BATTERY: {"bat_pct": 15},
        ScenarioKind.DEVICE_OFFLINE: {"device": _DEVICE, "duration_s": 900},
        ScenarioKind.CLOCK_SKEW: {"device": _DEVICE, "skew_s": 600, "duration_s": NEVER},
        ScenarioKind.DUPLICATES: {"device": _DEVICE, "duration_s": 1800, "fraction": 0.2},
        ScenarioKind.OUT_OF_ORDER: {
            "device": _DEVICE,
            "duration_s": 1800,
            "fraction": 0.2,
            "max_delay_s": 20,
        },
        ScenarioKind.MALFORMED: {"device": _DEVICE, "duration_s": 1800, "count": 9},
    }
)
_MAY_NEVER = frozenset({"cancel_after_s", "return_after_s", "duration_s"})
_SIGNED = frozenset({"skew_s"})  # a device clock may be behind as well as ahead
_CHOICES: Mapping[str, frozenset[str]] = {
    "device": frozenset(Role),
    "hr": frozenset({"null", "zero"}),
}
_SPEC_KEYS = frozenset({"kind", "residents", "share", "nights", "at"})


@dataclass(frozen=True, slots=True)
class ScenarioSpec:
    """One `[[scenario]]` table: what happens, to whom, on which nights, when."""

    kind: ScenarioKind
    params: Mapping[str, Any]
    at: time | None = None
    residents: frozenset[str] | None = None
    share: float | None = None
    nights: frozenset[int] | None = None

    def applies(self, resident_id: str, resident_index: int, night: int, seed: int) -> bool:
        if self.residents is not None and resident_id not in self.residents:
            return False
        if self.nights is not None and night not in self.nights:
            return False
        if self.share is None:
            return True
        # Stable per resident and spec, so a share picks the same residents every night.
        salt = sum(ord(c) for c in self.kind) * 7919
        pick = np.random.default_rng([seed, resident_index, salt, 7]).random()
        return bool(pick < self.share)

    def param(self, name: str) -> Any:
        """A parameter, with "never" as None."""
        value = self.params[name]
        return None if value == NEVER else value


def scenario(kind: ScenarioKind | str, **fields: Any) -> ScenarioSpec:
    """Build a spec in code, with the same checks as a file: `scenario("sos", at="02:30")`."""
    return parse_spec({"kind": str(kind), **fields})


def load_scenarios(path: Path) -> tuple[ScenarioSpec, ...]:
    with path.open("rb") as f:
        doc = tomllib.load(f)
    return parse_scenarios(doc, where=str(path))


def parse_scenarios(doc: Mapping[str, Any], where: str = "scenarios") -> tuple[ScenarioSpec, ...]:
    unknown = set(doc) - {"scenario"}
    if unknown:
        raise ScenarioError(f"{where}: unknown top-level keys {sorted(unknown)}")
    tables = doc.get("scenario", [])
    if not isinstance(tables, list):
        raise ScenarioError(f"{where}: `scenario` must be an array of tables ([[scenario]])")
    specs = []
    for i, table in enumerate(tables):
        try:
            specs.append(parse_spec(table))
        except ScenarioError as exc:
            raise ScenarioError(f"{where}: scenario #{i + 1}: {exc}") from None
    return tuple(specs)


def parse_spec(table: Any) -> ScenarioSpec:
    if not isinstance(table, Mapping):
        raise ScenarioError("expected a table")
    try:
        kind = ScenarioKind(str(table.get("kind")))
    except ValueError:
        raise ScenarioError(
            f"kind: expected one of {', '.join(ScenarioKind)}, got {table.get('kind')!r}"
        ) from None
    defaults = PARAMS[kind]
    params = dict(defaults)
    for key, value in table.items():
        if key in _SPEC_KEYS:
            continue
        if key not in defaults:
            raise ScenarioError(f"{kind}: unknown parameter {key!r} (known: {sorted(defaults)})")
        params[key] = _check_param(key, value, defaults[key])
    return ScenarioSpec(
        kind=kind,
        params=MappingProxyType(params),
        at=_parse_at(table.get("at")),
        residents=_str_set(table.get("residents")),
        share=_share(table.get("share")),
        nights=_int_set(table.get("nights")),
    )


def _check_param(key: str, value: Any, default: Any) -> Any:
    if value == NEVER and key in _MAY_NEVER:
        return NEVER
    if key in _CHOICES:
        if value not in _CHOICES[key]:
            raise ScenarioError(f"{key}: expected one of {sorted(_CHOICES[key])}, got {value!r}")
        return value
    numeric = isinstance(default, int | float) or default == NEVER
    if numeric and isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0 and key not in _SIGNED:
            raise ScenarioError(f"{key}: must not be negative, got {value}")
        return value
    raise ScenarioError(f"{key}: expected a number, got {value!r}")


def _parse_at(value: Any) -> time | None:
    if value is None or isinstance(value, time):
        return value
    if isinstance(value, str):
        try:
            return time.fromisoformat(value)
        except ValueError:
            pass
    raise ScenarioError(f'at: expected a local time like "02:30", got {value!r}')


def _str_set(value: Any) -> frozenset[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ScenarioError("residents: expected a list of resident ids")
    return frozenset(value)


def _int_set(value: Any) -> frozenset[int] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(type(v) is int and v >= 0 for v in value):
        raise ScenarioError("nights: expected a list of night indices (0, 1, ...)")
    return frozenset(value)


def _share(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ScenarioError(f"share: expected a number in 0..1, got {value!r}")
    return float(value)
