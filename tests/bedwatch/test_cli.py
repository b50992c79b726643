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
