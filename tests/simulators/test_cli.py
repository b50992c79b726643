"""`bedwatch sim` options, and the site file that registers a simulated fleet."""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path

import pytest

from simulators import cli
from simulators.site import residents_of, site_toml


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bedwatch")
    parser.add_argument("-c", "--config", type=Path)
    sub = parser.add_subparsers()
    cli.register(sub)
    return parser


def test_write_site_emits_a_registry_file_for_the_fleet(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    args = _parser().parse_args(["sim", "--beds", "3", "--write-site", str(path)])
    assert args.handler(args) == 0
    site = tomllib.loads(path.read_text(encoding="utf-8"))
    assert [r["id"] for r in site["residents"]] == ["r-0001", "r-0002", "r-0003"]
    first = site["residents"][0]
    assert first["devices"] == [
        {"id": "mat-0001", "kind": "mattress"},
        {"id": "band-0001", "kind": "wristband"},
    ]
    assert first["timezone"] == "Asia/Shanghai"
    contacts = {c["id"] for c in site["contacts"]}
    assert set(first["care_team"]) == contacts
    roles = {c["role"] for c in site["contacts"]}
    assert roles == {"care_staff", "family_doctor", "family", "emergency"}


def test_ids_widen_past_four_digits() -> None:
    big = residents_of(10_000)
    assert big[0].resident_id == "r-00001"
    assert big[-1].mattress_id == "mat-10000"
    assert residents_of(9_999)[0].wristband_id == "band-0001"
    assert "r-10000" in site_toml(big[-1:])


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("2m", 120), ("10h", 36_000), ("45", 45)]
)
def test_durations(text: str, seconds: float) -> None:
    assert cli.parse_duration(text) == seconds


def test_run_options_become_a_run_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BEDWATCH_MQTT_URL", "mqtt://broker.example:1884")
    scen = tmp_path / "s.toml"
    scen.write_text('[[scenario]]\nkind = "sos"\nat = "02:00"\n', encoding="utf-8")
    args = _parser().parse_args(
        [
            "sim",
            "--beds",
            "5",
            "--speed",
            "60",
            "--duration",
            "1h",
            "--scenarios",
            str(scen),
            "--batch",
            "5",
            "--wave",
            "raw",
            "--no-wristbands",
            "--prefix",
            "x/bedwatch/v1",
        ]
    )
    config = cli.config_from(args)
    assert (config.transport.host, config.transport.port) == ("broker.example", 1884)
    assert config.transport.prefix == "x/bedwatch/v1"
    assert config.beds == 5
    assert not config.wristbands
    assert config.night.batch == 5
    assert config.night.wave == "raw"
    assert len(config.scenarios) == 1
    assert config.truth_path is not None
    assert config.truth_path.suffix == ".jsonl"


def test_faster_than_real_time_plays_from_the_past() -> None:
    import time

    args = _parser().parse_args(["sim", "--speed", "60", "--duration", "2h"])
    config = cli.config_from(args)
    assert abs(config.start_ms + 7_200_000 - time.time() * 1000) < 5_000


def test_a_bad_scenario_file_is_an_error_not_a_crash(tmp_path: Path) -> None:
    scen = tmp_path / "bad.toml"
    scen.write_text('[[scenario]]\nkind = "levitate"\n', encoding="utf-8")
    args = _parser().parse_args(["sim", "--scenarios", str(scen)])
    assert args.handler(args) == 2
