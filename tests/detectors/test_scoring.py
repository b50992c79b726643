"""The scorer against a small hand-written ground truth and findings, and `bedwatch eval`."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from bedwatch.cli_eval import _jsonl, register
from detectors.scoring import score

DATA = Path(__file__).parent / "data"


def test_sensitivity_false_alarms_and_delays_from_the_fixture() -> None:
    report = score(list(_jsonl(DATA / "truth.jsonl")), list(_jsonl(DATA / "findings.jsonl")))
    k = report.kinds
    assert report.nights == 2
    assert (k["sos"].expected, k["sos"].detected, k["sos"].delays_s) == (1, 1, [0.0])
    assert k["breathing_pause"].delays_s == [29.0]
    assert k["heart_rate"].delays_s == [110.0]
    assert k["heart_rate"].limit_s == 135.0
    # r-0002's vitals_absent was not found (the finding is for another resident) ...
    assert (k["vitals_absent"].expected, k["vitals_absent"].detected) == (1, 0)
    assert report.missed == [
        {
            "kind": "vitals_absent",
            "scenario": "vitals_gone",
            "resident_id": "r-0002",
            "start_ms": 20000000,
        }
    ]
    # ... so it is a false alarm, like the pause that no scenario expected; medium ones are not.
    assert (k["vitals_absent"].false_alarms, k["breathing_pause"].false_alarms) == (1, 1)
    assert (k["immobile"].false_alarms, k["immobile"].unmatched) == (0, 1)
    assert report.false_alarms == 2
    table = report.table()
    assert "sos" in table
    assert "1.000 per bed-night" in table


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser.parse_args(argv)


def test_eval_command_on_files(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse(["eval", str(DATA / "truth.jsonl"), str(DATA / "findings.jsonl")])
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert "breathing_pause" in out
    assert "bed-nights: 2" in out


def test_eval_command_without_input_is_a_usage_error() -> None:
    args = parse(["eval"])
    assert args.handler(args) == 2


def test_findings_in_late_data_are_neither_detections_nor_false_alarms() -> None:
    truth = list(_jsonl(DATA / "truth.jsonl"))
    findings = list(_jsonl(DATA / "findings.jsonl"))
    as_late = [f | {"late": True} for f in findings]
    report = score(truth, as_late)
    assert report.kinds["sos"].detected == 0
    assert report.false_alarms == 0
    assert report.late == sum(not f.get("cleared") for f in findings)
    assert "findings in late data (not paged, not scored):" in report.table()
