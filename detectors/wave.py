"""Breaths and heartbeats from a pad's waveform: band-pass, breath peaks, beat periodicity."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def find_peaks(
    x: FloatArray, *, distance: int | None = None, prominence: float | None = None
) -> npt.NDArray[np.intp]:
    """The peaks `scipy.signal.find_peaks(x, distance=..., prominence=...)` finds.

    Its compiled steps are called directly where scipy has them: find_peaks checks its
    arguments for longer than it takes to search a window of a few hundred samples. scipy is
    imported when first needed: scipy.signal takes seconds to import, and the service's own
    process (which restores these types) never analyses a wave. The detector worker calls
    `warm()` at its start instead."""
    steps = _peak_steps()
    if steps is None:
        from scipy.signal import find_peaks as scipy_find_peaks

        found: npt.NDArray[np.intp] = scipy_find_peaks(x, distance=distance, prominence=prominence)[
            0
        ]
        return found
    x = np.ascontiguousarray(x, dtype=np.float64)
    peaks: npt.NDArray[np.intp] = steps._local_maxima_1d(x)[0]
    if distance is not None:
        peaks = peaks[steps._select_by_peak_distance(peaks, x[peaks], distance)]
    if prominence is not None:
        peaks = peaks[prominence <= steps._peak_prominences(x, peaks, -1)[0]]
    return peaks


@cache
def _peak_steps() -> Any:
    """The compiled steps of scipy's find_peaks, or None where a scipy moved them."""
    try:
        from scipy.signal import _peak_finding_utils as steps
    except ImportError:
        return None
    needed = ("_local_maxima_1d", "_select_by_peak_distance", "_peak_prominences")
    return steps if all(hasattr(steps, name) for name in needed) else None


def warm() -> None:
    """Import what analysing a wave needs now rather than at the first wave."""
    import scipy.signal  # noqa: F401

    _peak_steps()


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
    spectrum = beat_spectrum = _spectrum(x)
    if bcg is not None:
        beats = _fill(detrend(downsample(np.asarray(bcg, dtype=np.float64), q)), mask)
        beat_spectrum = _spectrum(beats)
    breathing, beating = _bands(spectrum, beat_spectrum, len(x), fs)
    breaths, amplitude = find_breaths(breathing, fs, mask, breath_ref)
    duration = len(x) / fs
    rr = _breathing_rate(breaths, mask, fs, duration)
    hr, quality = heart_rate(beating, fs, mask)
    return WaveEstimate(
        hr_bpm=hr,
        rr_per_min=rr,
        breaths_s=tuple(breaths.tolist()),
        duration_s=duration,
        movement_fraction=_share(mask),
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
    if q == 2:  # the mean of two, as .mean() computes it, without its overhead
        pairs: FloatArray = (x[0:n:2] + x[1:n:2]) / 2
        return pairs
    out: FloatArray = x[:n].reshape(-1, q).mean(axis=1)
    return out


@lru_cache(maxsize=16)
def _boxcar(width: int) -> FloatArray:
    """A moving average's kernel (the same each window)."""
    kernel = np.ones(width) / width
    kernel.flags.writeable = False
    return kernel


def _count(mask: npt.NDArray[np.bool_]) -> int:
    """Samples set (`mask.any()` and `.all()` say less, for more overhead)."""
    return int(np.count_nonzero(mask))


def _share(mask: npt.NDArray[np.bool_]) -> float:
    """`mask.mean()` (0.0 for an empty mask): the share of samples set."""
    return _count(mask) / len(mask) if len(mask) else 0.0


def _median(values: FloatArray) -> float:
    """`np.median` of a short array (the same value) without its overhead."""
    ordered: list[float] = sorted(values.tolist())
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _std(x: FloatArray) -> float:
    """`x.std()` (the same value: the same sums in the same order) without its overhead."""
    deviation = x - x.sum() / len(x)
    deviation *= deviation
    return math.sqrt(deviation.sum() / len(x))


def movement_mask(
    x: FloatArray, fs: float, activity_ref: float
) -> tuple[npt.NDArray[np.bool_], float, float]:
    """Samples in seconds of movement; the typical second's activity; where movement last ended."""
    seg = max(1, round(fs))
    n = len(x) // seg
    mask = np.zeros(len(x), dtype=bool)
    if n < 3:
        return mask, 0.0, -1.0
    steps = np.empty(n * seg)
    steps[0] = 0.0  # what np.diff(..., prepend=x[0]) starts with
    np.subtract(x[1 : n * seg], x[: n * seg - 1], out=steps[1:])
    d = np.abs(steps, out=steps).reshape(n, seg).sum(axis=1) / seg  # each second's mean
    typical = _median(d)
    # A window mostly in movement has a moving "typical" second: earlier windows say what is calm.
    base = min(typical, 2 * activity_ref) if activity_ref > 0 else typical
    moving = d > MOVEMENT_FACTOR * base + 1e-9
    if not _count(moving):
        return mask, typical, -1.0
    moving = np.convolve(moving, np.ones(3), mode="same") > 0  # a second's margin either side
    mask[: n * seg] = np.repeat(moving, seg)
    mask[n * seg :] = moving[-1]
    last = int(np.flatnonzero(moving)[-1])
    return mask, typical, min((last + 1) * seg / fs, len(x) / fs)


def _fill(x: FloatArray, mask: npt.NDArray[np.bool_]) -> FloatArray:
    """Bridge masked samples linearly so the filters do not ring on movement bursts."""
    masked = _count(mask)
    if not masked or masked == len(mask):
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
    t, tt = _centred_time(n)
    centred = x - x.sum() / n  # x.mean(), without its overhead
    out: FloatArray = centred - t * (np.dot(t, centred) / tt)
    return out


@lru_cache(maxsize=64)
def _centred_time(n: int) -> tuple[FloatArray, float]:
    """Sample times centred on a window of `n`, and their sum of squares (the same each window)."""
    t = np.arange(n, dtype=np.float64) - (n - 1) / 2
    t.flags.writeable = False
    return t, np.dot(t, t)


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


def _bands(
    breath_spectrum: npt.NDArray[np.complex128],
    beat_spectrum: npt.NDArray[np.complex128],
    n: int,
    fs: float,
) -> tuple[FloatArray, FloatArray]:
    """The breathing band of one spectrum and the beats' band of the other, back in time.

    Both inverse transforms in one call: numpy transforms each row alone, so each band is what
    a call of its own would give."""
    gains = np.empty((2, len(breath_spectrum)), dtype=np.complex128)
    np.multiply(breath_spectrum, _response(n, fs, BREATH_BAND_HZ), out=gains[0])
    np.multiply(beat_spectrum, _response(n, fs, BEAT_BAND_HZ), out=gains[1])
    filtered: FloatArray = np.fft.irfft(gains, 2 * n)
    return filtered[0, :n], filtered[1, :n]


def find_breaths(
    x: FloatArray, fs: float, mask: npt.NDArray[np.bool_], breath_ref: float
) -> tuple[FloatArray, float]:
    """Breath peak times (s) in a breathing-band signal, outside movement; the typical breath."""
    y = x
    if len(y) < 4 * fs:
        return np.empty(0), 0.0
    masked = _count(mask)
    calm = y[~mask] if masked and len(y) - masked > fs else y
    amplitude = 2.83 * _std(calm)  # peak to peak of a sine with this spread
    prominence = 0.3 * max(amplitude, 0.5 * breath_ref)
    if prominence <= 0:
        return np.empty(0), amplitude
    peaks = find_peaks(y, distance=max(1, int(MIN_BREATH_INTERVAL_S * fs)), prominence=prominence)
    trusted = peaks < len(x) - EDGE_S * fs
    peaks = peaks[trusted & ~mask[peaks] if masked else trusted]
    return peaks / fs, amplitude


def _breathing_rate(
    breaths: FloatArray, mask: npt.NDArray[np.bool_], fs: float, duration: float
) -> float | None:
    horizon = duration - EDGE_S
    recent = mask[int(max(0.0, horizon - 10.0) * fs) :]
    if (
        not _count(recent)
        and horizon >= 10.0
        and (not len(breaths) or breaths[-1] < horizon - 10.0)
    ):
        return 0.0  # no breathing movement in the last 10 s
    if len(breaths) < 3:
        return None
    intervals = breaths[1:] - breaths[:-1]
    median = _median(intervals)
    if median <= 0 or _share(np.abs(intervals - median) > 0.5 * median) > 0.34:
        return None  # too irregular to call a rate
    return round(60.0 / median, 1)


def heart_rate(x: FloatArray, fs: float, mask: npt.NDArray[np.bool_]) -> tuple[float | None, int]:
    """Beats/min from a beat-band signal's envelope autocorrelation; a 0-100 quality."""
    y = x
    if len(y) < 8 * fs or _share(mask) > 0.5:
        return None, 0
    width = max(1, int(0.2 * fs))
    env = np.convolve(np.abs(y), _boxcar(width), mode="same")
    if _count(mask):
        env[mask] = float(np.mean(env[~mask]))
    env -= env.sum() / len(env)  # env.mean(), without its overhead
    n = len(env)
    spec = np.fft.rfft(env, 2 * n)
    ac = np.fft.irfft(spec * np.conj(spec))
    if ac[0] <= 0:
        return None, 0
    lo = int(fs * 60.0 / HR_RANGE_BPM[1])
    hi = min(n - 2, int(fs * 60.0 / HR_RANGE_BPM[0]) + 1)
    ac = ac[: hi + 2] / ac[0]  # normalised, as far as the longest period looked at
    peaks = find_peaks(ac[lo : hi + 1])
    if not len(peaks):
        return None, 0
    peaks += lo
    heights = ac[peaks]
    best = float(heights.max())
    # The first peak nearly as high as the best: a multiple of the period is also periodic.
    k = int(peaks[np.argmax(heights >= 0.7 * best)])
    quality = min(100, max(0, round(100 * best)))
    if best < 0.2:
        return None, quality
    a, b, c = ac[k - 1 : k + 2].tolist()  # Python floats: the same arithmetic, less overhead
    denom = a - 2 * b + c
    shift = 0.5 * (a - c) / denom if denom < 0 else 0.0
    return round(float(60.0 * fs / (k + shift)), 1), quality
