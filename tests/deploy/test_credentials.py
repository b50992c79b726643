"""deploy/mosquitto/credentials.py: the password file from the site file."""

from __future__ import annotations

import importlib.util
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from bedwatch.site import parse_site
from tests.deploy.files import CREDENTIALS_TOOL, DEPLOY

# The service's sessions (and a second bridge's, for docker-compose.cluster.yml), first.
SERVICE_USERS = [
    "bedwatch", "bedwatch-events", "bedwatch-2", "bedwatch-2-events", "bedwatch-engine",
]  # fmt: skip

SITE = """\
[[residents]]
id = "r-1"
name = "A"
devices = [{ id = "mat-1", kind = "mattress" }, { id = "band-1", kind = "wristband" }]
"""


def tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("credentials", CREDENTIALS_TOOL)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(tmp_path: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CREDENTIALS_TOOL), "--passwd", str(tmp_path / "passwd"),
         "--env-file", str(tmp_path / ".env"), *args],
        input=stdin, capture_output=True, text=True, check=False,
        env={k: v for k, v in os.environ.items() if k != "BEDWATCH_MQTT_PASSWORD"},
    )  # fmt: skip


def users(tmp_path: Path) -> dict[str, str]:
    lines = (tmp_path / "passwd").read_text().splitlines()
    return dict(line.split(":", 1) for line in lines)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    (tmp_path / ".env").write_text('BEDWATCH_MQTT_PASSWORD="svc"\n')
    path = tmp_path / "site.toml"
    path.write_text(SITE)
    return path


def test_sync_issues_secrets_once_and_follows_the_site_file(tmp_path: Path, site: Path) -> None:
    first = run(tmp_path, "sync", str(site))
    assert first.returncode == 0, first.stderr
    issued = dict(line.split(" ") for line in first.stdout.splitlines())
    assert set(issued) == {"mat-1", "band-1"}
    assert all(len(secret) >= 20 for secret in issued.values())
    before = users(tmp_path)
    assert list(before) == [*SERVICE_USERS, "mat-1", "band-1"]
    assert all(hashed.startswith("$7$101$") for hashed in before.values())
    assert stat.S_IMODE((tmp_path / "passwd").stat().st_mode) == 0o600

    site.write_text(
        SITE.replace('{ id = "band-1", kind = "wristband" }', '{ id = "mat-9", kind = "mattress" }')
    )
    second = run(tmp_path, "sync", str(site))
    assert second.returncode == 0, second.stderr
    assert second.stdout.split(" ")[0] == "mat-9"  # only the new device gets a secret
    assert "removed band-1" in second.stderr
    after = users(tmp_path)
    assert list(after) == [*SERVICE_USERS, "mat-1", "mat-9"]
    assert after["mat-1"] == before["mat-1"]  # kept, so the device still logs in


def test_set_takes_a_makers_secret_from_stdin(tmp_path: Path, site: Path) -> None:
    assert run(tmp_path, "sync", str(site)).returncode == 0
    done = run(tmp_path, "set", "mat-1", "--secret-stdin", stdin="fromTheMaker\n")
    assert done.returncode == 0
    assert done.stdout == ""
    assert tool().check_password("fromTheMaker", users(tmp_path)["mat-1"])
    assert not tool().check_password("fromTheMakes", users(tmp_path)["mat-1"])
    mosquitto_passwd = shutil.which("mosquitto_passwd")
    if mosquitto_passwd is None:
        pytest.skip("mosquitto_passwd is not installed to cross-check the hash")
    # mosquitto_passwd -U would rehash; instead add a reference user and compare formats.
    subprocess.run([mosquitto_passwd, "-b", str(tmp_path / "passwd"), "ref", "x"], check=True)
    hashes = users(tmp_path)
    assert hashes["ref"].split("$")[:3] == hashes["mat-1"].split("$")[:3] == ["", "7", "101"]


@pytest.mark.parametrize(
    ("device", "message"),
    [("bedwatch", "service's user name"), ("bad/id", "bad device id"), ("-x", "bad device id")],
)
def test_refuses_ids_the_acl_cannot_hold(
    tmp_path: Path, site: Path, device: str, message: str
) -> None:
    site.write_text(SITE.replace("mat-1", device))
    done = run(tmp_path, "sync", str(site))
    assert done.returncode == 2
    assert message in done.stderr
    assert not (tmp_path / "passwd").exists()


def test_needs_the_service_password(tmp_path: Path, site: Path) -> None:
    (tmp_path / ".env").write_text("BEDWATCH_MQTT_PASSWORD=\n")
    done = run(tmp_path, "sync", str(site))
    assert done.returncode == 2
    assert "BEDWATCH_MQTT_PASSWORD" in done.stderr


def test_example_site_file_is_valid_for_both_tools(tmp_path: Path) -> None:
    example = DEPLOY / "site.example.toml"
    site = parse_site(example.read_text(encoding="utf-8"))
    (tmp_path / ".env").write_text("BEDWATCH_MQTT_PASSWORD=svc\n")
    done = run(tmp_path, "sync", str(example))
    assert done.returncode == 0, done.stderr
    devices = [device.id for resident in site.residents for device in resident.devices]
    assert list(users(tmp_path)) == [*SERVICE_USERS, *devices]
