"""Breaths and heartbeats from a pad's waveform: band-pass, breath peaks, beat periodicity."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def find_peaks(x: FloatArray, **how: Any) -> tuple[npt.NDArray[np.intp], dict[str, Any]]:
    """`scipy.signal.find_peaks`, imported when first needed: scipy.signal takes seconds to
    import, and the service's own process (which restores these types) never analyses a wave.
    The detector worker calls `warm()` at its start instead."""
    from scipy.signal import find_peaks as scipy_find_peaks

    peaks, properties = scipy_find_peaks(x, **how)
    return peaks, properties


def warm() -> None:
    """Import what analysing a wave needs now rather than at the first wave."""
    import scipy.signal  # noqa: F401


TARGET_FS_HZ = 25.0  # analysis rate: high enough for a ballistocardiogram's 1-10 Hz
BREATH_BAND_HZ = (0.1, 0.7)
BEAT_BAND_HZ = (2.5, 10.0)  # above breathing's harmonics; the envelope carries the beat
HR_RANGE_BPM = (35.0, 180.0)
MIN_BREATH_INTERVAL_S = 1.5  # 40 breaths/min
EDGE_S = 2.0  # peaks this close to the window's end are not trusted yet (filter edge)
MOVEMENT_FACTOR = 4.0  # a second this much more active than the typical second is movement


@dataclass(frozen=True, slots=True)
class WaveEstimate:
    """What one window of pad signal says. Times are seconds from the window's first sample."""

    hr_bpm: float | None  # None: no clear beat periodicity
    rr_per_min: float | None  # 0: no breath in the last 10 s (as the protocol's rr); None: unknown
    breaths_s: tuple[float, ...]  # breath (inhalation peak) times, within [0, duration - EDGE_S]
    duration_s: float
    movement_fraction: float  # share of the window masked as movement
    movement_end_s: float  # end of the last movement burst; -1.0 when none
    breath_amplitude: float  # typical peak-to-peak breath size, in the signal's units
    activity: float  # typical per-second activity (for the next window's movement reference)
    quality: int  # 0-100: how periodic the beats are


def analyze(
    signal: npt.ArrayLike,
    fs_hz: float,
    *,
    bcg: npt.ArrayLike | None = None,
    breath_ref: float = 0.0,
    activity_ref: float = 0.0,
) -> WaveEstimate:
    """Heart rate, breathing rate and breath times of one window (20-60 s) of pad signal.

    `signal` is a pad's mixed `raw` channel (breathing at 0.1-0.7 Hz and ballistocardiogram at
    1-10 Hz on a drifting baseline) or its `resp` channel, then with `bcg` for the beats; any
    units (integer pad units are fine), any `fs_hz` from 10 to 250. The signal is averaged down
    to 25-50 Hz; seconds far more active than the window's typical second are masked as
    movement; breaths are the peaks of the 0.1-0.7 Hz band (`scipy.signal.find_peaks`) with a
    prominence of at least 30 % of the typical breath, where `breath_ref` (the typical breath of
    earlier windows) keeps a pause from being read as tiny breaths; the heart rate is the
    strongest periodicity of the 1-10 Hz band's envelope, between 35 and 180 /min.
    """
    x = np.asarray(signal, dtype=np.float64)
    q = decimation(fs_hz)
    fs = fs_hz / q
    x = downsample(x, q)
    mask, activity, moves_end = movement_mask(x, fs, activity_ref)
    x = _fill(detrend(x), mask)
    spectrum = _spectrum(x)
    breaths, amplitude = find_breaths(
        _band(spectrum, len(x), fs, BREATH_BAND_HZ), fs, mask, breath_ref
    )
    duration = len(x) / fs
    rr = _breathing_rate(breaths, mask, fs, duration)
    if bcg is not None:
        beats = _fill(detrend(downsample(np.asarray(bcg, dtype=np.float64), q)), mask)
        spectrum = _spectrum(beats)
    hr, quality = heart_rate(_band(spectrum, len(x), fs, BEAT_BAND_HZ), fs, mask)
    return WaveEstimate(
        hr_bpm=hr,
        rr_per_min=rr,
        breaths_s=tuple(float(t) for t in breaths),
        duration_s=duration,
        movement_fraction=float(mask.mean()) if len(mask) else 0.0,
        movement_end_s=moves_end,
        breath_amplitude=amplitude,
        activity=activity,
        quality=quality,
    )


def decimation(fs_hz: float) -> int:
    """The integer factor that brings `fs_hz` down to 25-50 Hz (1 below 50 Hz)."""
    return max(1, int(fs_hz // TARGET_FS_HZ))


def downsample(x: FloatArray, q: int) -> FloatArray:
    """Mean of each `q` samples: a cheap anti-alias filter that keeps the beats' band."""
    if q == 1:
        return x
    n = len(x) // q * q
    out: FloatArray = x[:n].reshape(-1, q).mean(axis=1)
    return out


def movement_mask(
    x: FloatArray, fs: float, activity_ref: float
) -> tuple[npt.NDArray[np.bool_], float, float]:
    """Samples in seconds of movement; the typical second's activity; where movement last ended."""
    seg = max(1, round(fs))
    n = len(x) // seg
    mask = np.zeros(len(x), dtype=bool)
    if n < 3:
        return mask, 0.0, -1.0
    d = np.abs(np.diff(x[: n * seg], prepend=x[0])).reshape(n, seg).mean(axis=1)
    typical = float(np.median(d))
    # A window mostly in movement has a moving "typical" second: earlier windows say what is calm.
    base = min(typical, 2 * activity_ref) if activity_ref > 0 else typical
    moving = d > MOVEMENT_FACTOR * base + 1e-9
    if not moving.any():
        return mask, typical, -1.0
    moving = np.convolve(moving, np.ones(3), mode="same") > 0  # a second's margin either side
    mask[: n * seg] = np.repeat(moving, seg)
    mask[n * seg :] = moving[-1]
    last = int(np.flatnonzero(moving)[-1])
    return mask, typical, min((last + 1) * seg / fs, len(x) / fs)


def _fill(x: FloatArray, mask: npt.NDArray[np.bool_]) -> FloatArray:
    """Bridge masked samples linearly so the filters do not ring on movement bursts."""
    if not mask.any() or mask.all():
        return x
    idx = np.arange(len(x))
    out = x.copy()
    out[mask] = np.interp(idx[mask], idx[~mask], x[~mask])
    return out


def detrend(x: FloatArray) -> FloatArray:
    """Remove the least-squares line: the pad's baseline drift within one window."""
    n = len(x)
    if n < 2:
        return x - x.mean() if n else x
    t = np.arange(n, dtype=np.float64) - (n - 1) / 2
    centred = x - x.mean()
    out: FloatArray = centred - t * (np.dot(t, centred) / np.dot(t, t))
    return out


def _spectrum(x: FloatArray) -> npt.NDArray[np.complex128]:
    # The mirrored extension makes the window's ends meet, so the zero-phase FFT filter does
    # not ring at the edges (the same trick as a DCT).
    return np.fft.rfft(np.concatenate((x, x[::-1])))


@lru_cache(maxsize=256)
def _response(n: int, fs: float, band: tuple[float, float]) -> FloatArray:
    """Band-pass gain per FFT bin with raised-cosine edges a quarter of the low edge wide."""
    f = np.fft.rfftfreq(2 * n, 1.0 / fs)
    low, high = band[0], min(band[1], 0.45 * fs)
    width_lo, width_hi = 0.5 * low, 0.25 * high
    rise = np.clip((f - (low - width_lo / 2)) / width_lo, 0.0, 1.0)
    fall = np.clip(((high + width_hi / 2) - f) / width_hi, 0.0, 1.0)
    gain: FloatArray = (0.5 - 0.5 * np.cos(np.pi * rise)) * (0.5 - 0.5 * np.cos(np.pi * fall))
    return gain


def _band(
    spectrum: npt.NDArray[np.complex128], n: int, fs: float, band: tuple[float, float]
) -> FloatArray:
    filtered: FloatArray = np.fft.irfft(spectrum * _response(n, fs, band), 2 * n)[:n]
    return filtered


def find_breaths(
    x: FloatArray, fs: float, mask: npt.NDArray[np.bool_], breath_ref: float
) -> tuple[FloatArray, float]:
    """Breath peak times (s) in a breathing-band signal, outside movement; the typical breath."""
    y = x
    if len(y) < 4 * fs:
        return np.empty(0), 0.0
    calm = y[~mask] if (~mask).sum() > fs else y
    amplitude = float(2.83 * calm.std())  # peak to peak of a sine with this spread
    prominence = 0.3 * max(amplitude, 0.5 * breath_ref)
    if prominence <= 0:
        return np.empty(0), amplitude
    peaks, _ = find_peaks(
        y, distance=max(1, int(MIN_BREATH_INTERVAL_S * fs)), prominence=prominence
    )
    peaks = peaks[~mask[peaks] & (peaks < len(x) - EDGE_S * fs)]
    return peaks / fs, amplitude


def _breathing_rate(
    breaths: FloatArray, mask: npt.NDArray[np.bool_], fs: float, duration: float
) -> float | None:
    horizon = duration - EDGE_S
    recent = mask[int(max(0.0, horizon - 10.0) * fs) :]
    if not recent.any() and horizon >= 10.0 and (not len(breaths) or breaths[-1] < horizon - 10.0):
        return 0.0  # no breathing movement in the last 10 s
    if len(breaths) < 3:
        return None
    intervals = np.diff(breaths)
    median = float(np.median(intervals))
    if median <= 0 or np.mean(np.abs(intervals - median) > 0.5 * median) > 0.34:
        return None  # too irregular to call a rate
    return round(60.0 / median, 1)


def heart_rate(x: FloatArray, fs: float, mask: npt.NDArray[np.bool_]) -> tuple[float | None, int]:
    """Beats/min from a beat-band signal's envelope autocorrelation; a 0-100 quality."""
    y = x
    if len(y) < 8 * fs or mask.mean() > 0.5:
        return None, 0
    width = max(1, int(0.2 * fs))
    env = np.convolve(np.abs(y), np.ones(width) / width, mode="same")
    env[mask] = float(np.mean(env[~mask]))
    env -= env.mean()
    n = len(env)
    spec = np.fft.rfft(env, 2 * n)
    ac = np.fft.irfft(spec * np.conj(spec))[:n]
    if ac[0] <= 0:
        return None, 0
    ac /= ac[0]
    lo = int(fs * 60.0 / HR_RANGE_BPM[1])
    hi = min(n - 2, int(fs * 60.0 / HR_RANGE_BPM[0]) + 1)
    peaks, _ = find_peaks(ac[lo : hi + 1])
    if not len(peaks):
        return None, 0
    peaks += lo
    best = float(ac[peaks].max())
    # The first peak nearly as high as the best: a multiple of the period is also periodic.
    k = int(peaks[np.argmax(ac[peaks] >= 0.7 * best)])
    quality = min(100, max(0, round(100 * best)))
    if best < 0.2:
        return None, quality
    a, b, c = ac[k - 1], ac[k], ac[k + 1]
    denom = a - 2 * b + c
    shift = 0.5 * (a - c) / denom if denom < 0 else 0.0
    return round(float(60.0 * fs / (k + shift)), 1), quality
