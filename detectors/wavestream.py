"""A pad's waveform as a stream: a short buffer, an analysis per step, breaths in device time."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from detectors.wave import WaveEstimate, analyze, decimation, downsample

WINDOW_S = 30.0  # analysis window
STEP_S = 10.0  # one derived sample and one breath update per step
MIN_WINDOW_S = 20.0
BUFFER_S = 2 * WINDOW_S  # room to append before the buffer is compacted


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
    carry: list[float] = field(default_factory=list, metadata={"snapshot": False})
    carry_bcg: list[float] = field(default_factory=list, metadata={"snapshot": False})


def restart(w: WaveState, fs_in: float, channel: str, t0_ms: float) -> None:
    """Begin a fresh buffer (first block, a gap, or a new rate): nothing known about breaths."""
    fs = fs_in / decimation(fs_in)
    size = int(BUFFER_S * fs) + 1
    w.fs_in, w.channel = fs_in, channel
    w.buf = np.zeros(size, dtype=np.float32)
    w.bcg = np.zeros(size, dtype=np.float32) if channel == "resp" else None
    w.n = 0
    w.carry, w.carry_bcg = [], []
    w.end_ms = t0_ms
    w.last_step_ms = t0_ms
    w.last_breath_ms = -1
    w.next_t0_ms = t0_ms


def append(w: WaveState, samples: tuple[int, ...], bcg: tuple[int, ...] | None) -> None:
    """Add one block (already known to continue the stream) at the analysis rate."""
    assert w.buf is not None
    q = decimation(w.fs_in)
    w.next_t0_ms += len(samples) * 1000.0 / w.fs_in
    x = _with_carry(w.carry, samples, q)
    y = _with_carry(w.carry_bcg, bcg, q) if w.bcg is not None and bcg is not None else None
    k = len(x)
    if w.n + k > len(w.buf):
        # Compact to the last window, so appends stay amortised O(1).
        keep = min(w.n, int(WINDOW_S * w.fs_in / q))
        w.buf[:keep] = w.buf[w.n - keep : w.n]
        if w.bcg is not None:
            w.bcg[:keep] = w.bcg[w.n - keep : w.n]
        w.n = keep
        if k > len(w.buf) - keep:  # a block longer than the protocol allows: keep its end
            x, y, k = (
                x[-(len(w.buf) - keep) :],
                None if y is None else y[-(len(w.buf) - keep) :],
                len(w.buf) - keep,
            )
    w.buf[w.n : w.n + k] = x
    if w.bcg is not None:
        w.bcg[w.n : w.n + k] = y[:k] if y is not None and len(y) >= k else 0.0
    w.n += k
    w.end_ms = w.next_t0_ms - len(w.carry) * 1000.0 / w.fs_in


def _with_carry(carry: list[float], samples: tuple[int, ...], q: int) -> npt.NDArray[np.float64]:
    """Samples averaged by `q`; the incomplete last group waits in `carry` for the next block."""
    x = np.asarray(samples, dtype=np.float64)
    if q == 1:
        return x
    if carry:
        x = np.concatenate((np.asarray(carry), x))
    used = len(x) // q * q
    carry[:] = x[used:].tolist()
    return downsample(x[:used], q)


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
