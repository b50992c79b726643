"""The site file's [alerts] table: escalation ladders, quiet hours, inhibition, retries."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from typing import Any

from detectors.findings import FindingKind, Severity

ROLES = ("care_staff", "family_doctor", "family", "emergency")
NEVER_MUTED = frozenset({FindingKind.SOS, FindingKind.FALL})
VITALS = (
    FindingKind.VITALS_ABSENT,
    FindingKind.BREATHING_PAUSE,
    FindingKind.HEART_RATE,
    FindingKind.BREATHING_RATE,
    FindingKind.SPO2,
    FindingKind.IMMOBILE,
)


@dataclass(frozen=True, slots=True)
class Step:
    """One rung of a ladder: who is told, and how long after the alert opened."""

    after_s: int
    roles: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Ladder:
    steps: tuple[Step, ...]
    remind_every_s: int  # 0: no reminders; otherwise everyone told so far, until ack


@dataclass(frozen=True, slots=True)
class QuietHours:
    """Local times (the resident's zone) during which low-severity alerts are held."""

    start: time
    end: time

    def contains(self, t: time) -> bool:
        if self.start <= self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end


@dataclass(frozen=True, slots=True)
class InhibitRule:
    """An open alert of a source kind suppresses new alerts of the target kinds."""

    source: frozenset[FindingKind]
    target: frozenset[FindingKind]
    same_device: bool = False  # also require the same device (a silent pad mutes its own vitals)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts_per_channel: int = 3
    backoff_base_s: float = 2.0
    backoff_max_s: float = 60.0


@dataclass(frozen=True, slots=True)
class AlertConfig:
    ladders: Mapping[Severity, Ladder]
    quiet_hours: QuietHours | None
    inhibit: tuple[InhibitRule, ...]
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # Local time of the family doctors' daily digest: after the night summaries, which close at
    # the detectors' summary_to_local (12:00), so the digest covers the night just ended.
    digest_at: time = time(12, 30)
    digest_roles: tuple[str, ...] = ("family_doctor",)  # who gets it; () turns digests off

    def ladder(self, severity: Severity) -> Ladder:
        return self.ladders[severity]


DEFAULT_LADDERS: Mapping[Severity, Ladder] = {
    Severity.CRITICAL: Ladder(
        (
            Step(0, ("care_staff", "family")),
            Step(120, ("family_doctor",)),
            Step(300, ("emergency",)),
        ),
        remind_every_s=120,
    ),
    Severity.HIGH: Ladder((Step(0, ("care_staff",)), Step(600, ("family_doctor",))), 600),
    Severity.MEDIUM: Ladder((Step(0, ("care_staff",)),), remind_every_s=3600),
    # Low severity goes to the family doctor's daily digest (digest_roles), not one by one;
    # a site can still page for it with its own [alerts.ladders.low].
    Severity.LOW: Ladder((Step(0, ()),), remind_every_s=0),
}
DEFAULT_QUIET = QuietHours(time(22, 0), time(7, 0))
DEFAULT_DIGEST_AT = "12:30"
DEFAULT_INHIBIT = (
    InhibitRule(NEVER_MUTED, frozenset({FindingKind.BED_EXIT_NO_RETURN})),
    InhibitRule(frozenset({FindingKind.DEVICE_SILENT}), frozenset(VITALS), same_device=True),
)


def default_config() -> AlertConfig:
    return AlertConfig(dict(DEFAULT_LADDERS), DEFAULT_QUIET, DEFAULT_INHIBIT)


def parse_alert_config(raw: Mapping[str, Any]) -> AlertConfig:
    """Check the [alerts] table strictly; ValueError names the key and what was expected."""
    _keys(
        "alerts",
        raw,
        {"ladders", "quiet_hours", "inhibit", "retry", "digest_at", "digest_roles"},
    )
    ladders = dict(DEFAULT_LADDERS)
    raw_ladders = _table("alerts.ladders", raw.get("ladders", {}))
    for name, value in raw_ladders.items():
        try:
            severity = Severity(name)
        except ValueError:
            raise ValueError(
                f"alerts.ladders.{name}: not a severity (critical, high, medium, low)"
            ) from None
        ladders[severity] = _ladder(f"alerts.ladders.{name}", value)
    quiet: QuietHours | None = DEFAULT_QUIET
    if "quiet_hours" in raw:
        quiet = _quiet(raw["quiet_hours"])
    inhibit: tuple[InhibitRule, ...] = DEFAULT_INHIBIT
    if "inhibit" in raw:
        rules = raw["inhibit"]
        if not isinstance(rules, list):
            raise ValueError("alerts.inhibit: expected an array of tables ([[alerts.inhibit]])")
        inhibit = tuple(_inhibit(f"alerts.inhibit[{i}]", r) for i, r in enumerate(rules))
    retry = _retry(raw.get("retry", {}))
    digest_at = _clock("alerts.digest_at", raw.get("digest_at", DEFAULT_DIGEST_AT))
    digest_roles = _digest_roles(raw.get("digest_roles", ["family_doctor"]))
    return AlertConfig(ladders, quiet, inhibit, retry, digest_at, digest_roles)


def _keys(where: str, raw: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = set(raw) - allowed
    if unknown:
        raise ValueError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}; known: "
            + ", ".join(sorted(allowed))
        )


def _table(where: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: expected a table")
    return value


def _seconds(where: str, value: Any, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        raise ValueError(f"{where}: expected whole seconds in 0..{high}, got {value!r}")
    return value


def _ladder(where: str, value: Any) -> Ladder:
    raw = _table(where, value)
    _keys(where, raw, {"steps", "remind_every_s"})
    steps_raw = raw.get("steps")
    if not isinstance(steps_raw, list) or not steps_raw:
        raise ValueError(f"{where}.steps: expected a non-empty array of {{ after_s, roles }}")
    steps = tuple(_step(f"{where}.steps[{i}]", s) for i, s in enumerate(steps_raw))
    if steps[0].after_s != 0:
        raise ValueError(f"{where}.steps[0].after_s: the first step must be at 0 s")
    for i in range(1, len(steps)):
        if steps[i].after_s <= steps[i - 1].after_s:
            raise ValueError(f"{where}.steps[{i}].after_s: must be later than the step before")
    remind = _seconds(f"{where}.remind_every_s", raw.get("remind_every_s", 0), 7 * 86_400)
    if 0 < remind < 30:
        raise ValueError(f"{where}.remind_every_s: 0 (none) or at least 30 s, got {remind}")
    return Ladder(steps, remind)


def _step(where: str, value: Any) -> Step:
    raw = _table(where, value)
    _keys(where, raw, {"after_s", "roles"})
    after = _seconds(f"{where}.after_s", raw.get("after_s"), 7 * 86_400)
    roles = raw.get("roles")
    if not isinstance(roles, list) or not roles or not all(r in ROLES for r in roles):
        raise ValueError(f"{where}.roles: expected a non-empty list of {', '.join(ROLES)}")
    return Step(after, tuple(roles))


def _clock(where: str, value: Any) -> time:
    if not isinstance(value, str) or not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
        raise ValueError(f"{where}: expected a local time HH:MM, got {value!r}")
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def _quiet(value: Any) -> QuietHours | None:
    raw = _table("alerts.quiet_hours", value)
    _keys("alerts.quiet_hours", raw, {"enabled", "start", "end"})
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ValueError("alerts.quiet_hours.enabled: expected true or false")
    start = _clock("alerts.quiet_hours.start", raw.get("start", "22:00"))
    end = _clock("alerts.quiet_hours.end", raw.get("end", "07:00"))
    if start == end:
        raise ValueError("alerts.quiet_hours: start and end must differ")
    return QuietHours(start, end) if enabled else None


def _kinds(where: str, value: Any) -> frozenset[FindingKind]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"{where}: expected a non-empty list of finding kinds")
    try:
        return frozenset(FindingKind(v) for v in value)
    except ValueError:
        known = ", ".join(k.value for k in FindingKind)
        raise ValueError(f"{where}: {value!r} names an unknown kind; known: {known}") from None


def _inhibit(where: str, value: Any) -> InhibitRule:
    raw = _table(where, value)
    _keys(where, raw, {"source", "target", "same_device"})
    source = _kinds(f"{where}.source", raw.get("source"))
    target = _kinds(f"{where}.target", raw.get("target"))
    muted = target & NEVER_MUTED
    if muted:
        raise ValueError(f"{where}.target: {', '.join(sorted(muted))} are never inhibited")
    same_device = raw.get("same_device", False)
    if not isinstance(same_device, bool):
        raise ValueError(f"{where}.same_device: expected true or false")
    return InhibitRule(source, target, same_device)


def _retry(value: Any) -> RetryPolicy:
    raw = _table("alerts.retry", value)
    _keys("alerts.retry", raw, {"attempts_per_channel", "backoff_base_s", "backoff_max_s"})
    attempts = raw.get("attempts_per_channel", 3)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= 20:
        raise ValueError("alerts.retry.attempts_per_channel: expected a whole number in 1..20")
    base = _positive("alerts.retry.backoff_base_s", raw.get("backoff_base_s", 2.0))
    cap = _positive("alerts.retry.backoff_max_s", raw.get("backoff_max_s", 60.0))
    if cap < base:
        raise ValueError("alerts.retry.backoff_max_s: must be at least backoff_base_s")
    return RetryPolicy(attempts, base, cap)


def _positive(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600:
        raise ValueError(f"{where}: expected seconds in (0, 3600], got {value!r}")
    return float(value)


def _digest_roles(value: Any) -> tuple[str, ...]:
    # An empty list is allowed: it turns the daily digest off.
    if not isinstance(value, list) or not all(isinstance(r, str) and r in ROLES for r in value):
        raise ValueError(
            f"alerts.digest_roles: expected a list of {', '.join(ROLES)}, got {value!r}"
        )
    if len(set(value)) != len(value):
        raise ValueError(f"alerts.digest_roles: a role is named twice in {value!r}")
    return tuple(value)
