"""Prometheus metrics of the service: one registry, series named bedwatch_*."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from ingest.service import Service

REGISTRY = CollectorRegistry(auto_describe=True)

BATCH_SECONDS = Histogram(
    "bedwatch_batch_write_seconds",
    "Time to store one batch and acknowledge its messages",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
WRITE_ERRORS = Counter(
    "bedwatch_write_errors",
    "Batch writes that failed on the database and were retried",
    registry=REGISTRY,
)
FINDINGS = Counter(
    "bedwatch_findings",
    "Findings raised or cleared by the detectors, by kind and severity",
    ["kind", "severity", "cleared"],
    registry=REGISTRY,
)


class ServiceCollector(Collector):
    """Reads the service's own counters at scrape time, so the per-message path pays nothing."""

    def __init__(self, service: Service) -> None:
        self._service = service

    def collect(self) -> Iterator[Metric]:
        service = self._service
        intake = service.intake
        messages = CounterMetricFamily(
            "bedwatch_messages", "MQTT messages received, by channel", labels=["channel"]
        )
        rejects = CounterMetricFamily(
            "bedwatch_rejects", "Messages or samples quarantined, by reason", labels=["reason"]
        )
        if intake is not None:
            for channel, n in sorted(intake.received.items()):
                messages.add_metric([channel], n)
            for reason, n in sorted(intake.rejected.items()):
                rejects.add_metric([reason], n)
        yield messages
        yield rejects
        yield CounterMetricFamily(
            "bedwatch_qos0_shed",
            "QoS 0 telemetry and wave messages analysed but not stored: too many were waiting",
            value=intake.shed_qos0 if intake is not None else 0,
        )
        rows = CounterMetricFamily(
            "bedwatch_rows_stored",
            "Rows written (copies of rows already stored not counted), by table",
            labels=["table"],
        )
        written = service.stats.written
        for table in ("mattress", "wristband", "events", "status", "wave", "quarantined"):
            rows.add_metric([table], getattr(written, table))
        yield rows
        yield GaugeMetricFamily(
            "bedwatch_queue_held_messages",
            "Messages decoded and waiting for their batch to be stored and acknowledged",
            value=intake.held_count if intake is not None else 0,
        )
        yield GaugeMetricFamily(
            "bedwatch_queue_detect_messages",
            "Messages decoded and waiting for the detectors",
            value=intake.detect_backlog if intake is not None else 0,
        )
        yield GaugeMetricFamily(
            "bedwatch_queue_detect_batches",
            "Batches of messages waiting to be sent to the detectors' worker process",
            value=service.detectors.backlog,
        )
        connected = service.mqtt is not None and service.mqtt.connected.is_set()
        yield GaugeMetricFamily(
            "bedwatch_mqtt_connected", "1 while the MQTT session is connected", value=connected
        )


def watch(service: Service) -> ServiceCollector:
    """Register a running service's counters (once per process; a new service replaces it)."""
    for old in _watched:
        REGISTRY.unregister(old)
    _watched[:] = [ServiceCollector(service)]
    REGISTRY.register(_watched[0])
    return _watched[0]


_watched: list[ServiceCollector] = []
