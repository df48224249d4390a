"""The protocol package knows nothing of storage: it returns what it decoded,
and each store derives its own layout (shared/store/batch.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import shared.protocols

PROTOCOLS = Path(shared.protocols.__file__).parent


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_no_protocol_module_imports_storage() -> None:
    modules = sorted(PROTOCOLS.rglob("*.py"))
    assert modules
    offenders = {
        str(path.relative_to(PROTOCOLS)): sorted(m for m in imported_modules(path) if m.startswith("shared.store"))
        for path in modules
    }
    assert {path: found for path, found in offenders.items() if found} == {}
