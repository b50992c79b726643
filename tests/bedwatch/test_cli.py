"""The `bedwatch` command: a fast --help that names every command, each command's own help."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bedwatch.cli import PLUGINS, build_parser
from bedwatch.settings import SettingsError, load_settings
from tests.support import service_env


def test_top_level_help_names_every_command_without_importing_them() -> None:
    probe = (
        "import sys\n"
        "from bedwatch.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = sorted(m for m in ('numpy', 'scipy', 'psycopg', 'simulators', 'alerts.engine')"
        " if m in sys.modules)\n"
        "print('imported:', heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    for command in ("run", "db", "registry", *PLUGINS):
        assert f"    {command} " in out
    assert "imported: []" in out


@pytest.mark.parametrize("command", sorted(PLUGINS))
def test_each_command_has_its_own_arguments(command: str) -> None:
    parser = build_parser([command])
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args([command, "--help"])
    assert exit_.value.code == 0


def test_the_harness_keeps_its_own_variables_from_the_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BEDWATCH_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    env = service_env(BEDWATCH_DATABASE_URL="postgresql://postgres@127.0.0.1:5432/x")
    assert "BEDWATCH_TEST_ADMIN_URL" not in env
    load_settings(environ=env)  # would refuse BEDWATCH_TEST_ADMIN_URL as an unknown setting
    with pytest.raises(SettingsError, match="BEDWATCH_TEST_ADMIN_URL"):
        load_settings(environ=dict(os.environ))


def test_run_help_says_where_settings_come_from_and_its_examples_load(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        build_parser(["run"]).parse_args(["run", "--help"])
    text = capsys.readouterr().out
    defaults = load_settings(environ={})
    for name, value in [
        ("BEDWATCH_MQTT_URL", defaults.mqtt.url),
        ("BEDWATCH_DATABASE_URL", defaults.database.url),
        ("BEDWATCH_HTTP_ADDR", defaults.http.addr),
        ("BEDWATCH_TOPIC_PREFIX", defaults.mqtt.topic_prefix),
    ]:
        assert name in text
        assert f"default {value}" in text
    # The examples it gives are settings the loader takes.
    loaded = load_settings(
        environ={
            "BEDWATCH_MQTT__CLIENT_ID": "ward-2",
            "BEDWATCH_ALERTS__PUBLIC_URL": "https://care.example.org",
        }
    )
    assert "BEDWATCH_MQTT__CLIENT_ID=ward-2" in text
    assert loaded.mqtt.client_id == "ward-2"
    assert loaded.alerts.public_url == "https://care.example.org"
