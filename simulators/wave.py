"""Raw pad signal at 50 Hz whose breaths and beats follow the latent breathing and heart rate."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from simulators.vitals import Vitals

WAVE_FS_HZ = 50
RESP_BASELINE = 512
RAW_BASELINE = 20_000

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


class WaveMode(StrEnum):
    OFF = "off"
    SPLIT = "split"  # separate `resp` and `bcg` channels
    RAW = "raw"  # one mixed channel, as most piezo and fibre-optic pads give


@dataclass(slots=True)
class WaveState:
    """What must carry from one chunk to the next so the signal has no seams."""

    resp_phase: float = 0.0
    beat_phase: float = 0.0
    bcg_tail: FloatArray = field(default_factory=lambda: np.zeros(0))
    drift: float = 0.0


def _beat_kernel(fs: int) -> FloatArray:
    """A ballistocardiogram complex: a damped ~7 Hz oscillation (H, I, J, K waves) of ~0.4 s."""
    t = np.arange(int(0.4 * fs)) / fs
    return np.asarray(np.sin(2 * np.pi * 7 * t) * np.exp(-t / 0.09), dtype=np.float64)


_KERNEL = _beat_kernel(WAVE_FS_HZ)


def render_wave(
    v: Vitals, state: WaveState, rng: np.random.Generator, fs: int = WAVE_FS_HZ
) -> tuple[IntArray, IntArray, IntArray]:
    """(resp, bcg, raw) for a chunk of vitals, `fs` values per second each."""
    occ = np.repeat(v.occ.astype(np.float64), fs)
    move = np.repeat(v.move.astype(np.float64), fs)
    breathing = np.repeat(v.breathing, fs)
    # Phase advances at the breathing rate and stops in a pause: the chest is still.
    step = np.repeat(v.rr_true / 60.0, fs) / fs * breathing * occ
    phase = state.resp_phase + np.cumsum(step)
    state.resp_phase = float(phase[-1] % 1.0)
    two_pi = 2 * np.pi * phase
    resp = 180.0 * occ * (np.sin(two_pi) + 0.25 * np.sin(2 * two_pi + 0.6))
    beats = _beats(v, state, fs, occ)
    bcg = _convolve_carry(beats * 60.0, state)
    artefact = move > 0
    noise_n = len(resp)
    resp += rng.normal(0, 3, noise_n) + artefact * rng.normal(0, 1, noise_n) * move * 6
    bcg += rng.normal(0, 2, noise_n) + artefact * rng.normal(0, 1, noise_n) * move * 3
    state.drift += float(rng.normal(0, 40))
    baseline = state.drift + np.cumsum(rng.normal(0, 0.8, noise_n))
    state.drift = float(baseline[-1])
    raw = RAW_BASELINE + baseline + 6.0 * resp + 3.0 * bcg
    return (
        np.round(resp + RESP_BASELINE).astype(np.int64),
        np.round(bcg).astype(np.int64),
        np.round(raw).astype(np.int64),
    )


def _beats(v: Vitals, state: WaveState, fs: int, occ: FloatArray) -> FloatArray:
    """1.0 at each sample where a heartbeat starts: where the beat phase passes a whole number."""
    step = np.repeat(v.hr_true / 60.0, fs) / fs * np.repeat(v.heart, fs)
    start = state.beat_phase
    phase = start + np.cumsum(step)
    state.beat_phase = float(phase[-1] % 1.0)
    whole = np.floor(phase)
    prev = np.concatenate(([np.floor(start)], whole[:-1]))
    return np.asarray((whole > prev) * occ, dtype=np.float64)


def _convolve_carry(impulses: FloatArray, state: WaveState) -> FloatArray:
    full = np.convolve(impulses, _KERNEL)
    n = len(impulses)
    tail = state.bcg_tail
    full[: len(tail)] += tail
    state.bcg_tail = full[n:].copy()
    return full[:n]
