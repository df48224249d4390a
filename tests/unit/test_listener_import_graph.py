"""No module of services/listener imports another that imports it back, even under TYPE_CHECKING.

The graph is built from the source (ast), so imports inside `if TYPE_CHECKING:`
blocks and functions count as much as those at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import services.listener

PACKAGE = "services.listener"
DIRECTORY = Path(services.listener.__file__).parent


def _modules() -> dict[str, Path]:
    return {f"{PACKAGE}.{path.stem}": path for path in DIRECTORY.glob("*.py") if path.stem != "__init__"}


def import_graph() -> dict[str, set[str]]:
    """module -> the modules of the package it imports (its own name excluded)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module)
                # `from services.listener import metrics` imports the module services.listener.metrics.
                imported.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[name] = {module for module in imported if module in modules and module != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        for imported in sorted(graph[module]):
            if cycle := visit(imported, [*path, module]):
                return cycle
        done.add(module)
        return None

    for module in sorted(graph):
        if cycle := visit(module, []):
            return cycle
    return None


def test_the_listener_package_has_no_import_cycle() -> None:
    graph = import_graph()
    assert graph.get(f"{PACKAGE}.server")  # the graph was read
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_a_cycle_under_type_checking_is_found() -> None:
    # The checker itself: what the old connection.py <-> server.py pair looked like.
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
