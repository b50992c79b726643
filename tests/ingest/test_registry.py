"""The site file: checked whole before anything is stored, then upserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bedwatch.site import SiteError, parse_site
from tests.ingest.test_end_to_end import SITE
from tests.support import query


def test_the_example_site_parses() -> None:
    site = parse_site(SITE)
    assert [r.id for r in site.residents] == ["r-0001", "r-0002"]
    assert [d.id for d in site.residents[0].devices] == ["mat-0001", "band-0001"]
    assert site.contacts[0].channels == ("json://127.0.0.1:9/hook",)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('role = "care_staff"', 'role = "nurse"'), "contacts\\[0\\].role"),
        (('name = "王阿婆"', 'name = "王阿婆"\nward = 3'), "unknown field\\(s\\) ward"),
        (('kind = "mattress" }', 'kind = "bed" }'), "is not mattress or wristband"),
        (('id = "mat-0002"', 'id = "mat-0001"'), "devices: id 'mat-0001' appears twice"),
        (('care_team = ["c-zhang"]', 'care_team = ["c-nobody"]'), "unknown contact"),
        (('room = "新虹', 'timezone = "Mars/Base"\nroom = "新虹'), "unknown time zone"),
        (('id = "mat-0002"', 'id = "mat 0002"'), "not a valid device id"),
        (("[[contacts]]", "[wards]\nx = 1\n[[contacts]]"), "unknown section\\(s\\) wards"),
        (
            (
                'devices = [{ id = "mat-0002"',
                'detectors = { hr_high_bpm = "fast" }\ndevices = [{ id = "mat-0002"',
            ),
            "detectors",
        ),
    ],
)
def test_site_errors_name_the_entry_and_field(change: tuple[str, str], message: str) -> None:
    old, new = change
    assert old in SITE
    with pytest.raises(SiteError, match=message):
        parse_site(SITE.replace(old, new, 1))


def test_cli_migrates_and_loads_a_site(database_url: str, tmp_path: Path) -> None:
    site = tmp_path / "site.toml"
    site.write_text(SITE)
    env = {"BEDWATCH_DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"}
    run = [sys.executable, "-m", "bedwatch.cli"]
    migrated = subprocess.run(
        [*run, "db", "migrate"], env=env, capture_output=True, text=True, check=False
    )
    assert migrated.returncode == 0, migrated.stderr
    again = subprocess.run(
        [*run, "db", "migrate"], env=env, capture_output=True, text=True, check=False
    )
    assert "0 migration(s) applied" in again.stdout
    loaded = subprocess.run(
        [*run, "registry", "load", str(site)], env=env, capture_output=True, text=True, check=False
    )
    assert loaded.returncode == 0, loaded.stderr
    assert "loaded 2 residents, 1 contacts, 3 devices" in loaded.stdout
    assert query(database_url, "SELECT id, kind, resident_id FROM devices ORDER BY id") == [
        ("band-0001", "wristband", "r-0001"),
        ("mat-0001", "mattress", "r-0001"),
        ("mat-0002", "mattress", "r-0002"),
    ]
    bad = tmp_path / "bad.toml"
    bad.write_text(SITE.replace('kind = "mattress" }', 'kind = "bed" }', 1))
    refused = subprocess.run(
        [*run, "registry", "load", str(bad)], env=env, capture_output=True, text=True, check=False
    )
    assert refused.returncode == 2
    assert "is not mattress or wristband" in refused.stderr
    assert "Traceback" not in refused.stderr
