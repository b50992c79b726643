"""Waveform analysis on synthetic pad signals with known rates: raw units, drift, movement, fs."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.findings import FindingKind
from detectors.wave import analyze
from ingest.records import Record, SampleSource, WaveBlock
from tests.detectors.helpers import MAT, NIGHT_MS, RID, Harness, mat, when
from tests.detectors.synth import pad_signal


@pytest.mark.parametrize("fs", [25, 50, 100, 250])
@pytest.mark.parametrize(("hr", "rr"), [(48, 8), (62, 14), (95, 22), (120, 26)])
def test_rates_from_a_raw_channel(fs: int, hr: float, rr: float) -> None:
    x, _ = pad_signal(fs=fs, seconds=30, hr_bpm=hr, rr_per_min=rr, seed=fs * 1000 + int(hr))
    assert x.dtype == np.int64
    assert x.min() > 10_000
    est = analyze(x, fs)
    assert est.hr_bpm is not None
    assert abs(est.hr_bpm - hr) <= 3
    assert est.rr_per_min is not None
    assert abs(est.rr_per_min - rr) <= 1.5
    assert est.movement_fraction == 0


def test_rates_through_a_movement_burst_and_strong_drift() -> None:
    x, _ = pad_signal(
        fs=100, seconds=30, hr_bpm=70, rr_per_min=12, drift=5000, movements=((12.0, 15.0),), seed=5
    )
    est = analyze(x, 100)
    assert 0.05 < est.movement_fraction < 0.3
    assert 14.0 < est.movement_end_s < 18.0
    assert est.hr_bpm is not None
    assert abs(est.hr_bpm - 70) <= 3
    assert est.rr_per_min is not None
    assert abs(est.rr_per_min - 12) <= 1.5


def test_separate_resp_and_bcg_channels() -> None:
    rng = np.random.default_rng(3)
    fs, t = 50, np.arange(30 * 50) / 50
    resp = np.round(512 + 80 * np.sin(2 * np.pi * 15 / 60 * t) + rng.normal(0, 1, len(t)))
    beat = np.zeros(len(t))
    beat[(np.arange(0, 30, 60 / 58) * fs).astype(int)] = 1.0
    kernel = np.sin(2 * np.pi * 7 * t[:20]) * np.exp(-t[:20] / 0.09)
    bcg = np.round(np.convolve(beat, 30 * kernel)[: len(t)] + rng.normal(0, 1, len(t)))
    est = analyze(resp, fs, bcg=bcg)
    assert est.hr_bpm is not None
    assert abs(est.hr_bpm - 58) <= 2
    assert est.rr_per_min is not None
    assert abs(est.rr_per_min - 15) <= 1


def test_a_pause_reads_as_rr_zero_and_leaves_a_gap_in_breaths() -> None:
    x, _ = pad_signal(fs=50, seconds=30, rr_per_min=15, pauses=((12.0, 60.0),), seed=9)
    est = analyze(x, 50, breath_ref=400)
    assert est.rr_per_min == 0
    assert est.breaths_s
    assert max(est.breaths_s) < 13.0


def blocks(x: np.ndarray, fs: int, t0: int, block_s: int = 5) -> list[Record]:
    n = fs * block_s
    return [
        WaveBlock(
            MAT, RID, t0 + 1000 * i // fs, fs, tuple(int(v) for v in x[i : i + n]), None, None
        )
        for i in range(0, len(x) - n + 1, n)
    ]


def stream(h: Harness, x: np.ndarray, fs: int, seconds: int) -> None:
    """Pad telemetry (in bed, breathing, heart beating) interleaved with wave blocks."""
    wave = blocks(x, fs, NIGHT_MS)
    tele: list[Record] = [mat(NIGHT_MS + 1000 * i) for i in range(seconds)]
    for record in sorted(wave + tele, key=when):
        h.feed([record])


@pytest.mark.parametrize("fs", [25, 250])
def test_streamed_wave_gives_derived_samples_every_10_s(fs: int) -> None:
    x, _ = pad_signal(fs=fs, seconds=120, hr_bpm=66, rr_per_min=13, seed=fs)
    h = Harness()
    stream(h, x, fs, 120)
    assert len(h.derived) == 11  # from 20 s of signal, then every 10 s
    steps = np.diff([d.ts_ms for d in h.derived])
    assert set(steps.tolist()) == {10_000}
    assert all(d.source is SampleSource.WAVE and d.occ == 1 for d in h.derived)
    assert all(d.hr is not None and abs(d.hr - 66) <= 3 for d in h.derived)
    assert all(d.rr is not None and abs(d.rr - 13) <= 1.5 for d in h.derived)
    assert h.findings == []


def test_wave_pause_of_40_s_is_a_breathing_pause_and_15_s_only_counts() -> None:
    x, _ = pad_signal(
        fs=50, seconds=240, rr_per_min=15, seed=4, pauses=((60.0, 75.0), (150.0, 190.0))
    )
    h = Harness()
    stream(h, x, 50, 240)
    [f] = h.of(FindingKind.BREATHING_PAUSE)
    assert f.evidence["source"] == "wave"
    assert abs(f.started_ms - (NIGHT_MS + 150_000)) < 5_000
    assert f.at_ms - f.started_ms <= 45_000  # the window plus 15 s
    assert len(h.of(FindingKind.BREATHING_PAUSE, cleared=True)) == 1
    night = h.runner._states[RID].night
    assert night.pauses_wave == 2
