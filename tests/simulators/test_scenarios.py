"""Scenario files are checked strictly, and each scenario does to the night what its truth says."""

from __future__ import annotations

import itertools
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from simulators.ground_truth import Expect, NightTruth, ScenarioTruth, read_truth, write_truth
from simulators.night import Night, make_night
from simulators.scenarios import (
    ScenarioError,
    ScenarioSpec,
    load_scenarios,
    parse_scenarios,
    scenario,
)
from simulators.site import residents_of

NIGHT = date(2025, 11, 26)
EXAMPLES = Path(__file__).parents[2] / "simulators" / "examples" / "every_scenario.toml"


def _night(*specs: ScenarioSpec, index: int = 1, seed: int = 4) -> Night:
    return make_night(
        residents_of(index)[index - 1], seed=seed, night_date=NIGHT, scenarios=list(specs)
    )


def _scripted(n: Night, name: str) -> list[ScenarioTruth]:
    return [t for t in n.truth() if isinstance(t, ScenarioTruth) and t.scenario == name]


def _window(n: Night, t: ScenarioTruth) -> dict[str, Any]:
    w = n.vitals_window()
    end = t.end_ms if t.end_ms is not None else n.end_ms
    inside = (w["ts_ms"] >= t.start_ms) & (w["ts_ms"] < end)
    return {k: v[inside] for k, v in w.items()}


def test_the_example_file_loads_every_kind() -> None:
    specs = load_scenarios(EXAMPLES)
    from simulators.scenarios import ScenarioKind

    assert {s.kind for s in specs} == set(ScenarioKind)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"kind": "explode"}, "kind"),
        ({"kind": "sos", "duration_s": 3}, "unknown parameter"),
        ({"kind": "breathing_pause", "duration_s": "long"}, "expected a number"),
        ({"kind": "device_offline", "device": "toaster"}, "device"),
        ({"kind": "sos", "at": "25:99"}, "at"),
        ({"kind": "sos", "share": 2}, "share"),
        ({"kind": "sos", "nights": ["monday"]}, "nights"),
        ({"kind": "bradycardia", "hr_bpm": -3}, "negative"),
    ],
)
def test_bad_scenarios_are_rejected_with_a_reason(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        parse_scenarios({"scenario": [table]})


def test_unknown_top_level_keys_are_rejected() -> None:
    with pytest.raises(ScenarioError, match="unknown top-level"):
        parse_scenarios({"scenarios": []})


def test_share_and_nights_select_residents_and_nights() -> None:
    spec = scenario("sos", share=0.3)
    picked = [d for d in residents_of(200) if spec.applies(d.resident_id, d.index, 0, seed=1)]
    assert 40 <= len(picked) <= 80
    again = [d for d in residents_of(200) if spec.applies(d.resident_id, d.index, 3, seed=1)]
    assert picked == again  # the same residents every night
    only = scenario("sos", residents=["r-0002"], nights=[1])
    assert only.applies("r-0002", 2, 1, 1)
    assert not only.applies("r-0002", 2, 0, 1)
    assert not only.applies("r-0003", 3, 1, 1)


def test_breathing_pause_shows_as_rr_zero_for_its_last_d_minus_10_seconds() -> None:
    n = _night(scenario("breathing_pause", at="02:30", duration_s=45))
    (t,) = _scripted(n, "breathing_pause")
    assert t.expect == (Expect.BREATHING_PAUSE,)
    assert t.end_ms is not None
    assert t.end_ms - t.start_ms == 45_000
    w = _window(n, t)
    assert (w["occ"] == 1).all()
    assert not w["breathing"].any()
    assert int((w["rr"] == 0).sum()) == 35
    assert (w["rr"][:10] > 0).all()  # the pad needs 10 s without a breath before saying so


def test_a_short_pause_expects_nothing_and_a_very_long_one_also_vitals_absent() -> None:
    n = _night(
        scenario("breathing_pause", at="01:00", duration_s=15),
        scenario("breathing_pause", at="03:00", duration_s=80),
    )
    short, long = _scripted(n, "breathing_pause")
    assert short.expect == ()
    assert long.expect == (Expect.BREATHING_PAUSE, Expect.VITALS_ABSENT)


def test_bed_exit_without_return_and_with_return() -> None:
    n = _night(scenario("bed_exit", at="02:00", return_after_s="never"))
    (t,) = _scripted(n, "bed_exit")
    assert t.expect == (Expect.BED_EXIT_NO_RETURN,)
    assert t.end_ms is None
    assert n.plan.ms(n.plan.rise_s) == t.start_ms
    back = _night(scenario("bed_exit", at="02:00", return_after_s=600))
    (t2,) = _scripted(back, "bed_exit")
    assert t2.expect == ()
    w = _window(back, t2)
    assert (w["occ"] == 0).all()
    assert len(w["occ"]) == 600
    late = _night(scenario("bed_exit", at="02:00", return_after_s=1500))
    assert _scripted(late, "bed_exit")[0].expect == (Expect.BED_EXIT_NO_RETURN,)


def test_heart_and_breathing_rate_scenarios_reach_their_targets() -> None:
    n = _night(
        scenario("bradycardia", at="01:00", hr_bpm=36, duration_s=600),
        scenario("fast_breathing", at="03:00", rr_bpm=28, duration_s=600),
    )
    brady, fast = _scripted(n, "bradycardia")[0], _scripted(n, "fast_breathing")[0]
    assert brady.expect == (Expect.HEART_RATE,)
    assert fast.expect == (Expect.BREATHING_RATE,)
    hr = _window(n, brady)["hr"][60:-60]
    assert np.nanmedian(hr) == pytest.approx(36, abs=1.5)
    assert np.nanmax(hr) <= 40
    rr = _window(n, fast)["rr"][60:-60]
    assert np.nanmedian(rr) == pytest.approx(28, abs=1)
    assert np.nanmin(rr) >= 25


def test_immobile_vitals_gone_and_low_spo2() -> None:
    n = _night(
        scenario("immobile", at="00:30", duration_s=9000),
        scenario("vitals_gone", at="04:30", duration_s=120),
        scenario("low_spo2", at="03:00", spo2_pct=89, duration_s=900),
    )
    still = _window(n, _scripted(n, "immobile")[0])
    assert len(still["move"]) == 9000
    assert (still["move"] == 0).all()
    gone = _window(n, _scripted(n, "vitals_gone")[0])
    assert np.isnan(gone["hr"]).all()
    assert (gone["sq"] >= 50).all()
    assert (gone["rr"][10:] == 0).all()
    spo2 = _scripted(n, "low_spo2")[0]
    band = [
        orjson.loads(m.payload)
        for m in n.messages()
        if m.device_id == "band-0001" and m.channel == "telemetry"
    ]
    low = [b["spo2"] for b in band if spo2.start_ms <= b["ts"] < (spo2.end_ms or 0)]
    assert len(low) >= 20
    assert max(low) <= 91


def test_sos_cancel_fall_removed_low_battery_events_are_sent_when_truth_says() -> None:
    n = _night(
        scenario("sos", at="23:30", cancel_after_s=20),
        scenario("fall", at="03:00"),
        scenario("band_removed", at="05:00", duration_s=600),
        scenario("low_battery", at="04:00", bat_pct=12),
    )
    events = {
        (orjson.loads(m.payload)["type"], orjson.loads(m.payload)["ts"])
        for m in n.messages()
        if m.channel == "event"
    }
    truth = {t.scenario: t for t in n.truth() if isinstance(t, ScenarioTruth)}
    assert ("sos", truth["sos"].start_ms) in events
    assert ("sos_cancel", truth["sos"].end_ms) in events
    assert ("fall", truth["fall"].start_ms) in events
    assert ("removed", truth["band_removed"].start_ms) in events
    assert ("low_battery", truth["low_battery"].start_ms) in events
    fall = _window(n, truth["fall"])
    assert (fall["occ"] == 0).all()  # on the floor, not in bed


def test_device_offline_sends_nothing_in_between_and_comes_back() -> None:
    n = _night(scenario("device_offline", at="02:00", device="mattress", duration_s=900))
    (t,) = _scripted(n, "device_offline")
    assert t.expect == (Expect.DEVICE_SILENT,)
    mat = [m for m in n.messages(broker_will=True) if m.device_id == "mat-0001"]
    assert t.end_ms is not None
    during = [m for m in mat if t.start_ms + 5000 < m.device_time_ms < t.end_ms]
    assert [orjson.loads(m.payload) for m in during] == [{"state": "offline"}]
    after = [m for m in mat if m.device_time_ms >= t.end_ms]
    assert after[0].channel == "status"
    assert orjson.loads(after[0].payload)["boot"] == 2


def test_truth_file_round_trips_in_the_agreed_shape(tmp_path: Path) -> None:
    n = _night(scenario("sos", at="23:30"))
    path = tmp_path / "truth.jsonl"
    assert write_truth(path, n.truth()) == 2
    night, sos = list(read_truth(path))
    assert set(night) == {
        "type",
        "resident_id",
        "devices",
        "start_ms",
        "end_ms",
        "bedtime_ms",
        "rise_ms",
    }
    assert night["type"] == "night"
    assert night["devices"] == {
        "mattress": "mat-0001",
        "wristband": "band-0001",
    }
    assert set(sos) == {
        "type",
        "resident_id",
        "device_id",
        "scenario",
        "start_ms",
        "end_ms",
        "expect",
        "params",
    }
    assert sos["expect"] == ["sos"]
    assert sos["end_ms"] is None
    assert sos["device_id"] == "band-0001"
    assert isinstance(n.truth()[0], NightTruth)


def test_truth_holds_only_what_began_inside_the_window() -> None:
    full = _night(scenario("sos", at="23:30"), scenario("sos", at="04:00"))
    start = full.plan.ms(0) + 3 * 3600 * 1000 + 3600 * 1000 * 6  # 03:00 local
    part = make_night(
        residents_of(1)[0],
        seed=4,
        start_ms=start,
        end_ms=start + 7200_000,
        scenarios=[scenario("sos", at="23:30"), scenario("sos", at="04:00")],
    )
    sos = [t for t in part.truth() if isinstance(t, ScenarioTruth)]
    assert len(sos) == 1
    assert sos[0].start_ms == _scripted(full, "sos")[1].start_ms
    sent = [m for m in part.messages() if m.channel == "event"]
    assert len(sent) == 1


def test_duplicates_and_out_of_order_delivery_happen_only_where_scripted() -> None:
    n = _night(
        scenario("duplicates", at="23:00", device="mattress", duration_s=1800, fraction=0.3),
        scenario("out_of_order", at="01:00", device="mattress", duration_s=1800, fraction=0.3),
    )
    dup, ooo = _scripted(n, "duplicates")[0], _scripted(n, "out_of_order")[0]
    mat = [m for m in n.messages() if m.device_id == "mat-0001" and m.channel == "telemetry"]
    first_sent: dict[bytes, int] = {}
    twice = []
    for m in mat:
        if m.payload in first_sent:
            twice.append(first_sent[m.payload])
        first_sent.setdefault(m.payload, m.device_time_ms)
    assert 30 <= len(twice) <= 90  # ~30 % of 180 batches
    assert all(dup.start_ms <= t < (dup.end_ms or 0) for t in twice)
    seqs = [(m.device_time_ms, orjson.loads(m.payload)["seq"]) for m in mat]
    assert [t for t, _ in seqs] == sorted(t for t, _ in seqs)  # sent in time order
    swapped = [t for (t, a), (_, b) in itertools.pairwise(seqs) if b < a]
    assert len(swapped) >= 10
    assert all(ooo.start_ms <= t < (ooo.end_ms or 0) + 60_000 for t in swapped)
