"""Ground truth of a run: what happened to whom and when, one JSON object per line."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import orjson


class Expect(StrEnum):
    """Finding kinds a correct detector raises; the vocabulary of `detectors.findings`."""

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
class NightTruth:
    """One resident-night: the simulated window and when the resident lay down and got up."""

    resident_id: str
    mattress_id: str
    wristband_id: str
    start_ms: int
    end_ms: int
    bedtime_ms: int
    rise_ms: int

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "night",
            "resident_id": self.resident_id,
            "devices": {"mattress": self.mattress_id, "wristband": self.wristband_id},
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "bedtime_ms": self.bedtime_ms,
            "rise_ms": self.rise_ms,
        }


@dataclass(frozen=True, slots=True)
class ScenarioTruth:
    """One scripted occurrence; times are device time when the condition truly began and ended."""

    resident_id: str
    device_id: str
    scenario: str
    start_ms: int
    end_ms: int | None
    expect: tuple[Expect, ...]
    params: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "scenario",
            "resident_id": self.resident_id,
            "device_id": self.device_id,
            "scenario": self.scenario,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "expect": [str(e) for e in self.expect],
            "params": dict(self.params),
        }


Truth = NightTruth | ScenarioTruth


def dumps(entry: Truth) -> bytes:
    return orjson.dumps(entry.to_json()) + b"\n"


class TruthWriter:
    """Appends truth lines to a JSONL file as a run produces them (flushed on close)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: IO[bytes] = path.open("wb")
        self.lines = 0

    def write(self, entries: Iterable[Truth]) -> None:
        for entry in entries:
            self._file.write(dumps(entry))
            self.lines += 1

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> TruthWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def write_truth(path: Path, entries: Iterable[Truth]) -> int:
    """Write a whole ground-truth file; returns the number of lines."""
    with TruthWriter(path) as writer:
        writer.write(entries)
        return writer.lines


def read_truth(path: Path) -> Iterator[dict[str, Any]]:
    """The lines of a ground-truth file as plain dicts (the shape scorers consume)."""
    with path.open("rb") as f:
        for line in f:
            if line.strip():
                obj: dict[str, Any] = orjson.loads(line)
                yield obj
