"""Findings scored against ground truth: sensitivity, false alarms per bed-night, delay."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from detectors.findings import Finding, FindingKind, Severity
from detectors.settings import DetectorSettings

TOLERANCE_MS = 60_000  # a finding may start this much before the scenario's recorded start
GRACE_MS = 15_000  # "within the window plus 15 s"
SUMMARY_WINDOW_MS = 24 * 3600 * 1000  # night-summary findings come when the night closes
ALARM_SEVERITIES = frozenset({Severity.CRITICAL.value, Severity.HIGH.value})


def finding_to_json(f: Finding) -> dict[str, Any]:
    """One line of a findings JSONL file."""
    return {
        "resident_id": f.resident_id,
        "kind": f.kind.value,
        "severity": f.severity.value,
        "at_ms": f.at_ms,
        "started_ms": f.started_ms,
        "cleared": f.cleared,
        "device_id": f.device_id,
        "evidence": dict(f.evidence),
        "late": f.late,
    }


def window_ms(kind: str, params: Mapping[str, Any], s: DetectorSettings) -> float:
    """The persistence window of `kind` as the scenario exercises it."""
    if kind == FindingKind.HEART_RATE:
        bpm = float(params.get("hr_bpm", 0))
        slow = s.hr_low_bpm < bpm < s.hr_high_bpm
        return 1000.0 * (s.hr_elevated_window_s if slow else s.hr_high_window_s)
    if kind == FindingKind.BREATHING_RATE:
        rate = float(params.get("rr_bpm", 0))
        slow = s.rr_low_per_min < rate < s.rr_high_per_min
        return 1000.0 * (s.rr_elevated_window_s if slow else s.rr_high_window_s)
    fixed = {
        FindingKind.VITALS_ABSENT: s.vitals_absent_window_s,
        FindingKind.BED_EXIT_NO_RETURN: s.exit_return_window_s,
        FindingKind.BREATHING_PAUSE: s.pause_alarm_s,
        FindingKind.IMMOBILE: s.immobile_window_s,
        FindingKind.SPO2: 60.0,  # two band readings in a row (the simulator's band: every 30 s)
        FindingKind.DEVICE_SILENT: s.mattress_silent_s
        if params.get("device", "mattress") == "mattress"
        else s.wristband_silent_s,
    }
    if kind in (FindingKind.APNEA_INDEX, FindingKind.SLEEP_CHANGE):
        return SUMMARY_WINDOW_MS
    return 1000 * fixed.get(FindingKind(kind), 0.0)


@dataclass(slots=True)
class KindScore:
    kind: str
    expected: int = 0
    detected: int = 0
    false_alarms: int = 0  # high or critical findings of this kind not matched to truth
    unmatched: int = 0  # all findings of this kind not matched (any severity)
    delays_s: list[float] = field(default_factory=list)
    limit_s: float = 0.0  # the largest window + 15 s among this kind's scenarios

    @property
    def sensitivity(self) -> float | None:
        return self.detected / self.expected if self.expected else None


@dataclass(slots=True)
class Report:
    nights: int
    kinds: dict[str, KindScore]
    missed: list[dict[str, Any]]
    late: int = 0  # findings in late data: stored and in the digest, never paged, not scored

    @property
    def false_alarms(self) -> int:
        return sum(k.false_alarms for k in self.kinds.values())

    def table(self) -> str:
        head = (
            f"{'kind':<20} {'expected':>8} {'detected':>8} {'sens':>7} {'false':>6} "
            f"{'false/night':>11} {'delay med s':>11} {'delay max s':>11} {'limit s':>8}"
        )
        lines = [head, "-" * len(head)]
        for name in sorted(self.kinds):
            k = self.kinds[name]
            sens = "-" if k.sensitivity is None else f"{100 * k.sensitivity:.1f}%"
            med = f"{statistics.median(k.delays_s):.0f}" if k.delays_s else "-"
            top = f"{max(k.delays_s):.0f}" if k.delays_s else "-"
            limit = f"{k.limit_s:.0f}" if k.expected else "-"
            lines.append(
                f"{name:<20} {k.expected:>8} {k.detected:>8} {sens:>7} "
                f"{k.false_alarms:>6} {k.false_alarms / max(self.nights, 1):>11.3f} "
                f"{med:>11} {top:>11} {limit:>8}"
            )
        lines.append(
            f"bed-nights: {self.nights}; false alarms (high/critical): "
            f"{self.false_alarms} = {self.false_alarms / max(self.nights, 1):.3f} per bed-night;"
            f" findings in late data (not paged, not scored): {self.late}"
        )
        return "\n".join(lines)


def score(
    truth: Iterable[Mapping[str, Any]],
    findings: Iterable[Mapping[str, Any]],
    settings: DetectorSettings | None = None,
) -> Report:
    """Match findings to the scenarios that expect them (see the module docstring)."""
    s = settings or DetectorSettings()
    nights = [t for t in truth if t.get("type") == "night"]
    scenarios = [t for t in truth if t.get("type") == "scenario"]
    ends = _night_ends(nights)
    by_key: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    late = 0
    for f in findings:
        if f.get("late"):
            late += not f.get("cleared")  # a page is what counts, and these never page
        elif not f.get("cleared"):
            by_key.setdefault((f["resident_id"], f["kind"]), []).append(f)
    kinds = {k.value: KindScore(k.value) for k in FindingKind}
    matched: set[int] = set()
    missed: list[dict[str, Any]] = []
    for sc in scenarios:
        for kind in sc.get("expect", []):
            _match(
                sc, kind, by_key, ends, s, kinds.setdefault(kind, KindScore(kind)), matched, missed
            )
    for found in by_key.values():
        for f in found:
            if id(f) not in matched:
                ks = kinds.setdefault(f["kind"], KindScore(f["kind"]))
                ks.unmatched += 1
                ks.false_alarms += f["severity"] in ALARM_SEVERITIES
    return Report(nights=len(nights), kinds=kinds, missed=missed, late=late)


def _match(
    sc: Mapping[str, Any],
    kind: str,
    by_key: Mapping[tuple[str, str], list[Mapping[str, Any]]],
    ends: Mapping[str, list[tuple[int, int]]],
    s: DetectorSettings,
    ks: KindScore,
    matched: set[int],
    missed: list[dict[str, Any]],
) -> None:
    start = int(sc["start_ms"])
    end = sc.get("end_ms")
    if end is None:
        end = _night_end(ends.get(sc["resident_id"], []), start)
    window = window_ms(kind, sc.get("params", {}), s)
    lo, hi = start - TOLERANCE_MS, int(end) + window + GRACE_MS
    ks.expected += 1
    ks.limit_s = max(ks.limit_s, (window + GRACE_MS) / 1000)
    hits = [
        f
        for f in by_key.get((sc["resident_id"], kind), [])
        if lo <= f["started_ms"] <= hi or lo <= f["at_ms"] <= hi
    ]
    if not hits:
        missed.append(
            {
                "kind": kind,
                "scenario": sc.get("scenario"),
                "resident_id": sc["resident_id"],
                "start_ms": start,
            }
        )
        return
    ks.detected += 1
    ks.delays_s.append((min(f["at_ms"] for f in hits) - start) / 1000)
    matched.update(id(f) for f in hits)


def _night_ends(nights: list[Mapping[str, Any]]) -> dict[str, list[tuple[int, int]]]:
    out: dict[str, list[tuple[int, int]]] = {}
    for n in nights:
        out.setdefault(n["resident_id"], []).append((int(n["start_ms"]), int(n["end_ms"])))
    return out


def _night_end(spans: list[tuple[int, int]], at_ms: int) -> int:
    for start, end in spans:
        if start <= at_ms < end:
            return end
    return at_ms
