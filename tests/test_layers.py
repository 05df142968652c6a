"""The layers hold: import-linter's contracts (pyproject.toml) pass, and edge/ and sync/ have no import cycle.

Allowed directions: edge -> the sync root; sync.centre -> the sync root, edge.settle and
edge.journal.entry; the sync root imports neither; nothing in edge or sync imports the harness.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def _contracts() -> dict[str, dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {c["id"]: c for c in config["contracts"]}


def _graph(*packages: str):
    return grimp.build_graph(*packages, cache_dir=None)


def test_import_linter_contracts_are_kept():
    lint = Path(sys.executable).parent / "lint-imports"
    proc = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    report = proc.stdout[proc.stdout.find("Contracts"):] if "Contracts" in proc.stdout else proc.stdout
    assert proc.returncode == 0, report + proc.stderr


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph.modules):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _describe(graph, component: list[str]) -> str:
    members = set(component)
    lines = [" <-> ".join(component)]
    for importer in component:
        for imported in sorted(graph.find_modules_directly_imported_by(importer) & members):
            for detail in graph.get_import_details(importer=importer, imported=imported):
                lines.append(f"    {importer} -> {imported} (l.{detail['line_number']}: {detail['line_contents']})")
    return "\n".join(lines)


def test_no_import_cycles_in_edge_and_sync():
    graph = _graph("edge", "sync")
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(_describe(graph, c) for c in cycles)


def test_the_cycle_check_finds_a_cycle():
    """The check above is not vacuous: a two-module cycle is reported with its import lines."""
    graph = grimp.ImportGraph()
    graph.add_import(importer="p.a", imported="p.b", line_number=3, line_contents="from p import b")
    graph.add_import(importer="p.b", imported="p.a", line_number=7, line_contents="from p import a")
    graph.add_import(importer="p.c", imported="p.a", line_number=1, line_contents="from p import a")
    assert _cycles(graph) == [["p.a", "p.b"]]
    assert "p.b -> p.a (l.7: from p import a)" in _describe(graph, ["p.a", "p.b"])


def test_the_contracts_name_every_module_they_must():
    """A module added to the sync root, or to edge, falls under the contracts without anyone remembering."""
    graph = _graph("edge", "sync")
    contracts = _contracts()
    root = {m for m in graph.find_children("sync") if m != "sync.centre"}
    assert set(contracts["sync-root"]["source_modules"]) == root

    forbidden = contracts["centre-uses-engine-and-entry-only"]["forbidden_modules"]
    allowed = ("edge.settle", "edge.journal.entry")

    def covered(module: str) -> bool:
        return any(module == f or module.startswith(f + ".") for f in forbidden)

    def allowed_for_centre(module: str) -> bool:
        return any(module == a or module.startswith(a + ".") for a in allowed) or module in ("edge", "edge.journal")

    missing = sorted(m for m in graph.find_descendants("edge") if not allowed_for_centre(m) and not covered(m))
    assert not missing, f"add these to the centre's forbidden_modules in pyproject.toml: {missing}"
