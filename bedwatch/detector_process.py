"""Detection in a process of its own, so that the detectors run on a core beside ingest's.

The service's process spends its one core (the GIL) on MQTT, decoding and storage; the
detectors cost about as much again. Here they run in a worker process: decoded records go to it
over a pipe in batches, findings, samples computed from waveforms and night summaries come back.
The worker keeps ingest's in-order filter and the detector state; the service asks it for a
snapshot of that state, and gives it one back after a restart.

Order is what makes this safe: the pipe carries everything in order, so a snapshot or a `sync`
answered by the worker comes after the output of everything sent before it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import logging
import multiprocessing
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from multiprocessing.connection import Connection
from typing import Any

from detectors import snapshot
from detectors.findings import Finding
from detectors.nights import NightSummary
from detectors.runner import DetectorRunner
from detectors.settings import ResidentConfig
from detectors.state import ResidentState
from ingest.intake import InOrder
from ingest.protocol import Decoded
from ingest.records import Channel, DeviceId, MattressSample, ResidentId

log = logging.getLogger(__name__)

REPLY_TIMEOUT_S = 60.0  # for a snapshot or a sync: the worker has everything before it to do
STOP_TIMEOUT_S = 10.0
RESTART_PAUSE_S = 1.0  # doubled for each death within QUICK_DEATH_S of a start, up to the max
RESTART_MAX_S = 30.0
QUICK_DEATH_S = 10.0

# One decoded message as it crosses the pipe: device, channel, receive time, whether the records
# are pad samples as plain tuples (a tuple pickles five times faster than a NamedTuple), records.
Packed = tuple[str, str, int, bool, list[Any]]


def pack(items: Iterable[Decoded]) -> list[Packed]:
    out: list[Packed] = []
    for d in items:
        if d.device_id is None or d.channel is None or not d.records:
            continue
        records = d.records
        if type(records[0]) is MattressSample:
            rows: list[Any] = [tuple(r) for r in records]  # type: ignore[arg-type]
            out.append((d.device_id, d.channel.value, d.received_at_ms, True, rows))
        else:
            out.append((d.device_id, d.channel.value, d.received_at_ms, False, records))
    return out


def unpack(item: Packed) -> Decoded:
    device_id, channel, received_at_ms, samples, records = item
    decoded = Decoded(received_at_ms, device_id=DeviceId(device_id), channel=Channel(channel))
    decoded.records = [MattressSample._make(r) for r in records] if samples else list(records)
    return decoded


class DetectorProcess:
    """The service's handle on the detector worker; its methods are called on the event loop.

    Commands are queued and sent by a thread of their own (a full pipe never blocks the loop);
    the worker's output is read by another thread and handed to the loop. If the worker dies it
    is started again from the last snapshot the service saw, and that is logged as an error:
    what it was given since is not detected again.
    """

    def __init__(
        self,
        *,
        on_finding: Callable[[Finding], None],
        on_derived: Callable[[Sequence[MattressSample]], None],
        on_summary: Callable[[NightSummary], None],
        clock: Callable[[], int],
    ) -> None:
        self._on_finding = on_finding
        self._on_derived = on_derived
        self._on_summary = on_summary
        self._clock = clock
        self._outbox: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._replies: dict[int, asyncio.Future[Any]] = {}
        self._asks = itertools.count(1)
        self._residents: Mapping[ResidentId, ResidentConfig] = {}
        self._last_snapshot: bytes | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self._stopping = False
        self._started_at = 0.0
        self._quick_deaths = 0
        self.restarts = 0

    # ------------------------------------------------------------------ commands (event loop)

    def set_residents(self, residents: Mapping[ResidentId, ResidentConfig]) -> None:
        self._residents = dict(residents)
        self._outbox.put(("residents", self._residents))

    def restore(self, blob: bytes, now_ms: int) -> None:
        """Raises ValueError for a blob that is not a detector snapshot of this version."""
        snapshot.loads(blob, ResidentState)  # checked here, where the caller can say so
        self._last_snapshot = blob
        self._outbox.put(("restore", blob, now_ms))

    def feed(self, items: Iterable[Decoded]) -> None:
        packed = pack(items)
        if packed:
            self._outbox.put(("feed", packed))

    def tick(self, now_ms: int) -> None:
        self._outbox.put(("tick", now_ms))

    def analyse_late(self) -> None:
        self._outbox.put(("late",))

    async def snapshot(self) -> bytes:
        """The detector state, after everything sent before has been detected and handed on."""
        blob: bytes = await self._ask("snapshot")
        self._last_snapshot = blob
        return blob

    async def sync(self) -> None:
        """Until everything sent before has been detected and its output handed on."""
        await self._ask("sync")

    # ------------------------------------------------------------------ life

    @property
    def backlog(self) -> int:
        """Commands (batches of messages, mostly) waiting to be sent to the worker."""
        return self._outbox.qsize()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._spawn()
        threading.Thread(target=self._send_loop, name="detect-send", daemon=True).start()
        # The worker ignores SIGTERM (the service stops it after draining), and multiprocessing
        # waits at exit for its daemonic children after sending them just that: an exit that
        # skipped stop() must not hang on it.
        atexit.register(self._kill)

    def stop(self) -> None:
        """Ask the worker to finish, on the event loop, once the service has drained.

        On the loop, so that a worker dying at this moment is not started again (`_died`
        runs there too); then `join` waits for it, off the loop.
        """
        self._stopping = True
        self._outbox.put(("stop",))
        self._outbox.put(None)

    def join(self) -> None:
        process = self._process
        if process is not None:
            process.join(STOP_TIMEOUT_S)
            if process.is_alive():
                log.warning("detector worker did not stop; killing it")
                self._kill()
        if self._conn is not None:
            self._conn.close()
        atexit.unregister(self._kill)

    def _kill(self) -> None:
        process = self._process
        if process is not None and process.is_alive():
            process.kill()
            process.join(STOP_TIMEOUT_S)

    def _spawn(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        process = ctx.Process(
            target=worker_main,
            args=(child, logging.getLogger().getEffectiveLevel()),
            name="bedwatch-detectors",
            daemon=True,
        )
        process.start()
        child.close()
        # A new worker gets its residents and state first, before anything still queued for
        # the one it replaces (that queue is sent to whichever worker is current).
        parent.send(("residents", self._residents))
        if self._last_snapshot is not None and self.restarts:
            parent.send(("restore", self._last_snapshot, self._clock()))
        self._started_at = time.monotonic()
        old, self._process, self._conn = self._conn, process, parent
        if old is not None:
            old.close()
        threading.Thread(
            target=self._read_loop, args=(parent,), name="detect-read", daemon=True
        ).start()

    async def _ask(self, what: str) -> Any:
        assert self._loop is not None
        ask = next(self._asks)
        reply = self._loop.create_future()
        self._replies[ask] = reply
        self._outbox.put((what, ask))
        try:
            return await asyncio.wait_for(reply, REPLY_TIMEOUT_S)
        finally:
            self._replies.pop(ask, None)

    def _send_loop(self) -> None:
        while True:
            command = self._outbox.get()
            if command is None:
                return
            conn = self._conn
            while True:
                try:
                    assert conn is not None
                    conn.send(command)
                    break
                except (OSError, EOFError, ValueError):
                    # The worker is gone: this command waits for the next one.
                    while self._conn is conn and not self._stopping:
                        time.sleep(0.05)
                    if self._stopping:
                        break
                    conn = self._conn
                except Exception as exc:
                    log.error("detector command %s not sent: %s", command[0], exc)
                    break

    def _read_loop(self, conn: Connection) -> None:
        loop = self._loop
        assert loop is not None
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break
            try:
                loop.call_soon_threadsafe(self._deliver, message)
            except RuntimeError:  # the service's loop has closed
                return
        if not self._stopping:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._died)

    # ------------------------------------------------------------------ output (event loop)

    def _deliver(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "out":
            _, findings, derived, summaries = message
            for finding in findings:
                self._on_finding(finding)
            if derived:
                self._on_derived(derived)
            for summary in summaries:
                self._on_summary(summary)
        elif kind == "reply":
            _, ask, value = message
            reply = self._replies.get(ask)
            if reply is not None and not reply.done():
                reply.set_result(value)

    def _died(self) -> None:
        if self._stopping:
            return
        code = self._process.exitcode if self._process is not None else None
        for reply in self._replies.values():  # asked of the worker that is gone
            if not reply.done():
                reply.set_exception(RuntimeError("the detector worker ended"))
        # A worker that dies again soon after starting is started again more slowly.
        quick = time.monotonic() - self._started_at < QUICK_DEATH_S
        self._quick_deaths = self._quick_deaths + 1 if quick else 0
        pause = min(RESTART_MAX_S, RESTART_PAUSE_S * (2**self._quick_deaths - 1))
        log.error(
            "detector worker ended (exit code %s); starting it again in %.0f s from the last"
            " snapshot: records given to it since are not detected again",
            code,
            pause,
        )
        assert self._loop is not None
        self._loop.call_later(pause, self._restart)

    def _restart(self) -> None:
        if self._stopping:
            return
        self.restarts += 1
        self._spawn()


def worker_main(conn: Connection, log_level: int) -> None:
    """The worker process: commands in, in order; output out after each."""
    # Ctrl-C and SIGTERM reach the whole process group: the service stops the worker itself,
    # once it has drained.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(
        level=log_level, format="%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"
    )
    findings: list[Finding] = []
    derived: list[MattressSample] = []
    summaries: list[NightSummary] = []
    runner = DetectorRunner(
        residents={},
        on_finding=findings.append,
        on_derived=derived.extend,
        on_summary=summaries.append,
    )
    ordered = InOrder(runner)
    while True:
        try:
            command = conn.recv()
        except (EOFError, OSError):
            return
        kind = command[0]
        reply: tuple[Any, ...] | None = None
        try:
            if kind == "feed":
                _feed(ordered, command[1])
            elif kind == "tick":
                runner.tick(command[1])
            elif kind == "residents":
                runner.set_residents(command[1])
            elif kind == "restore":
                runner.restore(command[1])
                runner.resume(command[2])
            elif kind == "late":
                runner.analyse_late()
            elif kind == "snapshot":
                reply = ("reply", command[1], runner.snapshot())
            elif kind == "sync":
                reply = ("reply", command[1], None)
        except Exception:
            log.exception("detector command %s failed", kind)
        if findings or derived or summaries:
            conn.send(("out", list(findings), list(derived), list(summaries)))
            findings.clear()
            derived.clear()
            summaries.clear()
        if reply is not None:
            conn.send(reply)
        if kind == "stop":
            return


def _feed(ordered: InOrder, packed: Sequence[Packed]) -> None:
    for item in packed:
        try:
            ordered.feed(unpack(item))
        except Exception:
            # A detector bug must not stop detection for the others; the data is still stored.
            log.exception("detector failed on a message from %s", item[0])


__all__: Sequence[str] = ("DetectorProcess", "pack", "unpack", "worker_main")
