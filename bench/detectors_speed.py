"""Detector speed and memory: a 1 Hz bed-night, a 50 Hz waveform night, state per bed.

Run: `uv run python bench/detectors_speed.py`. Targets (issue 14, one core): a bed-night of 1 Hz
pad samples through all detectors <= 0.05 s; waveform analysis of a 50 Hz bed-night <= 0.4 s;
detector memory <= 8 KB per bed. Also reported: the CPU one 10-sample pad message costs in
`DetectorRunner.accept` (what the service's detector worker does per telemetry message).
Timings are CPU time (time.process_time), the best of several runs, reported with the machine's
load average and as a share of the target, because the machine is shared.
"""

from __future__ import annotations

import argparse
import gc
import os
import time
import tracemalloc
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import numpy as np

from detectors.runner import DetectorRunner
from detectors.settings import ResidentConfig
from ingest.records import (
    DeviceId,
    DeviceKind,
    MattressSample,
    Record,
    ResidentId,
    WaveBlock,
    WristbandSample,
    time_of,
)

TARGET_TELEMETRY_S = 0.05  # a 1 Hz bed-night, all detectors
TARGET_WAVE_S = 0.4  # a 50 Hz waveform bed-night
TARGET_KB_PER_BED = 8.0
NIGHT_S = 8 * 3600
START_MS = int(datetime(2025, 1, 14, 14, 0, tzinfo=UTC).timestamp() * 1000)  # 22:00 Shanghai
BATCH = 10  # pad samples per telemetry message, as the simulator and real pads send them


def bed(i: int) -> tuple[ResidentId, DeviceId, DeviceId, ResidentConfig]:
    rid, mat, band = ResidentId(f"r-{i:05d}"), DeviceId(f"mat-{i:05d}"), DeviceId(f"band-{i:05d}")
    devices = {mat: DeviceKind.MATTRESS, band: DeviceKind.WRISTBAND}
    return rid, mat, band, ResidentConfig(rid, "Asia/Shanghai", devices)


def telemetry_night(i: int, seed: int = 1) -> list[list[Record]]:
    """A night of 1 Hz pad samples (and a band reading every 30 s), in messages."""
    rid, mat, band, _ = bed(i)
    rng = np.random.default_rng(seed)
    hr = 60 + np.cumsum(rng.normal(0, 0.05, NIGHT_S)) + rng.normal(0, 1.5, NIGHT_S)
    rr = 14 + rng.normal(0, 0.5, NIGHT_S)
    move = np.where(rng.random(NIGHT_S) < 0.02, rng.integers(5, 60, NIGHT_S), 0)
    occ = np.ones(NIGHT_S, dtype=int)
    occ[9000:9400] = 0  # a trip to the toilet
    rr[rng.random(NIGHT_S) < 0.01] = 0
    messages: list[list[Record]] = []
    for start in range(0, NIGHT_S, BATCH):
        batch: list[Record] = []
        for k in range(start, start + BATCH):
            empty = occ[k] == 0
            batch.append(
                MattressSample(
                    mat,
                    rid,
                    START_MS + 1000 * k,
                    None if empty else round(float(hr[k])),
                    None if empty else round(float(rr[k])),
                    int(move[k]),
                    int(occ[k]),
                    3 if empty else 85,
                )
            )
        messages.append(batch)
        if start % 30 == 0:
            messages.append(
                [
                    WristbandSample(
                        band,
                        rid,
                        START_MS + 1000 * start + 500,
                        round(float(hr[start])),
                        96,
                        80,
                        1,
                        0,
                    )
                ]
            )
    return messages


def raw_wave(seconds: int, fs: int, seed: int = 2) -> np.ndarray:
    """A mixed pad channel in integer units: drift, breathing, ballistocardiogram, noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(seconds * fs) / fs
    breathing = 300 * np.sin(2 * np.pi * 0.23 * t + 0.3 * np.sin(2 * np.pi * t / 60))
    beats = np.zeros(len(t))
    beats[
        (np.cumsum(rng.normal(1.0, 0.03, int(seconds * 1.1))) * fs).astype(int)[
            : int(seconds * 0.95)
        ]
    ] = 1
    kt = np.arange(int(0.4 * fs)) / fs
    bcg = np.convolve(beats, 40 * np.sin(2 * np.pi * 7 * kt) * np.exp(-kt / 0.09))[: len(t)]
    drift = 20_000 + 500 * np.sin(2 * np.pi * t / 900) + np.cumsum(rng.normal(0, 0.5, len(t)))
    signal: np.ndarray = np.round(drift + breathing + bcg + rng.normal(0, 3, len(t)))
    return signal.astype(np.int64)


def wave_night(i: int, fs: int = 50, block_s: int = 5) -> list[list[Record]]:
    rid, mat, _, _ = bed(i)
    x = raw_wave(NIGHT_S, fs)
    n = fs * block_s
    return [
        [
            WaveBlock(
                mat, rid, START_MS + i0 * 1000 // fs, fs, tuple(x[i0 : i0 + n].tolist()), None, None
            )
        ]
        for i0 in range(0, len(x), n)
    ]


def make_runner(beds: int) -> DetectorRunner:
    residents = {bed(i)[0]: bed(i)[3] for i in range(beds)}
    return DetectorRunner(
        residents=residents, on_finding=lambda f: None, on_derived=lambda rows: None
    )


def play(runner: DetectorRunner, messages: Sequence[list[Record]]) -> None:
    for records in messages:
        first = records[0]
        runner.accept(records, time_of(first))


def best_of(
    runs: int, setup: Callable[[], DetectorRunner], messages: Sequence[list[Record]]
) -> float:
    times = []
    for _ in range(runs):
        runner = setup()
        began = time.process_time()
        play(runner, messages)
        times.append(time.process_time() - began)
    return min(times)


def memory_per_bed(beds: int) -> tuple[float, float]:
    """Bytes of detector state per bed (traced allocations), and one bed's snapshot bytes."""
    warm = telemetry_night(0)[:60] + wave_night(0)[:12]  # 10 min of telemetry, 1 min of wave
    tracemalloc.start()
    # A full collection empties the interpreter's free lists: objects freed after use (a
    # window's breath times, say) are parked there and would count as state.
    gc.collect()
    before = tracemalloc.take_snapshot()
    runner = make_runner(beds)
    for i in range(beds):
        rid, mat, band, _ = bed(i)
        play(runner, [[_as(r, rid, mat, band) for r in m] for m in warm])
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    used = sum(s.size_diff for s in after.compare_to(before, "filename"))
    single = make_runner(1)
    play(single, warm)
    return used / beds, float(len(single.snapshot()))


def _as(record: Record, rid: ResidentId, mat: DeviceId, band: DeviceId) -> Record:
    """The same record for another bed."""
    if isinstance(record, MattressSample):
        return MattressSample(
            mat, rid, record.ts_ms, record.hr, record.rr, record.move, record.occ, record.sq
        )
    if isinstance(record, WaveBlock):
        return WaveBlock(mat, rid, record.t0_ms, record.fs_hz, record.raw, None, None)
    assert isinstance(record, WristbandSample)
    return WristbandSample(
        band, rid, record.ts_ms, record.hr, record.spo2, record.bat, record.worn, record.steps
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"cpus: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.2f}")
    telemetry = telemetry_night(0)
    samples = sum(len(m) for m in telemetry)
    t_tel = best_of(args.runs, lambda: make_runner(1), telemetry)
    print(
        f"1 Hz bed-night ({samples} records, all detectors): {t_tel:.3f} s "
        f"= {100 * t_tel / TARGET_TELEMETRY_S:.0f} % of the {TARGET_TELEMETRY_S} s target "
        f"({1e6 * t_tel / samples:.2f} us a record)"
    )
    pad_messages = [m for m in telemetry if len(m) == BATCH]
    t_msg = best_of(args.runs, lambda: make_runner(1), pad_messages) / len(pad_messages)
    print(f"a {BATCH}-sample pad message: {1e6 * t_msg:.1f} us of detection (accept)")
    wave = wave_night(0)
    # The pad's telemetry says someone is in bed, so breaths are followed as in service.
    in_bed: list[list[Record]] = [
        [MattressSample(bed(0)[1], bed(0)[0], START_MS - 1000, 60, 14, 0, 1, 90)]
    ]
    t_wave = best_of(args.runs, lambda: _primed(in_bed), wave)
    print(
        f"50 Hz waveform bed-night ({len(wave)} blocks, {NIGHT_S * 50} samples): "
        f"{t_wave:.3f} s = {100 * t_wave / TARGET_WAVE_S:.0f} % of the {TARGET_WAVE_S} s target"
    )
    per_bed, snap = memory_per_bed(200)
    print(
        f"detector memory: {per_bed / 1024:.1f} KB per bed (traced, 200 beds with telemetry "
        f"and waveform buffers) = {100 * per_bed / 1024 / TARGET_KB_PER_BED:.0f} % of the "
        f"{TARGET_KB_PER_BED:.0f} KB target; snapshot of one bed {snap:.0f} bytes"
    )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


def _primed(messages: Sequence[list[Record]]) -> DetectorRunner:
    runner = make_runner(1)
    play(runner, messages)
    return runner


if __name__ == "__main__":
    main()
