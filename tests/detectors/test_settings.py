"""Detector settings: docs/design.md's defaults, and strict parsing of a site file's table."""

from __future__ import annotations

import pytest

from detectors.settings import DetectorSettings, ResidentConfig, parse_detector_settings
from ingest.records import ResidentId


def test_defaults_are_design_md_thresholds() -> None:
    s = DetectorSettings()
    assert (s.hr_low_bpm, s.hr_high_bpm, s.hr_elevated_bpm) == (40, 131, 111)
    assert (s.rr_low_per_min, s.rr_high_per_min, s.rr_elevated_per_min) == (8, 25, 21)
    assert (s.hr_high_window_s, s.hr_elevated_window_s) == (120, 600)
    assert (s.vitals_absent_window_s, s.exit_return_window_s, s.pause_alarm_s) == (60, 1200, 30)
    assert (s.immobile_window_s, s.mattress_silent_s, s.wristband_silent_s) == (7200, 300, 1800)
    assert (s.night_start_local, s.night_end_local) == ("21:00", "07:00")
    assert (s.spo2_low_pct, s.spo2_medium_pct, s.apnea_index_per_h) == (91, 93, 15)
    assert (s.sleep_change_z, s.sleep_change_nights, s.sos_join_window_s) == (3, 14, 120)


def test_parse_converts_and_keeps_the_rest_default() -> None:
    s = parse_detector_settings(
        {
            "hr_high_bpm": 125,
            "exit_return_window_s": 900.5,
            "immobile_move_min": 8.0,
            "night_start_local": "22:30",
        }
    )
    assert s.hr_high_bpm == 125.0
    assert isinstance(s.hr_high_bpm, float)
    assert s.exit_return_window_s == 900.5
    assert s.immobile_move_min == 8
    assert isinstance(s.immobile_move_min, int)
    assert s.local_time("night_start_local").hour == 22
    assert s.hr_low_bpm == 40


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"hr_hi_bpm": 120}, "unknown detector setting 'hr_hi_bpm'"),
        ({"hr_high_bpm": "fast"}, "expected a number"),
        ({"hr_high_bpm": True}, "expected a number"),
        ({"immobile_move_min": 2.5}, "expected a whole number"),
        ({"night_end_local": "7am"}, "expected a time 'HH:MM'"),
        ({"night_end_local": "25:00"}, "no such time"),
        ({"pause_alarm_s": -1}, "must be finite and >= 0"),
        ({"hr_elevated_bpm": 140}, "hr_elevated_bpm <= hr_high_bpm"),
        ({"spo2_low_pct": 95}, "spo2_low_pct < spo2_medium_pct"),
    ],
)
def test_parse_rejects_with_a_clear_message(table: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_detector_settings(table)


def test_resident_config_rejects_unknown_timezone() -> None:
    with pytest.raises(ValueError, match="unknown timezone"):
        ResidentConfig(ResidentId("r-1"), "Mars/Olympus", {})
