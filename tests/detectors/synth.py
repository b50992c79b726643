"""Synthetic pad waveforms with known rates: drift, integer units, movement bursts, any fs."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def pad_signal(
    *,
    fs: float,
    seconds: float,
    hr_bpm: float = 62.0,
    rr_per_min: float = 14.0,
    seed: int = 1,
    breath_amp: float = 400.0,
    beat_amp: float = 40.0,
    drift: float = 800.0,
    noise: float = 4.0,
    pauses: tuple[tuple[float, float], ...] = (),
    movements: tuple[tuple[float, float], ...] = (),
    offset: float = 20_000.0,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """A mixed `raw` channel in integer units, and the true breath peak times (s).

    Breathing is a skewed sine at `rr_per_min` with rate jitter, stopped during `pauses`
    (start_s, end_s); heartbeats are damped 6 Hz bursts at `hr_bpm` with beat-to-beat jitter;
    the baseline drifts by a random walk plus a slow sine; `movements` add large broadband bursts.
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * fs)
    t = np.arange(n) / fs
    # Breathing phase with slow rate variation; paused spans hold the exhaled position.
    inst = rr_per_min / 60.0 * (1 + 0.05 * np.sin(2 * np.pi * t / 47.0))
    breathing = np.ones(n, dtype=bool)
    for start, end in pauses:
        breathing &= ~((t >= start) & (t < end))
    phase = np.cumsum(np.where(breathing, inst, 0.0)) / fs
    resp = -np.cos(2 * np.pi * phase)
    resp = breath_amp / 2 * (resp + 0.25 * np.sin(4 * np.pi * phase))
    cycles = np.floor(phase)
    peaks = t[1:][np.diff(cycles) > 0] - 0.5 / (rr_per_min / 60.0)
    beat_times = [0.0]
    while beat_times[-1] < seconds:
        beat_times.append(beat_times[-1] + 60.0 / hr_bpm * (1 + 0.03 * rng.standard_normal()))
    bcg = np.zeros(n)
    kernel_t = np.arange(int(0.4 * fs)) / fs
    kernel = np.sin(2 * np.pi * 6.0 * kernel_t) * np.exp(-kernel_t / 0.08)
    for bt in beat_times:
        i = int(bt * fs)
        if i < n:
            m = min(len(kernel), n - i)
            bcg[i : i + m] += beat_amp * kernel[:m]
    base = (
        offset
        + drift * np.sin(2 * np.pi * t / 600.0)
        + np.cumsum(rng.normal(0, 2.0, n)) / np.sqrt(fs)
    )
    x = base + resp + bcg + rng.normal(0, noise, n)
    for start, end in movements:
        sel = (t >= start) & (t < end)
        x[sel] += rng.normal(0, 30 * breath_amp, sel.sum()).cumsum() / np.sqrt(fs) * 0.3
    return np.round(x).astype(np.int64), peaks
