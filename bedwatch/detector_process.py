"""Detection in a process of its own, so that the detectors run on a core beside ingest's.

The service's process spends its one core (the GIL) on MQTT, decoding and storage; the
detectors cost about as much again. Here they run in a worker process: decoded records go to it
over a pipe in batches, findings, samples computed from waveforms and night summaries come back.
The worker keeps ingest's in-order filter and the detector state; the service asks it for a
snapshot of that state, and gives it one back after a restart, with every command since.

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
import pickle
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from multiprocessing.connection import Connection
from typing import Any

from bedwatch.runtime import tune_collector
from detectors import snapshot, wave
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
WATCHDOG_S = 15.0  # a worker that leaves a command unanswered this long is killed and replaced
WORKER_START_S = 60.0  # how long a new worker may take to import and say it is up
# Past this many messages kept for a replay, the worker is asked for a snapshot that covers them.
JOURNAL_MAX_MESSAGES = 50_000
STOP_TIMEOUT_S = 10.0
RESTART_PAUSE_S = 1.0  # doubled for each death within QUICK_DEATH_S of a start, up to the max
RESTART_MAX_S = 30.0
QUICK_DEATH_S = 10.0

# One decoded message as it crosses the pipe: device, channel, receive time, and its records. A
# pad's samples go as columns (resident, then time, hr, rr, move, occ, sq, each a tuple): a few
# tuples of numbers pickle and unpickle many times faster than a tuple per sample, and the
# samples are built again from them in one pass. Other records go as they are.
PadColumns = tuple[str | None, tuple[tuple[Any, ...], ...]]
Packed = tuple[str, str, int, PadColumns | list[Any]]


CHANNELS = {c.value: c for c in Channel}


def pack(items: Iterable[Decoded]) -> list[Packed]:
    out: list[Packed] = []
    for d in items:
        records = d.records
        if d.device_id is None or d.channel is None or not records:
            continue
        if type(records[0]) is MattressSample:
            # Decoded pad samples are the device's own (source DEVICE), one resident's.
            columns = tuple(zip(*records, strict=True))
            pad: PadColumns = (records[0].resident_id, columns[2:8])
            out.append((d.device_id, d.channel.value, d.received_at_ms, pad))
        else:
            out.append((d.device_id, d.channel.value, d.received_at_ms, records))
    return out


def unpack(item: Packed) -> Decoded:
    device_id, channel, received_at_ms, records = item
    decoded = Decoded(received_at_ms, device_id=DeviceId(device_id), channel=CHANNELS[channel])
    if isinstance(records, tuple):
        resident_id, (ts, hr, rr, move, occ, sq) = records
        device, resident = itertools.repeat(device_id), itertools.repeat(resident_id)
        decoded.records = list(map(MattressSample, device, resident, ts, hr, rr, move, occ, sq))
    else:
        decoded.records = list(records)
    return decoded


class _Journal:
    """Every command for the worker since its last snapshot, numbered, in order. The sender
    thread sends from here, so a new worker can be given the same commands again.

    Each is kept pickled, as it is sent: tens of thousands of messages' worth of small tuples
    would otherwise be scanned by every pass of the cyclic collector until a snapshot drops
    them. A feed's own entry keeps only how many messages it holds.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        # (seq, when queued, the command (a feed: ("feed", its message count)), it pickled)
        self._entries: deque[tuple[int, float, tuple[Any, ...], bytes]] = deque()
        self._seq = 0
        self._next = 0  # index in _entries of the next command to send
        self._conn: Connection | None = None
        self._closed = False
        self.messages = 0  # decoded messages in the journal's feeds

    def append(self, command: tuple[Any, ...]) -> int:
        with self._cond:
            self._seq += 1
            blob = pickle.dumps((self._seq, command), pickle.HIGHEST_PROTOCOL)
            if command[0] == "feed":
                command = ("feed", len(command[1]))
                self.messages += command[1]
            self._entries.append((self._seq, time.monotonic(), command, blob))
            self._cond.notify()
            return self._seq

    def take(self) -> tuple[Connection, int, str, bytes] | None:
        """The next command (its seq, kind and pickled self) and the worker to send it to;
        None once closed and all is sent."""
        with self._cond:
            while self._conn is None or self._next >= len(self._entries):
                if self._closed and self._conn is not None:
                    return None
                self._cond.wait()
            seq, _, command, blob = self._entries[self._next]
            self._next += 1
            return self._conn, seq, command[0], blob

    def to(self, conn: Connection) -> None:
        """Send everything in the journal again, from its start, to a new worker."""
        with self._cond:
            self._conn = conn
            self._next = 0
            self._cond.notify()

    def truncate_through(self, seq: int) -> list[tuple[Any, ...]]:
        """Drop the commands a snapshot covers; returns them."""
        dropped = []
        with self._cond:
            while self._entries and self._entries[0][0] <= seq:
                _, _, command, _ = self._entries.popleft()
                dropped.append(command)
                if command[0] == "feed":
                    self.messages -= command[1]
                self._next = max(0, self._next - 1)
        return dropped

    def oldest_after(self, seq: int) -> float | None:
        """When the oldest command after `seq` was queued (monotonic), if one is."""
        with self._cond:
            for entry_seq, at, _, _ in self._entries:
                if entry_seq > seq:
                    return at
        return None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def __len__(self) -> int:
        with self._cond:
            return len(self._entries) - self._next


class DetectorProcess:
    """The service's handle on the detector worker; its methods are called on the event loop.

    Commands go into a journal that a thread of its own sends from (a full pipe never blocks
    the loop); the worker's output is read by another thread and handed to the loop. The journal
    keeps every command since the worker's last snapshot: if the worker dies, or stops answering
    for WATCHDOG_S (it is then killed), a new one gets that snapshot and the journal again, and
    the output it repeats is dropped, so nothing handed to the detectors is lost or doubled.
    """

    def __init__(
        self,
        *,
        on_finding: Callable[[Finding], None],
        on_derived: Callable[[Sequence[MattressSample]], None],
        on_summary: Callable[[NightSummary], None],
        clock: Callable[[], int],
        watchdog_s: float = WATCHDOG_S,
    ) -> None:
        self._on_finding = on_finding
        self._on_derived = on_derived
        self._on_summary = on_summary
        self._clock = clock
        self._watchdog_s = watchdog_s
        self._journal = _Journal()
        self._replies: dict[int, asyncio.Future[Any]] = {}
        self._asks = itertools.count(1)
        self._residents: Mapping[ResidentId, ResidentConfig] = {}
        self._base_residents: Mapping[ResidentId, ResidentConfig] = {}  # as of the snapshot
        self._last_snapshot: bytes | None = None
        self._snapshot_asked = False
        self._done = 0  # the last command whose output has been handed on
        self._loop: asyncio.AbstractEventLoop | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self._stopping = False
        self._started_at = 0.0
        self._up_at: float | None = None  # when the current worker said it was up
        self._quick_deaths = 0
        self.restarts = 0
        self.killed_hung = 0

    # ------------------------------------------------------------------ commands (event loop)

    def set_residents(self, residents: Mapping[ResidentId, ResidentConfig]) -> None:
        self._residents = dict(residents)
        self._journal.append(("residents", self._residents))

    def restore(self, blob: bytes, now_ms: int) -> None:
        """Raises ValueError for a blob that is not a detector snapshot of this version."""
        snapshot.loads(blob, ResidentState)  # checked here, where the caller can say so
        self._journal.append(("restore", blob, now_ms))

    def feed(self, items: Iterable[Decoded]) -> None:
        packed = pack(items)
        if packed:
            self._journal.append(("feed", packed))
        if self._journal.messages > JOURNAL_MAX_MESSAGES and not self._snapshot_asked:
            # A snapshot lets the journal drop what it covers: memory stays bounded.
            self._snapshot_asked = True
            self._journal.append(("snapshot", 0))

    def tick(self, now_ms: int) -> None:
        self._journal.append(("tick", now_ms))
        self._watch()

    def analyse_late(self) -> None:
        self._journal.append(("late",))

    async def snapshot(self) -> bytes:
        """The detector state, after everything sent before has been detected and handed on."""
        blob: bytes = await self._ask("snapshot")
        return blob

    async def sync(self) -> None:
        """Until everything sent before has been detected and its output handed on."""
        await self._ask("sync")

    # ------------------------------------------------------------------ life

    @property
    def backlog(self) -> int:
        """Commands (batches of messages, mostly) waiting to be sent to the worker."""
        return len(self._journal)

    @property
    def journal_messages(self) -> int:
        """Messages kept to be given again to a new worker (since the last snapshot)."""
        return self._journal.messages

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def exitcode(self) -> int | None:
        """The worker's exit code once it has ended (negative: the signal that ended it)."""
        return self._process.exitcode if self._process is not None else None

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
        self._journal.append(("stop",))
        self._journal.close()

    def abandon(self) -> None:
        """End the worker at once, for a start that failed before giving it any input."""
        self._stopping = True
        self._journal.close()
        self._kill()
        if self._conn is not None:
            self._conn.close()
        atexit.unregister(self._kill)

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
        # A new worker starts where the last snapshot left off: the residents then in force,
        # the snapshot, then the journal of every command since, in order.
        parent.send((0, ("residents", self._base_residents)))
        if self._last_snapshot is not None:
            parent.send((0, ("restore", self._last_snapshot, None)))
        self._started_at = time.monotonic()
        self._up_at = None
        old, self._process, self._conn = self._conn, process, parent
        if old is not None:
            old.close()
        threading.Thread(
            target=self._read_loop, args=(parent,), name="detect-read", daemon=True
        ).start()
        self._journal.to(parent)

    async def _ask(self, what: str) -> Any:
        assert self._loop is not None
        ask = next(self._asks)
        reply = self._loop.create_future()
        self._replies[ask] = reply
        self._journal.append((what, ask))
        try:
            return await asyncio.wait_for(reply, REPLY_TIMEOUT_S)
        finally:
            self._replies.pop(ask, None)

    def _send_loop(self) -> None:
        while True:
            item = self._journal.take()
            if item is None:
                return
            conn, _, kind, blob = item
            try:
                conn.send_bytes(blob)  # what conn.send((seq, command)) would send
            except (OSError, EOFError, ValueError):
                pass  # the worker is gone: the next one gets the journal again
            except Exception as exc:
                log.error("detector command %s not sent: %s", kind, exc)

    def _read_loop(self, conn: Connection) -> None:
        loop = self._loop
        assert loop is not None
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break
            try:
                loop.call_soon_threadsafe(self._deliver, conn, message)
            except RuntimeError:  # the service's loop has closed
                return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._died, conn)

    def _watch(self) -> None:
        """Kill a worker that has left a command unanswered for the watchdog's time, counted
        from when it said it was up (a new one first gets WORKER_START_S to import and say so)."""
        oldest = self._journal.oldest_after(self._done)
        process = self._process
        now = time.monotonic()
        if oldest is None or process is None or self._stopping:
            return
        if self._up_at is None:
            since, limit = self._started_at, WORKER_START_S
        else:
            since, limit = max(oldest, self._up_at), self._watchdog_s
        if now - since > limit and process.is_alive():
            self.killed_hung += 1
            log.error(
                "detector worker (pid %s) has not answered for %.0f s: killing it",
                process.pid,
                now - since,
            )
            process.kill()

    # ------------------------------------------------------------------ output (event loop)

    def _deliver(self, conn: Connection, message: tuple[Any, ...]) -> None:
        if conn is not self._conn:
            return  # from a worker already replaced
        kind, seq = message[0], message[1]
        if kind == "up":
            self._up_at = time.monotonic()
            return
        if seq <= self._done and seq:
            return  # a new worker repeating what its predecessor already handed on
        if kind == "out":
            _, _, findings, derived, summaries = message
            for finding in findings:
                self._on_finding(finding)
            if derived:
                self._on_derived(derived)
            for summary in summaries:
                self._on_summary(summary)
            return  # its "done" follows
        if kind == "reply":
            _, _, ask, value = message
            if isinstance(value, bytes):  # a snapshot: the journal before it is covered
                self._covered(seq, value)
            reply = self._replies.get(ask)
            if reply is not None and not reply.done():
                reply.set_result(value)
        self._done = max(self._done, seq)

    def _covered(self, seq: int, blob: bytes) -> None:
        self._last_snapshot = blob
        self._snapshot_asked = False
        for command in self._journal.truncate_through(seq):
            if command[0] == "residents":
                self._base_residents = command[1]

    def _died(self, conn: Connection) -> None:
        if self._stopping or conn is not self._conn:
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
            "detector worker ended (exit code %s); starting it again in %.1f s from the last"
            " snapshot, with the %d messages given to it since",
            code,
            pause,
            self._journal.messages,
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
    wave.warm()  # here, not at the first waveform
    tune_collector()
    conn.send(("up", 0))  # imported and listening: the watchdog counts from now
    while True:
        try:
            seq, command = conn.recv()
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
                if command[2] is not None:
                    runner.resume(command[2])
            elif kind == "late":
                runner.analyse_late()
            elif kind == "snapshot":
                reply = ("reply", seq, command[1], runner.snapshot())
            elif kind == "sync":
                reply = ("reply", seq, command[1], None)
        except Exception:
            log.exception("detector command %s failed", kind)
        if findings or derived or summaries:
            conn.send(("out", seq, list(findings), list(derived), list(summaries)))
            findings.clear()
            derived.clear()
            summaries.clear()
        if seq:
            conn.send(reply or ("done", seq))
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
