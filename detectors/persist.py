"""Persistence and hysteresis: when a per-sample score becomes a decision that fires or clears."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from detectors.findings import Severity

# What a sample says about a condition (the score); `Episode.update` makes the decision.
ON = 1  # the condition holds in this sample
BAND = 0  # between the firing and the clearing limit (hysteresis): neither
NORMAL = -1  # clearly normal: counts towards clearing
UNKNOWN = None  # not measurable (artefact, empty bed): changes nothing but the gap clock

# What `Episode.update` decided.
NONE = 0
FIRE = 1
CLEAR = 2


@dataclass(slots=True)
class Episode:
    """One condition on one source: a run of ON samples, whether it fired, how it is clearing.

    A run survives interruptions (samples not ON, or lost samples) up to `tolerance_ms`; it
    fires once it spans `window_ms`; a fired episode clears after `clear_ms` of NORMAL samples.
    The run's values are summarised (n, min, max, sum) as evidence.
    """

    start_ms: int = -1  # first ON sample of the run; -1: no run
    last_on_ms: int = 0
    fired: bool = False
    normal_since_ms: int = -1  # first of the current NORMAL samples once fired; -1: none
    n: int = 0
    vmin: float = 0.0
    vmax: float = 0.0
    vsum: float = 0.0

    def update(
        self,
        ts_ms: int,
        score: int | None,
        value: float,
        window_ms: float,
        tolerance_ms: float,
        clear_ms: float,
    ) -> int:
        """Feed one sample's score (ON/BAND/NORMAL/UNKNOWN); returns NONE, FIRE or CLEAR."""
        if score == ON:
            if self.start_ms < 0 or (not self.fired and ts_ms - self.last_on_ms > tolerance_ms):
                self._begin(ts_ms, value)
            elif not math.isnan(value):  # NaN: a sample without a value worth summarising
                self._add(value)
            self.last_on_ms = ts_ms
            self.normal_since_ms = -1
            if not self.fired and ts_ms - self.start_ms >= window_ms:
                self.fired = True
                return FIRE
            return NONE
        if self.fired:
            if score != NORMAL:
                if score == BAND:
                    self.normal_since_ms = -1
                return NONE
            if self.normal_since_ms < 0:
                self.normal_since_ms = ts_ms
            if ts_ms - self.normal_since_ms >= clear_ms:
                self.reset()
                return CLEAR
            return NONE
        if self.start_ms >= 0 and ts_ms - self.last_on_ms > tolerance_ms:
            self.start_ms = -1
        return NONE

    def _begin(self, ts_ms: int, value: float) -> None:
        self.start_ms = ts_ms
        self.n = 0
        self.vsum = 0.0
        self.vmin = float("inf")
        self.vmax = float("-inf")
        if not math.isnan(value):
            self._add(value)

    def _add(self, value: float) -> None:
        self.n += 1
        self.vsum += value
        self.vmin = min(self.vmin, value)
        self.vmax = max(self.vmax, value)

    def reset(self) -> None:
        self.start_ms = -1
        self.fired = False
        self.normal_since_ms = -1
        self.n = 0

    def drop_pending(self) -> None:
        """Forget a run that has not fired (its source went silent: the run is no evidence)."""
        if not self.fired:
            self.start_ms = -1

    def evidence(self, ts_ms: int, window_ms: float, **extra: Any) -> dict[str, Any]:
        ev: dict[str, Any] = {
            "window_s": window_ms / 1000,
            "from_ms": self.start_ms,
            "to_ms": ts_ms,
            "samples": self.n,
        }
        if self.n:
            ev.update(
                min=round(self.vmin, 2), max=round(self.vmax, 2), mean=round(self.vsum / self.n, 2)
            )
        ev.update(extra)
        return ev


@dataclass(slots=True)
class Reported:
    """What one resident-level finding kind last told alerts: its severity, or nothing open.

    Several sources and levels feed one kind (heart rate from pad and band, high and medium):
    a finding is emitted when the highest active severity rises, a clear when none is left.
    """

    severity: str = ""  # "" while nothing is open
    started_ms: int = 0

    def raise_to(self, severity: Severity, started_ms: int) -> bool:
        """True when `severity` is above what is open (so a finding should be emitted)."""
        if self.severity and Severity(self.severity).rank <= severity.rank:
            return False
        if not self.severity:
            self.started_ms = started_ms
        self.severity = severity.value
        return True

    def settle(self, still_active: Severity | None) -> bool:
        """After a source cleared: True when nothing remains active (emit the clear)."""
        if not self.severity or still_active is not None:
            return False
        self.severity = ""
        return True
