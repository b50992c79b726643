"""The application's Prometheus registry: its own series and every component's, in one scrape."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from alerts.metrics import REGISTRY as ALERTS_REGISTRY
from ingest import metrics as ingest_metrics
from ingest.intake import Intake
from ingest.metrics import REGISTRY as INGEST_REGISTRY
from ingest.mqtt import MqttSession
from ingest.store import WriteResult

REGISTRY = CollectorRegistry(auto_describe=True)
REGISTRY.register(INGEST_REGISTRY)
REGISTRY.register(ALERTS_REGISTRY)

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
    """The service's own counters: rows stored and the detector worker's queue."""

    def __init__(self, written: WriteResult, detect_batches: Callable[[], int]) -> None:
        self._written = written
        self._detect_batches = detect_batches

    def collect(self) -> Iterator[Metric]:
        rows = CounterMetricFamily(
            "bedwatch_rows_stored",
            "Rows written (copies of rows already stored not counted), by table",
            labels=["table"],
        )
        written = self._written
        for table in ("mattress", "wristband", "events", "status", "wave", "quarantined"):
            rows.add_metric([table], getattr(written, table))
        yield rows
        yield GaugeMetricFamily(
            "bedwatch_queue_detect_batches",
            "Batches of messages waiting to be sent to the detectors' worker process",
            value=self._detect_batches(),
        )


_watched = ingest_metrics.Watched(REGISTRY)


def watch(
    *,
    written: WriteResult,
    detect_batches: Callable[[], int],
    ingest: Callable[[], tuple[Intake | None, MqttSession | None]],
) -> ServiceCollector:
    """Register a running service's counters (once per process; a new service replaces it)."""
    ingest_metrics.watch(ingest)
    collector = ServiceCollector(written, detect_batches)
    _watched.replace(collector)
    return collector
