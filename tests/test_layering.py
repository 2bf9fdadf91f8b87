"""The package's two halves: the library never imports the lab, and no modules import in a cycle.

Lab: the tour and its sections, the experiments, the report and claims, the CLI commands and
`python -m genshop`. Library: every other module of the package, found in its tree. The import
graph counts every import a module's code holds: at the top, inside functions and under
TYPE_CHECKING. The scripts of benchmarks/ measure the library, never the tour.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import genshop

PACKAGE = Path(genshop.__file__).parent
BENCHMARKS = PACKAGE.parents[1] / "benchmarks"
LAB = ("genshop.report", "genshop.tour", "genshop.sections", "genshop.commands",
       "genshop.claims", "genshop.experiments", "genshop.cli", "genshop.__main__")
TOUR = ("genshop.tour", "genshop.sections")
MATHS = ("genshop.divergences", "genshop.losses", "genshop.steps", "genshop.linalg")


def is_under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
LIBRARY = sorted(m for m in MODULES if not is_under(m, LAB))
BENCHMARK_SCRIPTS = sorted(BENCHMARKS.glob("*.py"))


def modules_loaded_by(*modules: str) -> list[str]:
    """The genshop modules a fresh interpreter has loaded after importing `modules`."""
    code = (f"import json, sys; import {', '.join(modules)}; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('genshop'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The genshop modules `path` imports anywhere in its code: at the top, inside functions
    and under TYPE_CHECKING (absolute imports, the only kind the package uses)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found & known


def import_graph() -> dict[str, set[str]]:
    return {name: imports_of(path, set(MODULES)) - {name} for name, path in MODULES.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A list of modules that import each other in a ring, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_module_imports_in_a_cycle():
    assert find_cycle(import_graph()) is None


def test_cycle_finder_finds_a_planted_ring_and_passes_a_chain():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_graph_sees_function_local_and_type_checking_imports(tmp_path):
    source = ("import os\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
              "    import genshop.tour\ndef f():\n    from genshop import report\n")
    (tmp_path / "m.py").write_text(source)
    known = {"genshop.tour", "genshop.report", "genshop.claims"}
    assert imports_of(tmp_path / "m.py", known) == {"genshop.tour", "genshop.report"}


def test_library_is_every_module_outside_the_lab():
    assert {"genshop.couplet.bot", "genshop.couplet.server", "genshop.fgan_fit",
            "genshop.engine", "genshop.data.toy"} <= set(LIBRARY)
    lab = {"genshop.tour", "genshop.sections.linalg", "genshop.experiments", "genshop.__main__"}
    assert lab <= set(MODULES)
    assert lab.isdisjoint(LIBRARY)
    assert BENCHMARKS / "linalg_bench.py" in BENCHMARK_SCRIPTS


def test_no_library_module_imports_a_lab_module():
    graph = import_graph()
    crossings = {m: sorted(d for d in graph[m] if is_under(d, LAB)) for m in LIBRARY}
    assert {m: lab for m, lab in crossings.items() if lab} == {}


def test_library_loads_no_lab_module():
    assert [m for m in modules_loaded_by(*LIBRARY) if is_under(m, LAB)] == []


@pytest.mark.parametrize("module", MATHS)
def test_maths_module_loads_no_engine(module):
    loaded = modules_loaded_by(module)
    assert not [m for m in loaded if is_under(m, ("genshop.engine", "genshop.families",
                                                    "genshop.runs", *LAB))]


@pytest.mark.parametrize("script", BENCHMARK_SCRIPTS, ids=lambda p: p.name)
def test_benchmark_imports_the_library_not_the_tour(script):
    assert sorted(m for m in imports_of(script, set(MODULES)) if is_under(m, TOUR)) == []
