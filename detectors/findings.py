"""What detectors conclude: findings, their kinds and severities."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ingest.records import DeviceId, EpochMs, ResidentId


class Severity(StrEnum):
    """After IEC 60601-1-8 high / medium / low priority, with critical above high."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Severity.CRITICAL: 0, Severity.HIGH: 1, Severity.MEDIUM: 2, Severity.LOW: 3}


class FindingKind(StrEnum):
    SOS = "sos"
    FALL = "fall"
    VITALS_ABSENT = "vitals_absent"
    BED_EXIT_NO_RETURN = "bed_exit_no_return"
    BREATHING_PAUSE = "breathing_pause"
    APNEA_INDEX = "apnea_index"
    HEART_RATE = "heart_rate"
    BREATHING_RATE = "breathing_rate"
    SPO2 = "spo2"
    IMMOBILE = "immobile"
    SLEEP_CHANGE = "sleep_change"
    DEVICE_SILENT = "device_silent"
    WRISTBAND_REMOVED = "wristband_removed"
    LOW_BATTERY = "low_battery"


@dataclass(frozen=True, slots=True)
class Finding:
    """A condition that began (or, with `cleared`, ended) for one resident.

    `at_ms` is the device time at which the detector decided; `started_ms` the device time at
    which the condition began (the start of the window that triggered it). `evidence` holds the
    values and window behind the decision, JSON-serialisable. `late`: found in data that arrived
    after newer data of the same device (a store-and-forward backlog), so it is about the past.
    """

    resident_id: ResidentId
    kind: FindingKind
    severity: Severity
    at_ms: EpochMs
    started_ms: EpochMs
    cleared: bool = False
    device_id: DeviceId | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)
    late: bool = False
