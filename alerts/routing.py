"""Pure routing decisions: who a ladder step reaches, when next to act, quiet hours, backoff."""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from alerts.config import AlertConfig, InhibitRule, Ladder, QuietHours, RetryPolicy
from alerts.model import Contact, ContactId, Resident
from detectors.findings import FindingKind, Severity


def on_ladder(ladder: Ladder, tier: int) -> int:
    """The step an alert told up to `tier` stands on now: the last one if the ladder was
    shortened under it."""
    return min(tier, len(ladder.steps) - 1)


def step_contacts(
    ladder: Ladder, tier: int, resident: Resident, contacts: Mapping[ContactId, Contact]
) -> list[Contact]:
    """The resident's contacts whose role is on step `tier`, in care-team order."""
    roles = ladder.steps[tier].roles
    return [contacts[c] for c in resident.team if c in contacts and contacts[c].role in roles]


def reached_contacts(
    ladder: Ladder, tier: int, resident: Resident, contacts: Mapping[ContactId, Contact]
) -> list[Contact]:
    """Everyone told by steps 0..tier (the audience of a reminder), each once."""
    seen: dict[ContactId, Contact] = {}
    for t in range(tier + 1):
        for c in step_contacts(ladder, t, resident, contacts):
            seen.setdefault(c.id, c)
    return list(seen.values())


def next_action_ms(ladder: Ladder, opened_ms: int, tier: int, last_notice_ms: int) -> int | None:
    """The earlier of the next escalation and the next reminder; None when neither is due."""
    candidates: list[int] = []
    if tier + 1 < len(ladder.steps):
        candidates.append(opened_ms + ladder.steps[tier + 1].after_s * 1000)
    if ladder.remind_every_s:
        candidates.append(last_notice_ms + ladder.remind_every_s * 1000)
    return min(candidates) if candidates else None


def escalation_due(ladder: Ladder, opened_ms: int, tier: int, now_ms: int) -> bool:
    return (
        tier + 1 < len(ladder.steps) and now_ms >= opened_ms + ladder.steps[tier + 1].after_s * 1000
    )


def reminder_due(ladder: Ladder, last_notice_ms: int, now_ms: int) -> bool:
    return bool(ladder.remind_every_s) and now_ms >= last_notice_ms + ladder.remind_every_s * 1000


def quiet_until_ms(
    config: AlertConfig, severity: Severity, timezone: str, now_ms: int
) -> int | None:
    """When a low-severity alert raised now may be sent, if quiet hours hold it; else None."""
    quiet = config.quiet_hours
    if quiet is None or severity is not Severity.LOW:
        return None
    local = datetime.fromtimestamp(now_ms / 1000, UTC).astimezone(ZoneInfo(timezone))
    if not quiet.contains(local.time()):
        return None
    return _next_end(quiet, local)


def _next_end(quiet: QuietHours, local: datetime) -> int:
    end = local.replace(hour=quiet.end.hour, minute=quiet.end.minute, second=0, microsecond=0)
    if end <= local:
        end += timedelta(days=1)
    return int(end.timestamp() * 1000)


def inhibiting_rules(rules: tuple[InhibitRule, ...], kind: FindingKind) -> list[InhibitRule]:
    """The rules that may suppress a finding of this kind (never an SOS or a fall)."""
    return [r for r in rules if kind in r.target]


def backoff_s(policy: RetryPolicy, attempt: int, rng: random.Random) -> float:
    """Exponential backoff with equal jitter: half fixed, half random, capped."""
    delay = min(policy.backoff_max_s, policy.backoff_base_s * 2 ** (attempt - 1))
    return float(delay / 2 + rng.random() * delay / 2)
