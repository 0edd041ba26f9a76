"""The package graph stays a tree of layers: no import cycle between packages, and no domain imports the API.

Imports under ``if TYPE_CHECKING:`` are left out: they name types for mypy
and never run, which is how ``telemetry.runtime`` names the services it
carries without depending on their packages.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "telemetry"
#: Packages that make up the domain: none of them may import telemetry.api.
DOMAINS = ("actions", "bus", "collect", "config", "events", "gnocchi", "meter", "parse", "rules", "sinks")


def _unit(module: str) -> str:
    """``telemetry.meter.store.sqlite`` -> ``meter``; ``telemetry.models`` -> ``models``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _runtime_imports(tree: ast.AST) -> Iterator[tuple[str, int]]:
    """Absolute ``telemetry.*`` imports that execute, with their line."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                skip.update(id(n) for n in ast.walk(sub))
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            if name.startswith("telemetry."):
                yield name, node.lineno


def package_graph() -> dict[str, dict[str, list[str]]]:
    """unit -> imported unit -> where (``file:line``)."""
    graph: dict[str, dict[str, list[str]]] = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(p for p in rel.parts if p != "__init__")
        src = _unit(module)
        for name, line in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
            dst = _unit(name)
            if dst != src:
                graph.setdefault(src, {}).setdefault(dst, []).append(f"{path.relative_to(PACKAGE.parent)}:{line}")
    return graph


def cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """Strongly connected components of more than one unit (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_between_packages() -> None:
    graph = package_graph()
    found = cycles(graph)
    detail = [
        f"{a} -> {b}: {graph[a][b][:2]}" for comp in found for a in comp for b in comp if b in graph.get(a, {})
    ]
    assert not found, "import cycles:\n" + "\n".join(detail)


def test_domains_never_import_the_api() -> None:
    graph = package_graph()
    bad = {d: graph[d]["api"] for d in DOMAINS if "api" in graph.get(d, {})}
    assert not bad, f"domain packages import telemetry.api: {bad}"


def test_the_checker_sees_a_cycle() -> None:
    """The check itself can fail: a made-up graph with a cycle is reported."""
    assert cycles({"a": {"b": []}, "b": {"c": []}, "c": {"a": []}, "d": {"a": []}}) == [["a", "b", "c"]]
