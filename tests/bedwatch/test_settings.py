"""Settings: defaults, file, environment; anything unknown or wrong stops start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from bedwatch.settings import Settings, SettingsError, load_settings


def test_defaults_without_file_or_environment() -> None:
    settings = load_settings(environ={})
    assert settings == Settings()
    assert settings.mqtt.url == "mqtt://127.0.0.1:1883"
    assert settings.mqtt.topic_prefix == "bedwatch/v1"


def test_file_then_environment_override(tmp_path: Path) -> None:
    path = tmp_path / "bedwatch.toml"
    path.write_text("[ingest]\nflush_max_rows = 100\nkeep_wave = true\n[mqtt]\nprotocol = 4\n")
    settings = load_settings(
        path,
        environ={
            "BEDWATCH_MQTT_URL": "mqtt://broker:1883",
            "BEDWATCH_INGEST__FLUSH_MAX_ROWS": "250",
            "BEDWATCH_DATABASE__CREATE_DATABASE": "false",
            "PATH": "/usr/bin",
        },
    )
    assert settings.mqtt.url == "mqtt://broker:1883"
    assert settings.mqtt.protocol == 4
    assert settings.ingest.flush_max_rows == 250
    assert settings.ingest.keep_wave is True
    assert settings.database.create_database is False


@pytest.mark.parametrize(
    ("toml", "environ", "message"),
    [
        ("[ingest]\nflush_rows = 5\n", {}, "unknown setting ingest.flush_rows"),
        ("[ingst]\n", {}, "unknown settings section [ingst]"),
        ("[ingest]\nflush_max_rows = '5'\n", {}, "expected a whole number"),
        ("[ingest]\nkeep_wave = 1\n", {}, "expected true or false"),
        ("[ingest]\nflush_interval_s = -1\n", {}, "outside"),
        ("[mqtt]\nurl = 'http://x'\n", {}, "mqtt.url"),
        ("[mqtt]\ntopic_prefix = 'a/+/b'\n", {}, "topic_prefix"),
        ("", {"BEDWATCH_MQTT_ULR": "mqtt://x"}, "BEDWATCH_MQTT_ULR: unknown variable"),
        ("", {"BEDWATCH_INGEST__FLUSH_MAX_ROWS": "many"}, "cannot read 'many'"),
        ("", {"BEDWATCH_MQTT__RECEIVE_MAXIMUM": "70000"}, "outside"),
        ("not toml [", {}, "bedwatch.toml"),
    ],
)
def test_bad_settings_are_clear_errors(
    tmp_path: Path, toml: str, environ: dict[str, str], message: str
) -> None:
    path = tmp_path / "bedwatch.toml"
    path.write_text(toml)
    with pytest.raises(SettingsError, match=message.replace("[", r"\[").replace("+", r"\+")):
        load_settings(path, environ=environ)
