"""Scripted inputs for detector tests: a resident, sample builders, a runner that collects."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from detectors.findings import Finding, FindingKind
from detectors.nights import NightSummary
from detectors.runner import DetectorRunner
from detectors.settings import DetectorSettings, ResidentConfig
from ingest.records import (
    DeviceEvent,
    DeviceId,
    DeviceKind,
    EventType,
    MattressSample,
    Record,
    ResidentId,
    WristbandSample,
    time_of,
)

RID = ResidentId("r-0001")
MAT = DeviceId("mat-0001")
BAND = DeviceId("band-0001")
# 2025-01-14 23:00 in Shanghai (UTC+8): inside the night window.
NIGHT_MS = int(datetime(2025, 1, 14, 15, 0, tzinfo=UTC).timestamp() * 1000)
DAY_MS = int(datetime(2025, 1, 14, 6, 0, tzinfo=UTC).timestamp() * 1000)  # 14:00 local


def config(settings: DetectorSettings | None = None) -> ResidentConfig:
    return ResidentConfig(
        resident_id=RID,
        timezone="Asia/Shanghai",
        devices={MAT: DeviceKind.MATTRESS, BAND: DeviceKind.WRISTBAND},
        settings=settings or DetectorSettings(),
    )


def mat(
    ts_ms: int,
    *,
    hr: float | None = 62,
    rr: float | None = 14,
    move: int = 1,
    occ: int = 1,
    sq: int = 90,
) -> MattressSample:
    return MattressSample(MAT, RID, ts_ms, hr, rr, move, occ, sq)


def band(
    ts_ms: int,
    *,
    hr: float | None = 70,
    spo2: float | None = 97,
    bat: int | None = 80,
    worn: int | None = 1,
) -> WristbandSample:
    return WristbandSample(BAND, RID, ts_ms, hr, spo2, bat, worn, 100)


def event(ts_ms: int, kind: EventType) -> DeviceEvent:
    return DeviceEvent(BAND, RID, ts_ms, kind)


when = time_of  # a record's device time


def seconds(start_ms: int, n: int, **values: object) -> list[MattressSample]:
    """`n` pad samples one second apart from `start_ms`."""
    return [mat(start_ms + 1000 * i, **values) for i in range(n)]  # type: ignore[arg-type]


@dataclass
class Harness:
    runner: DetectorRunner = field(init=False)
    findings: list[Finding] = field(default_factory=list)
    derived: list[MattressSample] = field(default_factory=list)
    summaries: list[NightSummary] = field(default_factory=list)
    settings: DetectorSettings | None = None

    def __post_init__(self) -> None:
        self.runner = DetectorRunner(
            residents={RID: config(self.settings)},
            on_finding=self.findings.append,
            on_derived=self.derived.extend,
            on_summary=self.summaries.append,
        )

    def feed(self, records: Iterable[Record], received_at_ms: int | None = None) -> None:
        for record in records:
            ts = when(record)
            self.runner.accept([record], received_at_ms if received_at_ms is not None else ts)

    def of(self, kind: FindingKind, *, cleared: bool | None = False) -> list[Finding]:
        return [
            f for f in self.findings if f.kind is kind and (cleared is None or f.cleared == cleared)
        ]

    def kinds(self) -> Sequence[FindingKind]:
        return [f.kind for f in self.findings if not f.cleared]
