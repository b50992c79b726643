"""The detector worker: what it was given survives its death or a hang, once, in order."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import signal
import time
from collections.abc import Awaitable, Callable

import pytest

from bedwatch.detector_process import DetectorProcess, pack, unpack
from detectors.findings import Finding, FindingKind
from detectors.settings import ResidentConfig
from ingest.protocol import Decoded
from ingest.records import (
    Channel,
    DeviceEvent,
    DeviceId,
    DeviceKind,
    EventType,
    MattressSample,
    ResidentId,
    WristbandSample,
)

NOW = int(time.time() * 1000)
RESIDENT = ResidentId("r-0001")
BAND = DeviceId("band-0001")
CONFIG = {RESIDENT: ResidentConfig(RESIDENT, "Asia/Shanghai", {BAND: DeviceKind.WRISTBAND})}


def press(ts_ms: int) -> Decoded:
    event = DeviceEvent(BAND, RESIDENT, ts_ms, EventType.SOS)
    return Decoded(ts_ms, f"bedwatch/v1/{BAND}/event", b"", BAND, Channel.EVENT, [event], [])


def with_worker(
    scenario: Callable[[DetectorProcess, list[Finding]], Awaitable[None]], watchdog_s: float = 15
) -> None:
    async def main() -> None:
        findings: list[Finding] = []
        worker = DetectorProcess(
            on_finding=findings.append,
            on_derived=lambda rows: None,
            on_summary=lambda summary: None,
            clock=lambda: NOW,
            watchdog_s=watchdog_s,
        )
        worker.start(asyncio.get_running_loop())
        try:
            worker.set_residents(CONFIG)
            await worker.sync()
            await scenario(worker, findings)
        finally:
            pid = worker.pid
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)  # a stopped worker cannot stop
            worker.stop()
            await asyncio.to_thread(worker.join)

    asyncio.run(main())


async def synced(worker: DetectorProcess, timeout_s: float = 30) -> None:
    """A sync that is asked again while the worker is being replaced."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            await worker.sync()
            return
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


def sos_presses(findings: list[Finding]) -> list[int]:
    return [f.at_ms for f in findings if f.kind is FindingKind.SOS and not f.cleared]


@pytest.mark.slow
def test_an_sos_in_the_pipe_of_a_worker_that_dies_is_detected_by_the_next() -> None:
    async def scenario(worker: DetectorProcess, findings: list[Finding]) -> None:
        pid = worker.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)  # it takes nothing more in
        worker.feed([press(NOW - 1000)])
        await asyncio.sleep(0.2)  # the press is in its pipe
        os.kill(pid, signal.SIGKILL)
        await synced(worker)
        assert sos_presses(findings) == [NOW - 1000]
        assert worker.restarts == 1

    with_worker(scenario)


@pytest.mark.slow
def test_output_already_handed_on_is_not_repeated_by_the_next_worker() -> None:
    async def scenario(worker: DetectorProcess, findings: list[Finding]) -> None:
        worker.feed([press(NOW - 3000)])
        await worker.sync()
        assert sos_presses(findings) == [NOW - 3000]
        pid = worker.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # the next one is given the press again, from the journal
        await asyncio.sleep(0.5)
        worker.feed([press(NOW - 1000)])
        await synced(worker)
        assert sos_presses(findings) == [NOW - 3000, NOW - 1000]
        assert worker.restarts == 1

    with_worker(scenario)


@pytest.mark.slow
def test_a_hung_worker_is_killed_by_the_watchdog_and_its_input_detected() -> None:
    async def scenario(worker: DetectorProcess, findings: list[Finding]) -> None:
        pid = worker.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        hung_at = time.monotonic()
        worker.feed([press(NOW - 1000)])
        while not sos_presses(findings) and time.monotonic() - hung_at < 20:
            worker.tick(NOW)  # the service's clock; the watchdog looks at each tick
            await asyncio.sleep(0.2)
        assert sos_presses(findings) == [NOW - 1000]
        assert worker.killed_hung == 1
        assert 2 <= time.monotonic() - hung_at < 15  # 2 s watchdog, a pause, a new worker

    with_worker(scenario, watchdog_s=2)


def test_the_journal_is_bounded_by_snapshots() -> None:
    async def scenario(worker: DetectorProcess, findings: list[Finding]) -> None:
        for i in range(300):
            worker.feed([press(NOW - 600_000 + i * 1000) for _ in range(200)])
        await worker.sync()
        await worker.sync()
        assert worker.journal_messages < 60_000 / 2  # 60,000 fed; snapshots covered the rest

    with_worker(scenario)


def test_messages_cross_the_pipe_as_they_were_decoded() -> None:
    pad = DeviceId("mat-0001")
    samples: list[MattressSample] = [
        MattressSample(pad, RESIDENT, NOW + 1000 * k, 61.0 + k, 14.0, k, 1, 88) for k in range(9)
    ]
    samples.append(MattressSample(pad, RESIDENT, NOW + 9000, None, None, 0, 0, 3))
    band = WristbandSample(BAND, RESIDENT, NOW, 70.0, 97.0, 80, 1, None)
    messages = [
        Decoded(NOW, "t", b"", pad, Channel.TELEMETRY, list(samples), []),
        Decoded(NOW + 1, "t", b"", BAND, Channel.TELEMETRY, [band], []),
        press(NOW + 2),
        Decoded(NOW + 3, "t", b"", pad, Channel.TELEMETRY, [], []),  # rejected: nothing to detect
    ]
    crossed = [unpack(p) for p in pickle.loads(pickle.dumps(pack(messages)))]
    assert [(d.device_id, d.channel, d.received_at_ms, d.records) for d in crossed] == [
        (d.device_id, d.channel, d.received_at_ms, d.records) for d in messages[:3]
    ]
    assert all(type(r) is MattressSample for r in crossed[0].records)
