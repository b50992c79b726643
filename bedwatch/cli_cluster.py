"""`bedwatch bridge`, `bedwatch worker`, `bedwatch cluster status`: BedWatch on NATS JetStream.

One `bedwatch run` stays the way to run BedWatch on one machine; these roles are for several
(README, "Past one machine"). Settings as for `run`, plus the [cluster] section
(`BEDWATCH_NATS_URL`, `BEDWATCH_CLUSTER__*`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime

from bedwatch.settings import Settings, load_settings

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bridge = sub.add_parser(
        "bridge",
        help="MQTT to NATS JetStream, acknowledged once the stream has it",
        description="Hold the broker's persistent sessions and publish every message to the"
        " JetStream stream, acknowledging it to the broker after the stream's ack. Until SIGTERM.",
    )
    bridge.set_defaults(handler=run_bridge)
    worker = sub.add_parser(
        "worker",
        help="claim partitions of residents, detect, store, checkpoint",
        description="Join the workers: claim a share of the 256 partitions by lease, read their"
        " input from the stream, detect and store it, and hand partitions over on join, leave"
        " and death. Until SIGTERM (then it checkpoints and releases every partition).",
    )
    worker.add_argument("--id", help="this worker's id (default: [cluster] worker_id, or host-pid)")
    worker.set_defaults(handler=run_worker)
    engine = sub.add_parser(
        "engine",
        help="the alert engine, console and API on the findings workers store",
        description="Page, escalate and serve the console and API for the findings the workers"
        " commit (told by NOTIFY, and looking every second). Until SIGTERM. Two may run.",
    )
    engine.set_defaults(handler=run_engine)
    cluster = sub.add_parser("cluster", help="workers, partitions, lag and lease epochs")
    cmds = cluster.add_subparsers(dest="cluster_command", required=True)
    status = cmds.add_parser("status", help="who owns which partition, and how far behind it is")
    status.add_argument("--partitions", action="store_true", help="one line per partition")
    status.set_defaults(handler=run_status)


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config)
    if settings.database.migrate_on_start:
        from bedwatch.migrate import migrate

        migrate(settings)
    return settings


def _until_signalled(stop: Callable[[], object]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)


def run_bridge(args: argparse.Namespace) -> int:
    from bedwatch.cluster.bridge import Bridge, BridgeSettings, unless_stopped
    from bedwatch.cluster.metrics import serve_metrics
    from bedwatch.cluster.settings import shown
    from ingest.db import connect, redact
    from ingest.registry import load_devices, registry_version

    settings = _settings(args)
    shared = BridgeSettings.of(settings.cluster)

    def residents() -> tuple[tuple[object, ...], dict[object, object]]:
        with connect(settings.database.url) as conn:
            devices = load_devices(conn)
            return registry_version(conn), {d: i.resident_id for d, i in devices.items()}

    async def main() -> None:
        version, owners = await asyncio.to_thread(residents)
        bridge = Bridge(settings.mqtt, shared, owners)  # type: ignore[arg-type]
        stopped = asyncio.Event()
        _until_signalled(stopped.set)
        serve_metrics(settings.cluster.metrics_addr, bridge_stats=bridge.stats)

        async def begin() -> bool:
            await bridge.start()
            return True

        if not await unless_stopped(begin(), stopped):
            log.info("bridge stopped before NATS answered")
            return
        log.info("bridge: %s -> %s", redact(settings.mqtt.url), shown(shared.nats_url))
        while not stopped.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopped.wait(), shared.registry_every_s)
            try:
                now, found = await asyncio.to_thread(residents)
            except Exception as exc:
                log.warning("registry not reloaded: %s", exc)
                continue
            if now != version:
                version, bridge.residents = now, found  # type: ignore[assignment]
        await bridge.stop()

    asyncio.run(main())
    return 0


def run_worker(args: argparse.Namespace) -> int:
    from bedwatch.cluster.bridge import BridgeSettings
    from bedwatch.cluster.metrics import serve_metrics
    from bedwatch.cluster.worker import Worker, WorkerSettings

    settings = _settings(args)
    cluster = settings.cluster
    defaults = WorkerSettings()
    worker_settings = WorkerSettings(
        worker_id=args.id or cluster.worker_id or defaults.worker_id,
        lease_ttl_s=cluster.lease_ttl_s,
        rebalance_every_s=min(defaults.rebalance_every_s, cluster.lease_ttl_s / 4),
        checkpoint_every_s=cluster.checkpoint_every_s,
    )
    worker = Worker(
        settings.database.url,
        BridgeSettings.of(cluster),
        worker_settings,
        prefix=settings.mqtt.topic_prefix,
    )

    async def main() -> None:
        _until_signalled(worker.stop)
        serve_metrics(cluster.metrics_addr, worker=worker)
        await worker.run()

    asyncio.run(main())
    return 0


def run_engine(args: argparse.Namespace) -> int:
    from bedwatch.cluster.engine import run_engine as engine
    from bedwatch.service import alerts_component

    settings = _settings(args)

    async def main() -> None:
        running = asyncio.create_task(engine(settings, alerts_component(settings)))
        _until_signalled(running.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await running

    asyncio.run(main())
    return 0


def run_status(args: argparse.Namespace) -> int:
    import psycopg

    from bedwatch.cluster.status import gather, render
    from ingest.db import DatabaseUnavailable, one_line

    settings = load_settings(args.config)
    try:
        report = asyncio.run(gather(settings.database.url, settings.cluster))
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(one_line(exc)) from None
    except psycopg.errors.UndefinedTable:
        print("bedwatch: no cluster here yet (run `bedwatch db migrate`)", file=sys.stderr)
        return 1
    print(render(report, datetime.now(UTC), per_partition=args.partitions), end="")
    return 0
