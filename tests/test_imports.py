"""Every module imports on its own, and no two modules import each other at import time.

An import cycle hides until someone imports the "wrong" module first (a script, a test, a worker
process); these tests import each module first, in a fresh interpreter, and read the import graph.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "pixsearch"


def module_names() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__main__":
            continue
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join(parts))
    return names


IMPORT_EACH_FIRST = """
import importlib, sys, traceback
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "pixsearch" or m.startswith("pixsearch.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except BaseException as exc:
        print(f"{name}: {type(exc).__name__}: {exc}", flush=True)
"""
"""Imports each named module first, with no pixsearch module loaded before it. Third-party packages
stay loaded between modules (an interpreter per module spent ~2 minutes re-importing gradio and
torch); they cannot hide a cycle among pixsearch's own modules, which is what this looks for."""


def _import_each_first(names: list[str]) -> list[str]:
    done = subprocess.run([sys.executable, "-c", IMPORT_EACH_FIRST, *names], capture_output=True, text=True,
                          timeout=300)
    failures = done.stdout.splitlines()
    if done.returncode != 0:
        failures.append(f"interpreter exited {done.returncode}: {done.stderr.strip()[-500:]}")
    return failures


def test_every_module_imports_on_its_own() -> None:
    names = module_names()
    assert len(names) > 20
    with ThreadPoolExecutor(max_workers=2) as pool:  # two interpreters, half the modules each
        failed = [line for lines in pool.map(_import_each_first, [names[0::2], names[1::2]]) for line in lines]
    assert not failed, "modules that fail when imported first:\n" + "\n".join(failed)


def _top_level_imports(module: str, path: Path) -> set[str]:
    """pixsearch modules this module imports when it is imported (not inside functions)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    body = list(tree.body)
    while body:
        node = body.pop(0)
        if isinstance(node, (ast.If, ast.Try)):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue  # typing-only imports never run
            body.extend(node.body)
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("pixsearch"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("pixsearch"):
                continue
            found.add(target)
            for alias in node.names:  # `from . import x` imports the submodule x
                found.add(f"{target}.{alias.name}")
    return found


def import_graph() -> dict[str, set[str]]:
    names = set(module_names())
    graph: dict[str, set[str]] = {}
    for name in names:
        path = SRC / Path(*name.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        graph[name] = {target for target in _top_level_imports(name, path) if target in names and target != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def _is_parent(a: str, b: str) -> bool:
    return b.startswith(a + ".")


def test_no_import_cycle() -> None:
    graph = import_graph()
    # A package's __init__ re-exporting its own submodules is not a cycle of concern, and a submodule
    # importing its parent package's __init__ is how packages work; drop those edges.
    pruned = {node: {t for t in targets if not _is_parent(node, t) and not _is_parent(t, node)}
              for node, targets in graph.items()}
    cycle = find_cycle(pruned)
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_cycle_finder_finds_a_cycle() -> None:
    """The check above could pass vacuously if the finder were broken."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("name", ["pixsearch.cli.app", "pixsearch.store"])
def test_graph_sees_intra_package_imports(name: str) -> None:
    assert import_graph()[name], f"{name} has no pixsearch imports: the graph reader is broken"
