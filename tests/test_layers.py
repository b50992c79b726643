"""Dependencies point one way: bedwatch → alerts → detectors → ingest, simulators alone."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bedwatch", "alerts", "detectors", "ingest", "simulators")
# What each package may import of the others (a module prefix; a package means all of it).
ALLOWED: dict[str, tuple[str, ...]] = {
    "bedwatch": ("alerts", "detectors", "ingest", "simulators"),
    "alerts": ("detectors", "ingest"),
    "detectors": ("ingest.records",),
    "ingest": (),
    "simulators": (),
}


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> Iterator[str]:
    """Every project module `name` imports, at the top or inside a function, for types or not."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield from _known(alias.name, known)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            for alias in node.names:
                if f"{target}.{alias.name}" in known:
                    yield f"{target}.{alias.name}"
                    break
            else:
                yield from _known(target, known)


def _known(target: str, known: set[str]) -> Iterator[str]:
    while target and target not in known:
        target = target.rpartition(".")[0]
    if target:
        yield target


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: set(imports_of(name, path, known)) - {name} for name, path in found.items()}


def test_the_graph_sees_the_project() -> None:
    edges = graph()
    assert len(edges) > 80
    assert "ingest.records" in edges["detectors.runner"]  # from the top of a module
    assert "bedwatch.service" in edges["bedwatch.cli"]  # from inside a function
    assert "bedwatch.demo.ward" in edges["bedwatch.demo.run"]  # `from package import module`


@pytest.mark.parametrize("package", PACKAGES)
def test_no_package_imports_upwards(package: str) -> None:
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in graph().items()
        if module.split(".")[0] == package
        for target in targets
        if target.split(".")[0] != package
        and not any(target == a or target.startswith(a + ".") for a in ALLOWED[package])
    )
    assert wrong == []


def test_no_import_cycle_larger_than_a_pair() -> None:
    edges = graph()
    big = [sorted(c) for c in strongly_connected(edges) if len(c) > 2]
    assert big == []


def test_the_cycle_finder_finds_cycles() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert [sorted(c) for c in strongly_connected(edges) if len(c) > 1] == [["a", "b", "c"]]


def strongly_connected(edges: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for start in edges:
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    found.append(component)
    return found
