"""Prometheus series of the alert engine: alerts by state, delivery attempts, SOS latency."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterator
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from alerts import operations
from alerts.model import OFFLINE_AFTER_S, AlertId, AlertState
from alerts.notifier import Delivery
from alerts.store import AsyncConn, Upserted
from detectors.findings import FindingKind, Severity

# The alert engine's series; the application collects this registry with the other components'.
REGISTRY = CollectorRegistry(auto_describe=True)

TRANSITIONS = Counter(
    "bedwatch_alert_transitions",
    "Alerts opened, acknowledged and resolved by this process, by kind",
    ["kind", "to"],
    registry=REGISTRY,
)
DELIVERY_ATTEMPTS = Counter(
    "bedwatch_delivery_attempts",
    "Notification attempts handed to a channel, by result (delivered or failed)",
    ["result"],
    registry=REGISTRY,
)
DELIVERY_FAILURES = Counter(
    "bedwatch_delivery_failures",
    "Failed notification attempts, by whether trying again may help",
    ["retryable"],
    registry=REGISTRY,
)
DELIVERY_SECONDS = Histogram(
    "bedwatch_delivery_seconds",
    "Time one notification attempt took on its channel",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
# The design's target: an SOS handed to the first channel within 1 s at the 99th percentile.
SOS_DISPATCH_SECONDS = Histogram(
    "bedwatch_sos_dispatch_seconds",
    "From an SOS finding reaching the alert engine to its first notification being handed to a"
    " channel (stage=handed) or delivered (stage=delivered)",
    ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)

# Raised to acknowledged (the views in migration 0029 give the same per alert): the 60 s and
# 180 s buckets are the telecare targets, so their ratios to _count are the shares answered.
ANSWER_SECONDS = Histogram(
    "bedwatch_alert_answer_seconds",
    "From an alert being raised to its acknowledgement, by severity",
    ["severity"],
    buckets=(10.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0, 1800.0, 3600.0),
    registry=REGISTRY,
)

NO_AREA = "none"  # the area label of residents not placed in any area
# From the condition's start (device time: the SOS press) to the first page delivered to a person,
# as the view alert_answer_times has it per alert (press_to_page_s).
FIRST_PAGE_SECONDS = Histogram(
    "bedwatch_alert_first_page_seconds",
    "From an alert's condition beginning (the press) to its first page delivered, by severity",
    ["severity"],
    buckets=(1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 180.0, 600.0),
    registry=REGISTRY,
)
ESCALATIONS = Counter(
    "bedwatch_alert_escalations",
    "Escalations to a later step of the ladder, by severity and whether it was the last step",
    ["severity", "last_step"],
    registry=REGISTRY,
)

_TRACKED_MAX = 10_000  # SOS alerts whose first send is awaited; bounded if a send never happens


class _FirstSend:
    """Start times of new SOS alerts, until their first notification is handed and delivered."""

    def __init__(self) -> None:
        self._handed: OrderedDict[AlertId, float] = OrderedDict()
        self._delivered: OrderedDict[AlertId, float] = OrderedDict()

    def opened(self, alert_id: AlertId, started: float) -> None:
        for pending in (self._handed, self._delivered):
            pending[alert_id] = started
            while len(pending) > _TRACKED_MAX:
                pending.popitem(last=False)

    def stage(self, alert_id: AlertId | None, stage: str) -> None:
        pending = self._handed if stage == "handed" else self._delivered
        started = pending.pop(alert_id, None) if alert_id is not None else None
        if started is not None:
            SOS_DISPATCH_SECONDS.labels(stage).observe(time.perf_counter() - started)


_first_send = _FirstSend()


def alert_upserted(up: Upserted, received: float) -> None:
    """An alert row is committed; `received` is `time.perf_counter()` when its finding came in."""
    if not up.inserted:
        return
    TRANSITIONS.labels(up.alert.kind.value, AlertState.OPEN.value).inc()
    if up.alert.kind is FindingKind.SOS:
        _first_send.opened(up.alert.id, received)


def alert_moved(kind: FindingKind, to: AlertState) -> None:
    TRANSITIONS.labels(kind.value, to.value).inc()


def alert_answered(severity: Severity, seconds: float) -> None:
    ANSWER_SECONDS.labels(severity.value).observe(max(0.0, seconds))


def first_page(severity: Severity, seconds: float) -> None:
    FIRST_PAGE_SECONDS.labels(severity.value).observe(max(0.0, seconds))


def escalated(severity: Severity, *, last_step: bool) -> None:
    ESCALATIONS.labels(severity.value, str(last_step).lower()).inc()


def handing_over(alert_id: AlertId | None) -> None:
    """A notification is about to be handed to its channel."""
    _first_send.stage(alert_id, "handed")


def attempt_done(alert_id: AlertId | None, delivery: Delivery) -> None:
    DELIVERY_ATTEMPTS.labels("delivered" if delivery.ok else "failed").inc()
    DELIVERY_SECONDS.observe(delivery.duration_ms / 1000)
    if delivery.ok:
        _first_send.stage(alert_id, "delivered")
    else:
        DELIVERY_FAILURES.labels(str(delivery.retryable).lower()).inc()


class AlertCounts(Collector):
    """Alerts now open or acknowledged, by kind, severity and state, counted in the database.

    prometheus_client collects synchronously, so the count is taken by `refresh` (awaited by the
    /metrics handler just before it renders) and only read here.
    """

    def __init__(self) -> None:
        self._counts: list[tuple[str, str, str, int]] = []
        self._fleet: list[tuple[str, str, int]] = []
        self._areas: dict[str, operations.Now] = {}

    async def refresh(self, conn: AsyncConn, now: datetime | None = None) -> None:
        cur = await conn.execute(
            "SELECT kind, severity, state, count(*) FROM alerts"
            " WHERE state IN ('open', 'acknowledged') GROUP BY kind, severity, state"
        )
        self._counts = [(k, s, st, int(n)) for k, s, st, n in await cur.fetchall()]
        cur = await conn.execute(FLEET, FLEET_PARAMS)
        self._fleet = [(kind, state, int(n)) for kind, state, n in await cur.fetchall()]
        at = now or datetime.now(UTC)
        found = await operations.now_by_area(conn, operations.ALL_AREAS, at)
        self._areas = {name or NO_AREA: now for name, now in found.items() if name is not None}

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "bedwatch_alerts",
            "Alerts now open or acknowledged, by kind, severity and state",
            labels=["kind", "severity", "state"],
        )
        seen = {(k, s, st): n for k, s, st, n in self._counts}
        # Critical kinds at zero too, so "no open SOS" is a sample, not an absent series.
        for critical in (FindingKind.SOS.value, FindingKind.FALL.value):
            for open_state in (AlertState.OPEN.value, AlertState.ACKNOWLEDGED.value):
                seen.setdefault((critical, Severity.CRITICAL.value, open_state), 0)
        for (kind, severity, state), n in sorted(seen.items()):
            family.add_metric([kind, severity, state], n)
        yield family
        fleet = GaugeMetricFamily(
            "bedwatch_devices",
            "Active devices by kind and condition (registered, online, silent_1h, low_battery,"
            " strap_off); a device may be in several",
            labels=["kind", "state"],
        )
        for kind, state, n in self._fleet:
            fleet.add_metric([kind, state], n)
        yield fleet
        yield from self._by_area()

    def _by_area(self) -> Iterator[Metric]:
        """The operations view's "now" per top-level area (community), as gauges."""
        beds = GaugeMetricFamily(
            "bedwatch_area_beds",
            "Beds by area (the first segment of the residents' area path; 'none' if unplaced)"
            " and condition: registered, online, silent_1h (devices), low_battery (devices),"
            " strap_off, out_of_bed (at night, now)",
            labels=["area", "state"],
        )
        standing = GaugeMetricFamily(
            "bedwatch_area_alerts",
            "Alerts standing now by area, severity and state (open: not yet acknowledged)",
            labels=["area", "severity", "state"],
        )
        for area, now in sorted(self._areas.items()):
            fleet = now.fleet
            for state, n in (
                ("registered", fleet.beds),
                ("online", fleet.online),
                ("silent_1h", fleet.silent_1h),
                ("low_battery", fleet.low_battery),
                ("strap_off", fleet.strap_off),
                ("out_of_bed", fleet.out_of_bed),
            ):
                beds.add_metric([area, state], n)
            for severity in Severity:
                ages = now.open_alerts.get(severity.value, {})
                standing.add_metric([area, severity.value, "open"], sum(ages.values()))
            standing.add_metric([area, "all", "acknowledged"], now.acknowledged)
        yield beds
        yield standing


# The fleet as the operations centre asks after it. Online: heard within OFFLINE_AFTER_S (as the
# console judges it; parameters pad_s, band_s) and not reported offline; low battery: 20 % or less.
FLEET = """
WITH latest AS (
    SELECT d.id, d.kind, h.last_seen_at, s.state AS reported, coalesce(b.bat, s.bat) AS bat,
           w.worn
    FROM devices d
    LEFT JOIN device_health h ON h.device_id = d.id
    LEFT JOIN LATERAL (SELECT state, bat FROM device_status WHERE device_id = d.id
                       ORDER BY time DESC LIMIT 1) s ON true
    LEFT JOIN LATERAL (SELECT bat FROM wristband_samples WHERE device_id = d.id
                       AND d.kind = 'wristband' AND bat IS NOT NULL
                       ORDER BY time DESC LIMIT 1) b ON true
    LEFT JOIN LATERAL (SELECT worn FROM wristband_samples WHERE device_id = d.id
                       AND d.kind = 'wristband' AND worn IS NOT NULL
                       ORDER BY time DESC LIMIT 1) w ON true
    WHERE d.active
)
SELECT kind, c.state, count(*) FILTER (WHERE hit) FROM latest, LATERAL (VALUES
    ('registered', true),
    ('online', last_seen_at > now() - CASE kind WHEN 'mattress' THEN %(pad_s)s
                                                ELSE %(band_s)s END * interval '1 second'
               AND reported IS DISTINCT FROM 'offline'),
    ('silent_1h', last_seen_at IS NULL OR last_seen_at < now() - interval '1 hour'),
    ('low_battery', bat <= 20),
    ('strap_off', kind = 'wristband' AND worn = 0)
) AS c(state, hit)
GROUP BY kind, c.state ORDER BY kind, c.state
"""


FLEET_PARAMS = {"pad_s": OFFLINE_AFTER_S["mattress"], "band_s": OFFLINE_AFTER_S["wristband"]}


ALERT_COUNTS = AlertCounts()
REGISTRY.register(ALERT_COUNTS)
