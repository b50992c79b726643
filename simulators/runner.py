"""Run a simulated fleet against a broker: build the nights, connect, play, report, write truth."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from simulators.fleet import FleetLoop, FleetOptions, FleetStats, SimClock, raise_fd_limit
from simulators.ground_truth import TruthWriter
from simulators.night import Night, NightOptions, make_night
from simulators.scenarios import Role, ScenarioSpec
from simulators.site import residents_of

log = logging.getLogger(__name__)

WINDOW_TAIL_MS = 1000  # > the largest transmit latency the streams add (under 300 ms)


@dataclass(frozen=True, slots=True)
class RunConfig:
    start_ms: int  # simulated (device) time at which the run begins
    duration_s: float
    beds: int = 1
    first_bed: int = 1
    seed: int = 1
    wristbands: bool = True  # a mattress-only fleet halves the connections
    loops: int = 1  # selector threads; one is best on two cores shared with the broker
    scenarios: Sequence[ScenarioSpec] = ()
    night: NightOptions = field(default_factory=NightOptions)
    transport: FleetOptions = field(default_factory=FleetOptions)
    truth_path: Path | None = None
    connect_timeout_s: float = 120.0
    drain_timeout_s: float = 15.0


@dataclass(frozen=True, slots=True)
class Progress:
    devices: int
    connected: int
    published: int
    acked: int
    samples: int
    sim_ms: int
    wall_s: float
    phase: str


@dataclass(slots=True)
class RunResult:
    stats: FleetStats
    nights: list[Night]
    connect_wall_s: float = 0.0
    play_wall_s: float = 0.0
    play_cpu_s: float = 0.0
    total_cpu_s: float = 0.0
    play_published: int = 0
    play_samples: int = 0
    truth_lines: int = 0
    phases: list[str] = field(default_factory=list)


def build_nights(config: RunConfig) -> list[Night]:
    end_ms = config.start_ms + int(config.duration_s * 1000)
    return [
        make_night(
            d,
            config.seed,
            start_ms=config.start_ms,
            end_ms=end_ms,
            scenarios=config.scenarios,
            options=config.night,
        )
        for d in residents_of(config.beds, config.first_bed)
    ]


def run_fleet(
    config: RunConfig,
    progress: Callable[[Progress], None] | None = None,
    progress_every_s: float = 1.0,
    stop: threading.Event | None = None,
) -> RunResult:
    """Play the configured fleet in real (or `speed` times) time; blocks until done or stopped."""
    cpu0 = time.process_time()
    stop = stop or threading.Event()
    nights = build_nights(config)
    truth_lines = _write_truth(config, nights)
    roles = (Role.MATTRESS, Role.WRISTBAND) if config.wristbands else (Role.MATTRESS,)
    wanted = len(nights) * len(roles) + 64
    if raise_fd_limit(wanted) < wanted:
        raise ValueError(
            f"{wanted} open files needed (a socket per device) but the limit is "
            f"{raise_fd_limit(0)}; run fewer beds or mattresses only (--no-wristbands)"
        )
    clock = SimClock(config.start_ms, config.transport.speed)
    loops = [FleetLoop(config.transport, clock, FleetStats()) for _ in range(config.loops)]
    for i, night in enumerate(nights):
        for role in roles:
            loops[i % len(loops)].add(night, role)
    result = RunResult(FleetStats(), nights, truth_lines=truth_lines)
    phase = ["connect"]
    marks: dict[str, float] = {"t0": time.monotonic()}
    barrier = threading.Barrier(len(loops), action=lambda: _start_play(clock, loops, phase, marks))
    end_ms = config.start_ms + int(config.duration_s * 1000)
    threads = [
        threading.Thread(
            target=_drive, args=(loop, config, barrier, end_ms, stop), name=f"sim-loop-{i}"
        )
        for i, loop in enumerate(loops)
    ]
    for t in threads:
        t.start()
    try:
        _watch(threads, loops, clock, phase, marks, progress, progress_every_s, end_ms)
    except KeyboardInterrupt:
        stop.set()
        for t in threads:
            t.join()
    _finish(result, loops, marks, cpu0)
    return result


def _write_truth(config: RunConfig, nights: list[Night]) -> int:
    if config.truth_path is None:
        return 0
    with TruthWriter(config.truth_path) as writer:
        for night in nights:
            writer.write(night.truth())
        return writer.lines


def _start_play(
    clock: SimClock, loops: list[FleetLoop], phase: list[str], marks: dict[str, float]
) -> None:
    marks["play"] = time.monotonic()
    marks["play_cpu"] = time.process_time()
    marks["play_published"] = sum(lp.stats.published for lp in loops)
    marks["play_samples"] = sum(lp.stats.samples for lp in loops)
    phase[0] = "play"
    clock.start()
    for loop in loops:
        loop.schedule_all()


def _drive(
    loop: FleetLoop,
    config: RunConfig,
    barrier: threading.Barrier,
    end_ms: int,
    stop: threading.Event,
) -> None:
    gap = 1.0 / max(config.transport.connect_rate / config.loops, 1.0)
    next_at = time.monotonic()
    for dev in loop.devices:
        while time.monotonic() < next_at:
            loop.step(max_wait_s=max(next_at - time.monotonic(), 0.0))
        loop.connect(dev)
        next_at += gap
        if stop.is_set():
            break
    deadline = time.monotonic() + config.connect_timeout_s
    while (
        loop.stats.connected < len(loop.devices)
        and time.monotonic() < deadline
        and not stop.is_set()
    ):
        loop.step()
    if loop.stats.connected < len(loop.devices):
        log.warning(
            "%d of %d devices not connected; playing anyway",
            len(loop.devices) - loop.stats.connected,
            len(loop.devices),
        )
    barrier.wait()
    while loop.clock.now_ms() < end_ms and not stop.is_set():
        loop.step(until_ms=end_ms)
    # Messages of the window's last samples go out a little after it (their transmit latency),
    # and a loop running behind may pass end_ms with some still due: play the short tail too.
    while not stop.is_set() and loop.clock.now_ms() < end_ms + WINDOW_TAIL_MS:
        loop.step()
    deadline = time.monotonic() + config.drain_timeout_s
    while loop.stats.acked < loop.stats.published and time.monotonic() < deadline:
        loop.step(until_ms=end_ms)
    loop.close()


def _watch(
    threads: list[threading.Thread],
    loops: list[FleetLoop],
    clock: SimClock,
    phase: list[str],
    marks: dict[str, float],
    progress: Callable[[Progress], None] | None,
    every_s: float,
    end_ms: int,
) -> None:
    while any(t.is_alive() for t in threads):
        for t in threads:
            t.join(timeout=every_s / len(threads))
        if progress is not None:
            progress(_snapshot(loops, clock, phase[0], marks, end_ms))
    if progress is not None:
        progress(_snapshot(loops, clock, "done", marks, end_ms))


def _snapshot(
    loops: list[FleetLoop], clock: SimClock, phase: str, marks: dict[str, float], end_ms: int
) -> Progress:
    return Progress(
        devices=sum(lp.stats.devices for lp in loops),
        connected=sum(lp.stats.connected for lp in loops),
        published=sum(lp.stats.published for lp in loops),
        acked=sum(lp.stats.acked for lp in loops),
        samples=sum(lp.stats.samples for lp in loops),
        sim_ms=min(clock.now_ms(), end_ms),
        wall_s=time.monotonic() - marks["t0"],
        phase=phase,
    )


def _finish(
    result: RunResult, loops: list[FleetLoop], marks: dict[str, float], cpu0: float
) -> None:
    total = result.stats
    for lp in loops:
        s = lp.stats
        total.devices += s.devices
        total.published += s.published
        total.acked += s.acked
        total.samples += s.samples
        total.payload_bytes += s.payload_bytes
        total.reconnects += s.reconnects
        total.power_cuts += s.power_cuts
        total.commands.extend(s.commands)
        total.connected += s.connected
    now = time.monotonic()
    play = marks.get("play", now)
    result.connect_wall_s = play - marks["t0"]
    result.play_wall_s = now - play
    result.play_cpu_s = time.process_time() - marks.get("play_cpu", time.process_time())
    result.total_cpu_s = time.process_time() - cpu0
    result.play_published = total.published - int(marks.get("play_published", 0))
    result.play_samples = total.samples - int(marks.get("play_samples", 0))
