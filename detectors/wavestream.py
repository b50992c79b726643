"""A pad's waveform as a stream: a short buffer, an analysis per step, breaths in device time."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from detectors.wave import WaveEstimate, analyze, decimation, downsample

WINDOW_S = 30.0  # analysis window, and all of the signal that is kept
STEP_S = 10.0  # one derived sample and one breath update per step
MIN_WINDOW_S = 20.0


@dataclass(slots=True)
class WaveState:
    """One pad's waveform analysis. The sample buffers are not snapshotted (they refill in 20 s)."""

    fs_in: float = 0.0
    channel: str = ""  # "raw" or "resp"
    next_t0_ms: float = -1.0  # where the next block should start; -1: the stream must restart
    end_ms: float = 0.0  # device time just after the buffer's last sample
    last_step_ms: float = -1.0
    breath_ref: float = 0.0  # typical breath size of recent calm windows
    activity_ref: float = 0.0
    breath_period_ms: float = 4_000.0  # typical interval between breaths lately
    last_breath_ms: int = -1  # last breath (or the end of movement); -1: unknown
    counted_from_ms: int = -1  # the pause that began at this breath was counted into the night
    pause_fired: bool = False
    pause_from_ms: int = -1
    n: int = field(default=0, metadata={"snapshot": False})
    buf: npt.NDArray[np.float32] | None = field(default=None, metadata={"snapshot": False})
    bcg: npt.NDArray[np.float32] | None = field(default=None, metadata={"snapshot": False})
    # Input samples short of a whole decimation group, waiting for the next block.
    carry: tuple[float, ...] = field(default=(), metadata={"snapshot": False})
    carry_bcg: tuple[float, ...] = field(default=(), metadata={"snapshot": False})


def restart(w: WaveState, fs_in: float, channel: str, t0_ms: float) -> None:
    """Begin a fresh buffer (first block, a gap, or a new rate): nothing known about breaths."""
    size = _window_size(fs_in)
    w.fs_in, w.channel = fs_in, channel
    w.buf = np.zeros(size, dtype=np.float32)
    w.bcg = np.zeros(size, dtype=np.float32) if channel == "resp" else None
    w.n = 0
    w.carry = w.carry_bcg = ()
    w.end_ms = t0_ms
    w.last_step_ms = t0_ms
    w.last_breath_ms = -1
    w.next_t0_ms = t0_ms


def _window_size(fs_in: float) -> int:
    """Samples in one analysis window at the analysis rate (the buffer's size)."""
    return int(WINDOW_S * (fs_in / decimation(fs_in)))


def append(w: WaveState, samples: tuple[int, ...], bcg: tuple[int, ...] | None) -> None:
    """Add one block (already known to continue the stream) at the analysis rate.

    The buffer holds the last window and no more: a block that does not fit shifts out the
    oldest samples (a block longer than the window leaves its own end)."""
    assert w.buf is not None
    q = decimation(w.fs_in)
    w.next_t0_ms += len(samples) * 1000.0 / w.fs_in
    x, w.carry = _with_carry(w.carry, samples, q)
    y = None
    if w.bcg is not None and bcg is not None:
        y, w.carry_bcg = _with_carry(w.carry_bcg, bcg, q)
    _shift_in(w.buf, w.n, x)
    if w.bcg is not None:
        k = len(x)
        # A block without a whole bcg of its own length has none.
        _shift_in(w.bcg, w.n, y[:k] if y is not None and len(y) >= k else np.zeros(k))
    w.n = min(len(w.buf), w.n + len(x))
    w.end_ms = w.next_t0_ms - len(w.carry) * 1000.0 / w.fs_in


def _shift_in(buf: npt.NDArray[np.float32], n: int, x: npt.NDArray[np.float64]) -> None:
    """Append `x` to the first `n` samples of `buf`, shifting out the oldest where it is full."""
    size, k = len(buf), len(x)
    if k >= size:
        buf[:] = x[k - size :]
        return
    if n + k > size:
        keep = size - k
        buf[:keep] = buf[n - keep : n]
        n = keep
    buf[n : n + k] = x


def _with_carry(
    carry: tuple[float, ...], samples: tuple[int, ...], q: int
) -> tuple[npt.NDArray[np.float64], tuple[float, ...]]:
    """Samples averaged by `q`, and the incomplete last group, which waits for the next block."""
    x = np.fromiter(samples, np.float64, len(samples))
    if q == 1:
        return x, ()
    if carry:
        x = np.concatenate((np.asarray(carry), x))
    used = len(x) // q * q
    return downsample(x[:used], q), tuple(x[used:].tolist())


def window(w: WaveState) -> WaveEstimate | None:
    """Analyse the last WINDOW_S seconds once a step's worth of new signal has come."""
    fs = w.fs_in / decimation(w.fs_in)
    if w.buf is None or w.end_ms - w.last_step_ms < STEP_S * 1000 or w.n < MIN_WINDOW_S * fs:
        return None
    w.last_step_ms = w.end_ms
    start = max(0, w.n - int(WINDOW_S * fs))
    x = w.buf[start : w.n]
    bcg = w.bcg[start : w.n] if w.bcg is not None else None
    # The buffer already runs at the analysis rate: analyse it as such.
    est = analyze(x, fs, bcg=bcg, breath_ref=w.breath_ref, activity_ref=w.activity_ref)
    _learn(w, est)
    return est


def _learn(w: WaveState, est: WaveEstimate) -> None:
    """Update the references from windows of calm, regular breathing only."""
    if est.movement_fraction > 0.0:
        if est.movement_fraction > 0.3:
            w.breath_ref = 0.0  # a new position changes the breath's size: learn it again
        return
    if est.rr_per_min:
        w.breath_ref = (
            est.breath_amplitude
            if w.breath_ref == 0
            else (0.7 * w.breath_ref + 0.3 * est.breath_amplitude)
        )
        w.breath_period_ms = 0.7 * w.breath_period_ms + 0.3 * 60_000 / est.rr_per_min
    if est.activity > 0:
        w.activity_ref = (
            est.activity if w.activity_ref == 0 else (0.8 * w.activity_ref + 0.2 * est.activity)
        )


def window_start_ms(w: WaveState, est: WaveEstimate) -> float:
    return w.end_ms - est.duration_s * 1000.0
