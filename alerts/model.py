"""Value types of the alert engine: ids, states, alerts, contacts and routing facts."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import NewType

from detectors.findings import FindingKind, Severity
from detectors.settings import DetectorSettings
from ingest.records import ResidentId

# Silent this long, a device counts as offline: the device_silent defaults (docs/design.md).
_SILENT = DetectorSettings()
OFFLINE_AFTER_S = {"mattress": _SILENT.mattress_silent_s, "wristband": _SILENT.wristband_silent_s}

AlertId = NewType("AlertId", int)
ContactId = NewType("ContactId", str)
NotificationId = NewType("NotificationId", int)
FeedId = NewType("FeedId", str)


class AlertState(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Result(StrEnum):
    """What became of one delivery attempt."""

    PENDING = "pending"
    SENDING = "sending"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Reason(StrEnum):
    """Why a notification is (re)sent: the notification log's own words."""

    OPENED = "opened"
    RELEASED = "released after quiet hours"
    ESCALATED = "escalated: no ack in time"
    ESCALATED_UNREACHED = "escalated: nobody reached"
    SEVERITY_RAISED = "severity raised"
    REMINDER = "reminder: not acknowledged"
    RETRY = "retry"
    FALLBACK = "fallback: previous channel kept failing"
    INTERRUPTED = "resent: interrupted by a restart"
    DIGEST = "daily digest"
    FEED = "feed event"


class Event(StrEnum):
    """An alert's lifecycle events, as feeds publish them."""

    OPENED = "opened"
    ESCALATED = "escalated"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Via(StrEnum):
    API = "api"
    LINK = "link"
    SYSTEM = "system"
    CLI = "cli"
    CONSOLE = "console"


@dataclass(frozen=True, slots=True)
class Contact:
    id: ContactId
    name: str
    role: str
    language: str
    channels: tuple[str, ...]
    areas: tuple[str, ...] = ()  # a supervisor's areas ('*': all)


@dataclass(frozen=True, slots=True)
class Resident:
    id: ResidentId
    name: str
    room: str
    timezone: str
    team: tuple[ContactId, ...]  # care_team order
    area: str = ""  # 'community/committee/building'; '' when not placed


def area_within(area: str, areas: tuple[str, ...]) -> bool:
    """As the database's area_within(): one of the areas, beneath one, or '*' names them all."""
    return any(a in ("*", area) or area.startswith(a + "/") for a in areas)


@dataclass(frozen=True, slots=True)
class Alert:
    """The fields of an alert row that messages and decisions need."""

    id: AlertId
    resident_id: ResidentId
    kind: FindingKind
    severity: Severity
    state: AlertState
    opened_ms: int
    started_ms: int
    count: int
    device_id: str | None
    evidence: dict[str, object]
    tier: int


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A claimed outbox row, ready to hand to the notifier."""

    id: NotificationId
    alert_id: AlertId | None
    contact_id: ContactId
    channel_index: int
    attempt: int
    title: str
    body: str
    critical: bool
    digest_id: int | None = None  # a daily digest's row: its reports go with it where they can


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file that goes with a message where the channel can carry one (e-mail)."""

    name: str
    media_type: str
    content: bytes


@dataclass(frozen=True, slots=True)
class DirectPage:
    """A page sent straight from memory (the alert could not be recorded in time)."""

    channel_index: int
    sent_ms: int  # when the attempt began (the engine's clock)
    duration_ms: float


@dataclass(frozen=True, slots=True)
class FeedDelivery:
    """A claimed outbox row of a feed: one lifecycle event for one of its webhooks."""

    id: NotificationId
    alert_id: AlertId
    feed_id: FeedId
    webhook_index: int
    attempt: int
    body: str  # the CloudEvent, as JSON
