"""Ingest's Prometheus series, read from its counters at scrape time: messages pay nothing."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ingest.intake import Intake
from ingest.mqtt import MqttSession

# Ingest's series; the application collects this registry with the other components'.
REGISTRY = CollectorRegistry(auto_describe=True)


class IngestCollector(Collector):
    """The counters of one running intake and MQTT session (either may not be open yet)."""

    def __init__(self, parts: Callable[[], tuple[Intake | None, MqttSession | None]]) -> None:
        self._parts = parts

    def collect(self) -> Iterator[Metric]:
        intake, mqtt = self._parts()
        messages = CounterMetricFamily(
            "bedwatch_messages", "MQTT messages received, by channel", labels=["channel"]
        )
        rejects = CounterMetricFamily(
            "bedwatch_rejects", "Messages or samples quarantined, by reason", labels=["reason"]
        )
        received, rejected, shed = intake.counts() if intake is not None else ({}, {}, 0)
        for channel, n in sorted(received.items()):
            messages.add_metric([channel], n)
        for reason, n in sorted(rejected.items()):
            rejects.add_metric([reason], n)
        yield messages
        yield rejects
        yield CounterMetricFamily(
            "bedwatch_qos0_shed",
            "QoS 0 telemetry and wave messages analysed but not stored: too many were waiting",
            value=shed,
        )
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
        connected = mqtt is not None and mqtt.connected.is_set()
        yield GaugeMetricFamily(
            "bedwatch_mqtt_connected", "1 while the MQTT session is connected", value=connected
        )


class Watched:
    """One collector of a running thing per process in a registry; a new one replaces the last
    (a service started again in the same process, as tests do)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self._current: Collector | None = None
        self._lock = threading.Lock()

    def replace(self, collector: Collector) -> None:
        with self._lock:
            if self._current is not None:
                self._registry.unregister(self._current)
            self._registry.register(collector)
            self._current = collector


_watched = Watched(REGISTRY)


def watch(parts: Callable[[], tuple[Intake | None, MqttSession | None]]) -> IngestCollector:
    """Register a running ingest's counters (once per process; a new one replaces the last)."""
    collector = IngestCollector(parts)
    _watched.replace(collector)
    return collector
