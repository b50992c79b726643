"""Prometheus series of a bridge or a worker: hand-offs, fenced writes, lag, what was bridged."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from bedwatch.cluster.bridge import BridgeStats
    from bedwatch.cluster.worker import Worker

log = logging.getLogger(__name__)


class ClusterCollector(Collector):
    def __init__(self, worker: Worker | None, bridge: BridgeStats | None) -> None:
        self._worker = worker
        self._bridge = bridge

    def collect(self) -> Iterator[Metric]:
        if self._worker is not None:
            yield from self._worker_series(self._worker)
        if self._bridge is not None:
            b = self._bridge
            for name, text, value in (
                ("bedwatch_bridge_published", "Messages the stream acknowledged", b.published),
                ("bedwatch_bridge_events", "SOS and fall lane messages published", b.events),
                ("bedwatch_bridge_retries", "Publishes the stream did not take at once", b.retries),
            ):
                yield CounterMetricFamily(name, text, value=value)

    def _worker_series(self, worker: Worker) -> Iterator[Metric]:
        s = worker.stats
        yield GaugeMetricFamily(
            "bedwatch_cluster_partitions",
            "Partitions this worker owns",
            value=len(worker.partitions),
        )
        handoffs = CounterMetricFamily(
            "bedwatch_cluster_handoffs", "Partitions taken over and let go", labels=["direction"]
        )
        handoffs.add_metric(["acquired"], s.acquired)
        handoffs.add_metric(["released"], s.released)
        yield handoffs
        yield CounterMetricFamily(
            "bedwatch_cluster_fenced",
            "Writes refused because another worker had taken the partition (a stale epoch)",
            value=s.fenced,
        )
        yield CounterMetricFamily(
            "bedwatch_cluster_checkpoints", "Partition checkpoints committed", value=s.checkpoints
        )
        yield CounterMetricFamily("bedwatch_cluster_read", "Messages read", value=s.read)
        pending = sum(len(p.pending) for p in worker.partitions.values())
        yield GaugeMetricFamily(
            "bedwatch_cluster_uncheckpointed",
            "Messages read but not yet checkpointed (replayed if this worker dies)",
            value=pending,
        )
        lag = GaugeMetricFamily(
            "bedwatch_cluster_lag_messages",
            "Messages in the stream not yet read, per owned partition (refreshed every few s)",
            labels=["partition"],
        )
        for partition, behind in sorted(s.lag.items()):
            lag.add_metric([str(partition)], behind)
        yield lag


def serve_metrics(
    addr: str, *, worker: Worker | None = None, bridge_stats: BridgeStats | None = None
) -> None:
    """/metrics on addr (host:port) in a thread of its own; nothing when addr is empty."""
    if not addr:
        return
    host, _, port = addr.rpartition(":")
    registry = CollectorRegistry()
    registry.register(ClusterCollector(worker, bridge_stats))
    start_http_server(int(port), host or "0.0.0.0", registry=registry)
    log.info("metrics on http://%s/metrics", addr)
