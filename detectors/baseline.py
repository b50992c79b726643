"""Findings from night summaries: apnea_index, and sleep_change against past nights."""

from __future__ import annotations

import math

from detectors.findings import Finding, FindingKind, Severity
from detectors.nights import METRIC_NAMES, NightSummary
from detectors.settings import DetectorSettings

# Below this spread a metric is not "far" just because past nights were identical.
MIN_SCALE = {
    "time_in_bed_s": 1800.0,
    "exits": 1.0,
    "restlessness_pct": 2.0,
    "hr_mean": 3.0,
    "rr_mean": 1.0,
}


def judge_night(
    summary: NightSummary, history: list[list[float | None]], at_ms: int, s: DetectorSettings
) -> list[Finding]:
    """Findings about a closed night; the night is then added to `history` (kept bounded)."""
    out: list[Finding] = []
    rid = summary.resident_id
    if summary.time_in_bed_s * 1000 >= s.apnea_min_in_bed_s * 1000 and (
        summary.pauses_per_h >= s.apnea_index_per_h
    ):
        out.append(
            Finding(
                rid,
                FindingKind.APNEA_INDEX,
                Severity.LOW,
                at_ms,
                summary.from_ms,
                evidence={
                    "night": summary.night.isoformat(),
                    "pauses": summary.pauses,
                    "pauses_per_h": summary.pauses_per_h,
                    "time_in_bed_s": summary.time_in_bed_s,
                    "source": summary.pause_source,
                },
            )
        )
    far = (
        robust_z(summary.metrics(), history, s) if len(history) >= s.sleep_change_min_nights else {}
    )
    if far:
        out.append(
            Finding(
                rid,
                FindingKind.SLEEP_CHANGE,
                Severity.LOW,
                at_ms,
                summary.from_ms,
                evidence={
                    "night": summary.night.isoformat(),
                    "nights": len(history),
                    "metrics": far,
                },
            )
        )
    if summary.time_in_bed_s > 0:
        history.append(summary.metrics())
        del history[: max(0, len(history) - s.sleep_change_nights)]
    return out


def robust_z(
    values: list[float | None], history: list[list[float | None]], s: DetectorSettings
) -> dict[str, dict[str, float]]:
    """Metrics whose robust z (median and scaled MAD of past nights) reaches the threshold."""
    far: dict[str, dict[str, float]] = {}
    for i, name in enumerate(METRIC_NAMES):
        value = values[i]
        past = sorted(v for row in history if (v := row[i]) is not None and math.isfinite(v))
        if value is None or len(past) < s.sleep_change_min_nights:
            continue
        median = _median(past)
        mad = _median(sorted(abs(v - median) for v in past))
        scale = max(1.4826 * mad, MIN_SCALE[name])
        z = (value - median) / scale
        if abs(z) >= s.sleep_change_z:
            far[name] = {"value": value, "median": median, "mad": mad, "z": round(z, 2)}
    return far


def _median(sorted_values: list[float]) -> float:
    n = len(sorted_values)
    mid = n // 2
    return sorted_values[mid] if n % 2 else (sorted_values[mid - 1] + sorted_values[mid]) / 2
