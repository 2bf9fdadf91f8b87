"""The package's two halves: the library never imports the lab, and no modules import in a cycle.

Library: the maths (divergences, losses, steps, linalg, …), nets, families, engine, data, metrics.
Lab: the tour and its sections, the experiments, the report and claims, the CLI commands.
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
LAB = ("genshop.report", "genshop.tour", "genshop.sections", "genshop.commands",
       "genshop.claims", "genshop.experiments", "genshop.cli")
MATHS = ("genshop.divergences", "genshop.losses", "genshop.steps", "genshop.linalg")
LIBRARY = ("genshop.engine", "genshop.runs", "genshop.steps", "genshop.data", "genshop.metrics",
           *(f"genshop.families.{p.stem}" for p in (PACKAGE / "families").glob("[!_]*.py")))


def modules_loaded_by(module: str) -> list[str]:
    """The genshop modules a fresh interpreter has loaded after importing `module`."""
    code = (f"import json, sys; import {module}; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('genshop'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def is_under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("module", LIBRARY)
def test_library_module_loads_no_lab_module(module):
    lab = [m for m in modules_loaded_by(module) if is_under(m, LAB)]
    assert lab == []


@pytest.mark.parametrize("module", MATHS)
def test_maths_module_loads_no_engine(module):
    loaded = modules_loaded_by(module)
    assert not [m for m in loaded if is_under(m, ("genshop.engine", "genshop.families",
                                                    "genshop.runs", *LAB))]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The genshop modules `path` imports anywhere in its code (not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = set()
    for node in ast.walk(tree):
        if _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if m in known}


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imports_of(path, set(files)) - {name} for name, path in files.items()}


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


def test_graph_sees_function_local_imports_and_skips_type_checking(tmp_path):
    source = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import genshop.tour\n"
              "def f():\n    from genshop import report\n")
    (tmp_path / "m.py").write_text(source)
    known = {"genshop.tour", "genshop.report"}
    assert imports_of(tmp_path / "m.py", known) == {"genshop.report"}
