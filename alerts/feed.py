"""Feeds for outside platforms: the site file's [feeds.<id>], and alert events as CloudEvents."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from alerts import store
from alerts.model import AlertId, Event, FeedId, area_within
from alerts.notifier import redact
from ingest.registry import ALL_AREAS, area_path

log = logging.getLogger(__name__)

FEED_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
DEFAULT_SOURCE = "/bedwatch/alerts"
EVENT_TYPE = "org.bedwatch.alert.{}"
# How long an event is tried before it is given up (and the alert's next one goes): a day by
# default, so a receiver away overnight gets everything when it is back.
GIVE_UP_AFTER_S = 86_400
_KEYS = {"areas", "webhooks", "source", "give_up_after_s"}


@dataclass(frozen=True, slots=True)
class Feed:
    """What a feed may see (its areas: the API and the events) and where events are pushed."""

    id: FeedId
    areas: tuple[str, ...]
    webhooks: tuple[str, ...] = ()
    source: str = DEFAULT_SOURCE  # the events' CloudEvents source
    give_up_after_s: int = GIVE_UP_AFTER_S


def parse_feeds(raw: Mapping[str, Any]) -> dict[FeedId, Feed]:
    """Check [feeds.<id>] tables strictly; ValueError names the key and what was expected."""
    feeds = {}
    for name, value in raw.items():
        if not FEED_ID.fullmatch(name):
            raise ValueError(
                f"feeds.{name}: a feed id is letters, digits, '-' and '_' (64 at most)"
            )
        feeds[FeedId(name)] = _feed(f"feeds.{name}", FeedId(name), value)
    return feeds


def _feed(where: str, feed_id: FeedId, value: Any) -> Feed:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: expected a table")
    unknown = set(value) - _KEYS
    if unknown:
        raise ValueError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}; known: "
            + ", ".join(sorted(_KEYS))
        )
    areas = value.get("areas")
    if not isinstance(areas, list) or not areas:
        raise ValueError(f"{where}.areas: expected a non-empty list of area paths, or ['*']")
    checked = tuple(a if a == ALL_AREAS else area_path(f"{where}.areas", a) for a in areas)
    hooks = value.get("webhooks", [])
    if not isinstance(hooks, list) or not all(_http_url(h) for h in hooks):
        raise ValueError(f"{where}.webhooks: expected a list of http:// or https:// URLs")
    if len(set(hooks)) != len(hooks):
        raise ValueError(f"{where}.webhooks: a URL is named twice")
    source = value.get("source", DEFAULT_SOURCE)
    if not isinstance(source, str) or not source or len(source) > 200:
        raise ValueError(f"{where}.source: expected a URI reference such as {DEFAULT_SOURCE!r}")
    give_up = value.get("give_up_after_s", GIVE_UP_AFTER_S)
    if isinstance(give_up, bool) or not isinstance(give_up, int) or not 60 <= give_up <= 2_592_000:
        raise ValueError(f"{where}.give_up_after_s: expected whole seconds in 60..2592000")
    return Feed(feed_id, checked, tuple(hooks), source, give_up)


def _http_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


async def load_feeds(conn: store.AsyncConn) -> dict[FeedId, Feed]:
    """The [feeds] table as the registry stored it; none (and a log line) if it is bad."""
    cur = await conn.execute("SELECT value FROM site_settings WHERE section = 'feeds'")
    row = await cur.fetchone()
    if row is None:
        return {}
    raw = row[0] if isinstance(row[0], dict) else json.loads(row[0])
    try:
        return parse_feeds(raw)
    except ValueError as exc:
        # The registry refuses a bad [feeds] table at load time; this only guards old rows.
        log.error("stored [feeds] settings are invalid (%s); no feed is served", exc)
        return {}


# An alert as feeds give it (the events' data, the API's alerts): these columns, these names.
ALERT_COLUMNS = (
    "a.id, a.resident_id, coalesce(r.area, ''), a.kind, a.severity, a.state, a.started_at,"
    " a.opened_at, a.acked_at, a.acked_by, a.tier"
)
ALERT_FIELDS = (
    "alert_id",
    "resident_id",
    "area",
    "kind",
    "severity",
    "state",
    "started_at",
    "opened_at",
    "acked_at",
    "acked_by",
    "tier",
)
# The alert as the event leaves it, with the resident's area and the audit row that is the event.
_FACTS = (
    f"SELECT {ALERT_COLUMNS}, a.resolved_at, a.resolved_by, au.at, au.actor, au.via, au.action"
    " FROM alert_audit au JOIN alerts a ON a.id = au.alert_id"
    " LEFT JOIN residents r ON r.id = a.resident_id WHERE au.id = %s"
)


async def publish(conn: store.AsyncConn, audit_id: int, event: Event, now_ms: int) -> int:
    """Queue the event of this audit row for every webhook of every feed whose areas hold the
    alert's resident, in the caller's transaction (so it exists exactly when the change does)."""
    feeds = await load_feeds(conn)
    if not any(feed.webhooks for feed in feeds.values()):
        return 0
    cur = await conn.execute(_FACTS, (audit_id,))
    row = await cur.fetchone()
    assert row is not None
    data = _data(row)
    planned = [
        store.FeedPlanned(
            AlertId(row[0]),
            audit_id,
            feed.id,
            index,
            redact(url),
            EVENT_TYPE.format(event.value),
            cloud_event(feed, audit_id, event, data),
        )
        for feed in feeds.values()
        if area_within(str(data["area"]), feed.areas)
        for index, url in enumerate(feed.webhooks)
    ]
    await store.enqueue_feed(conn, planned, now_ms)
    return len(planned)


def _data(row: tuple[Any, ...]) -> dict[str, object]:
    keys = (*ALERT_FIELDS, "resolved_at", "resolved_by", "at", "by", "via", "action")
    return {k: rfc3339(v) if isinstance(v, datetime) else v for k, v in zip(keys, row, strict=True)}


def rfc3339(value: datetime) -> str:
    """A time as feeds give it: RFC 3339, in UTC."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def cloud_event(feed: Feed, audit_id: int, event: Event, data: Mapping[str, object]) -> str:
    """CloudEvents 1.0 in structured JSON: the id is the audit row's, the same at every attempt,
    so a receiver that got an event twice (an answer lost on the way) can tell."""
    envelope = {
        "specversion": "1.0",
        "id": str(audit_id),
        "source": feed.source,
        "type": EVENT_TYPE.format(event.value),
        "subject": str(data["alert_id"]),
        "time": data["at"],
        "datacontenttype": "application/json",
        "data": {"event": event.value, **data},
    }
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":"))
