"""Generated nights have the statistical shape of real ones, and never alarm by themselves."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from simulators.ground_truth import ScenarioTruth
from simulators.night import Night, make_night, make_nights
from simulators.physiology import Stage, make_profile
from simulators.scenarios import scenario
from simulators.site import residents_of
from simulators.sleep import TIMEZONE

NIGHT = date(2025, 11, 26)
Arrays = dict[str, npt.NDArray[Any]]


@pytest.fixture(scope="module")
def nights() -> list[Night]:
    return list(make_nights(residents_of(12), seed=3, first_night=NIGHT, nights=2))


@pytest.fixture(scope="module")
def windows(nights: list[Night]) -> list[Arrays]:
    return [n.vitals_window() for n in nights]


def _runs(mask: npt.NDArray[np.bool_]) -> list[int]:
    """Lengths of the runs of True."""
    padded = np.concatenate(([0], mask.astype(np.int8), [0]))
    edges = np.flatnonzero(np.diff(padded))
    return list((edges[1::2] - edges[::2]).tolist())


def test_same_seed_same_night_sample_for_sample() -> None:
    d = residents_of(1)[0]
    a = list(make_night(d, seed=5, night_date=NIGHT).messages())
    b = list(make_night(d, seed=5, night_date=NIGHT).messages())
    c = list(make_night(d, seed=6, night_date=NIGHT).messages())
    assert a == b
    assert a != c


def test_a_window_plays_the_same_samples_as_the_whole_night() -> None:
    d = residents_of(3)[2]
    whole = make_night(d, seed=5, night_date=NIGHT)
    start = whole.plan.ms(whole.plan.sleep_onset_s + 3600)
    part = make_night(d, seed=5, start_ms=start, end_ms=start + 1_800_000)
    w, p = whole.vitals_window(), part.vitals_window()
    at = int(np.searchsorted(w["ts_ms"], p["ts_ms"][0]))
    assert len(p["hr"]) == 1800
    np.testing.assert_array_equal(w["hr"][at : at + 1800], p["hr"])
    np.testing.assert_array_equal(w["move"][at : at + 1800], p["move"])


def test_a_bed_night_generates_in_well_under_a_second() -> None:
    import time

    d = residents_of(1)[0]
    # CPU time, not wall time: the other tests running at the same time share the machine.
    t0 = time.process_time()
    night = make_night(d, seed=9, night_date=NIGHT)
    count = sum(1 for _ in night.messages())
    elapsed = time.process_time() - t0
    assert count > 3000
    assert elapsed < 1.0


def test_profiles_differ_by_resident_and_are_plausible() -> None:
    profiles = [make_profile(i, seed=1) for i in range(1, 201)]
    hr = np.array([p.rest_hr_bpm for p in profiles])
    rr = np.array([p.rest_rr_bpm for p in profiles])
    assert hr.min() >= 56
    assert hr.max() <= 80
    assert hr.std() > 3
    assert rr.min() >= 12.5
    assert rr.max() <= 18
    assert rr.std() > 0.8
    assert all(68 <= p.age <= 95 for p in profiles)


def test_bedtime_and_rising_vary_and_rising_is_after_seven(nights: list[Night]) -> None:
    bed_h, rise_h = [], []
    for n in nights:
        bed = datetime.fromtimestamp(n.plan.ms(n.plan.bedtime_s) / 1000, TIMEZONE)
        rise = datetime.fromtimestamp(n.plan.ms(n.plan.rise_s) / 1000, TIMEZONE)
        bed_h.append(bed.hour + bed.minute / 60)
        rise_h.append(rise.hour + rise.minute / 60)
        assert rise.time() >= datetime(2000, 1, 1, 7, 0).time()
    assert min(bed_h) >= 20
    assert max(bed_h) <= 23.5
    assert np.std(bed_h) > 0.2
    assert max(rise_h) <= 9
    assert np.std(rise_h) > 0.05


def test_heart_and_breathing_rates_fall_in_deep_sleep(
    windows: list[Arrays], nights: list[Night]
) -> None:
    drops = []
    for n, w in zip(nights, windows, strict=True):
        hr, rr, stage = w["hr"], w["rr"], w["stage"]
        by = {s: np.nanmean(hr[(stage == s) & (rr > 0)]) for s in (Stage.WAKE, Stage.N2, Stage.N3)}
        rr_by = {s: np.nanmean(rr[(stage == s) & (rr > 0)]) for s in (Stage.WAKE, Stage.N3)}
        rest = n.plan.profile.rest_hr_bpm
        # Night by night the slow drift can blur N2 and N3 a little; awake is always higher.
        assert by[Stage.N3] < by[Stage.N2] + 1 < by[Stage.WAKE]
        assert rest - 15 < by[Stage.N3] < rest - 3
        assert rr_by[Stage.N3] < rr_by[Stage.WAKE] - 1
        drops.append(by[Stage.N2] - by[Stage.N3])
    assert np.mean(drops) > 2  # across residents, deep sleep is clearly the slowest


def test_sleep_cycles_contain_every_stage(nights: list[Night]) -> None:
    for n in nights:
        stages = set(n.plan.seg_stage.tolist())
        assert {Stage.WAKE, Stage.N1, Stage.N2, Stage.N3, Stage.REM} <= stages
        rem_starts = np.sum(n.plan.seg_stage == Stage.REM)
        assert 3 <= rem_starts <= 12  # a REM period per ~90-minute cycle


def test_natural_nights_stay_inside_every_alarm_line(windows: list[Arrays]) -> None:
    for w in windows:
        hr, rr = w["hr"], w["rr"]
        measured = hr[~np.isnan(hr)]
        assert measured.min() >= 41
        assert measured.max() <= 110
        breathing = rr[~np.isnan(rr) & (rr > 0)]
        assert breathing.min() >= 9
        assert breathing.max() <= 20
        assert max(_runs(rr == 0), default=0) < 20  # pauses < 30 s: rr = 0 for under 20 s
        assert w["spo2_true"].min() >= 93.5
        in_bed = w["occ"] == 1
        assert max(_runs(in_bed & (w["move"] == 0)), default=0) < 2 * 3600
        assert max(_runs(in_bed & np.isnan(hr) & (w["sq"] >= 50)), default=0) < 60


def test_toilet_trips_return_well_within_twenty_minutes(nights: list[Night]) -> None:
    trips = []
    for n in nights:
        out = (n.plan.seg_stage == Stage.OUT).tolist()
        ends = np.append(n.plan.seg_start_s[1:], n.plan.rise_s)
        trips += [int(e - s) for s, e, o in zip(n.plan.seg_start_s, ends, out, strict=True) if o]
    assert len(trips) >= 6  # about one a night on average across these residents
    assert max(trips) <= 12 * 60


def test_movement_blanks_heart_rate_and_lowers_signal_quality(windows: list[Arrays]) -> None:
    w = windows[0]
    moving = (w["occ"] == 1) & (w["move"] >= 30)
    still = (w["occ"] == 1) & (w["move"] == 0)
    assert moving.sum() > 30
    assert np.isnan(w["hr"][moving]).all()
    assert w["sq"][moving].mean() < w["sq"][still].mean() - 30
    empty = w["occ"] == 0
    assert np.isnan(w["hr"][empty]).all()
    assert np.isnan(w["rr"][empty]).all()


def test_some_samples_are_lost_but_very_few(nights: list[Night]) -> None:
    n = nights[0]
    sent = sum(
        m.payload.count(b'"ts"')
        for m in n.messages()
        if m.device_id.startswith("mat") and m.channel == "telemetry"
    )
    expected = (n.end_ms - n.start_ms) // 1000
    assert expected * 0.995 < sent <= expected
    assert sent < expected or any(
        sum(
            m.payload.count(b'"ts"')
            for m in x.messages()
            if m.channel == "telemetry" and m.device_id.startswith("mat")
        )
        < (x.end_ms - x.start_ms) // 1000
        for x in nights[1:6]
    )


def test_apnea_night_has_many_pauses_of_ten_to_forty_seconds() -> None:
    d = residents_of(1)[0]
    n = make_night(d, seed=2, night_date=NIGHT, scenarios=[scenario("apnea_night", per_hour=25)])
    pauses = [
        t for t in n.truth() if isinstance(t, ScenarioTruth) and t.scenario == "breathing_pause"
    ]
    lengths = np.array([t.params["duration_s"] for t in pauses])
    assert lengths.min() >= 10
    assert lengths.max() <= 40
    hours = n.plan.in_bed_s() / 3600
    assert len(pauses) / hours >= 15
    w = n.vitals_window()
    zero_runs = np.array(_runs(w["rr"] == 0))
    # Every pause shows as rr = 0 for its last D - 10 s (a sample lost to movement aside).
    natural = n.plan.pause_len_s
    shown = np.concatenate((lengths[lengths > 10], natural[natural > 10]))
    assert abs(len(zero_runs) - len(shown)) <= 2
    assert sorted(zero_runs.tolist())[-5:] == sorted((shown - 10).tolist())[-5:]
    assert zero_runs.max() == pytest.approx(lengths.max() - 10, abs=1)


def test_multi_night_runs_keep_the_resident_and_vary_the_night() -> None:
    d = residents_of(1)
    two = list(make_nights(d, seed=4, first_night=NIGHT, nights=2))
    assert two[0].plan.profile == two[1].plan.profile
    assert two[1].plan.night_date == NIGHT + timedelta(days=1)
    assert two[0].plan.bedtime_s != two[1].plan.bedtime_s
