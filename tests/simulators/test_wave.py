"""Waveform blocks: contiguous, and their breaths and beats match the reported rr and hr."""

from __future__ import annotations

import itertools
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pytest
from scipy.signal import butter, find_peaks, sosfiltfilt

from simulators import NightOptions, WaveMode, make_night, residents_of

FS = 50


def _blocks_and_samples(mode: WaveMode) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    start = 1764187200000  # 04:00 Shanghai on the night of 2025-11-26: asleep
    night = make_night(
        residents_of(1)[0],
        seed=3,
        night_date=date(2025, 11, 26),
        start_ms=start,
        end_ms=start + 1800_000,
        options=NightOptions(wave=mode),
    )
    blocks, samples = [], []
    for m in night.messages():
        if m.channel == "wave":
            blocks.append(orjson.loads(m.payload))
        elif m.channel == "telemetry" and m.device_id.startswith("mat"):
            samples.extend(orjson.loads(m.payload)["samples"])
    return blocks, samples


def _quiet_minutes(samples: list[dict[str, Any]]) -> list[tuple[int, float, float]]:
    """(start ts, median hr, median rr) of whole still minutes with both rates measured."""
    out = []
    for k in range(0, len(samples) - 60, 60):
        minute = samples[k : k + 60]
        if minute[-1]["ts"] - minute[0]["ts"] != 59_000:
            continue  # a lost sample inside
        if any(s["hr"] is None or not s["rr"] or s["move"] for s in minute):
            continue
        hr = float(np.median([s["hr"] for s in minute]))
        rr = float(np.median([s["rr"] for s in minute]))
        out.append((minute[0]["ts"], hr, rr))
    return out


def _count(signal: npt.NDArray[np.float64], low: float, high: float, gap_s: float) -> int:
    band = butter(2, [low, high], btype="bandpass", fs=FS, output="sos")
    clean = sosfiltfilt(band, signal)
    peaks, _ = find_peaks(clean, distance=int(gap_s * FS), prominence=np.std(clean) * 0.8)
    return len(peaks)


def _count_beats(signal: npt.NDArray[np.float64]) -> int:
    """Heartbeats as a detector would find them: the energy envelope of the 4-12 Hz band."""
    band = butter(2, [4.0, 12.0], btype="bandpass", fs=FS, output="sos")
    energy = sosfiltfilt(band, signal) ** 2
    smooth = sosfiltfilt(butter(2, 3.0, fs=FS, output="sos"), energy)
    peaks, _ = find_peaks(smooth, distance=int(0.45 * FS), prominence=np.std(smooth) * 0.5)
    return len(peaks)


@pytest.mark.parametrize("mode", [WaveMode.SPLIT, WaveMode.RAW])
def test_blocks_are_contiguous_and_the_right_length(mode: WaveMode) -> None:
    blocks, _ = _blocks_and_samples(mode)
    assert len(blocks) >= 300
    channel = "raw" if mode is WaveMode.RAW else "resp"
    for a, b in itertools.pairwise(blocks):
        assert b["t0"] - a["t0"] == len(a[channel]) * 1000 // FS  # block i+1 starts where i ended
    assert all(b["fs"] == FS and len(b[channel]) == 250 for b in blocks)
    if mode is WaveMode.SPLIT:
        assert all(len(b["bcg"]) == len(b["resp"]) and "raw" not in b for b in blocks)


@pytest.mark.parametrize("mode", [WaveMode.SPLIT, WaveMode.RAW])
def test_breaths_and_beats_in_the_wave_match_reported_rr_and_hr(mode: WaveMode) -> None:
    blocks, samples = _blocks_and_samples(mode)
    t0 = blocks[0]["t0"]
    if mode is WaveMode.SPLIT:
        resp = np.concatenate([b["resp"] for b in blocks]).astype(float)
        bcg = np.concatenate([b["bcg"] for b in blocks]).astype(float)
    else:
        resp = bcg = np.concatenate([b["raw"] for b in blocks]).astype(float)
    minutes = _quiet_minutes(samples)
    assert len(minutes) >= 8
    for ts, hr, rr in minutes:
        i = (ts - t0) * FS // 1000
        # Filter a little more than the minute and count inside it, away from the filter's edges.
        lo, hi = max(i - 10 * FS, 0), i + 70 * FS
        breaths = _count(resp[lo:hi], 0.08, 0.7, 60 / 30) * 60 / ((hi - lo) / FS)
        beats = _count_beats(bcg[lo:hi]) * 60 / ((hi - lo) / FS)
        assert breaths == pytest.approx(rr, abs=2.0), (ts, rr, breaths)
        assert beats == pytest.approx(hr, abs=3.0), (ts, hr, beats)
