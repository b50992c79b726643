"""The Dockerfile, read instruction by instruction (no Docker daemon here to build it)."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib

from tests.deploy.files import ROOT, dockerignore

Instruction = tuple[str, str]


def instructions() -> list[Instruction]:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    text = re.sub(r"\\\n\s*", " ", text)  # line continuations
    found = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def of(keyword: str) -> list[str]:
    return [rest for k, rest in instructions() if k == keyword]


def test_base_image_and_uv_from_pypi() -> None:
    assert instructions()[0] == ("FROM", "python:3.11-slim")
    assert len(of("FROM")) == 1
    [install] = [run for run in of("RUN") if run.startswith("pip install")]
    assert re.search(r'"uv==\d+\.\d+\.\d+"', install), install


def test_locked_dependencies_without_dev_tools() -> None:
    syncs = [run for run in of("RUN") if run.startswith("uv sync")]
    assert syncs, "no uv sync"
    for sync in syncs:
        assert "--frozen" in sync.split(), sync
        assert "--no-dev" in sync.split(), sync
    copied = [rest.split()[0] for rest in of("COPY")]
    assert copied[0] == "pyproject.toml"
    assert "uv.lock" in of("COPY")[0].split()


def test_every_package_is_copied_and_not_ignored() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    sources = {part for rest in of("COPY") for part in rest.split()[:-1]}
    ignored = dockerignore()
    for name in [*packages, "pyproject.toml", "uv.lock", "README.md"]:
        assert name in sources, f"{name} is not copied into the image"
        for pattern in ignored:
            assert not fnmatch.fnmatch(name, pattern.rstrip("/")), f"{name} ignored by {pattern}"


def test_runs_bedwatch_as_a_user_that_is_not_root() -> None:
    keywords = [keyword for keyword, _ in instructions()]
    [user] = of("USER")
    assert user not in ("root", "0")
    assert not user.startswith("0:")
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN")
    [useradd] = [run for run in of("RUN") if "useradd" in run]
    assert f" {user}" in useradd
    [entrypoint] = of("ENTRYPOINT")
    [command] = of("CMD")
    assert json.loads(entrypoint) + json.loads(command) == ["bedwatch", "run"]
    assert any("/app/.venv/bin" in env for env in of("ENV"))
