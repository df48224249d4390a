"""Rules about the code itself that no linter enforces.

Every `type: ignore` names the errors it silences and says why, on the same
line: `# type: ignore[code]  # why`. mypy itself rejects one without a code
(`ignore-without-code`) and an unused one; the reason is this test's.
The benches ship in the wheel and run from an installed package, where tests/
does not exist: bench/ imports nothing from it.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECKED = ("shared", "services", "bench")
TYPE_IGNORE = re.compile(r"#\s*type:\s*ignore")
# `# type: ignore[code, code]` then another comment with some words in it.
EXPLAINED_IGNORE = re.compile(r"#\s*type:\s*ignore\[[a-z0-9-]+(?:\s*,\s*[a-z0-9-]+)*\]\s+#\s*\S.{3,}")


def python_files(*folders: str) -> list[Path]:
    return sorted(path for folder in folders for path in (ROOT / folder).rglob("*.py"))


def comments(source: str) -> list[tuple[int, str]]:
    """(line, text) of every comment: strings that merely mention `type: ignore` are not comments."""
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return [(token.start[0], token.string) for token in tokens if token.type == tokenize.COMMENT]


def unexplained_ignores(source: str) -> list[tuple[int, str]]:
    return [
        (line, text)
        for line, text in comments(source)
        if TYPE_IGNORE.search(text) and not EXPLAINED_IGNORE.search(text)
    ]


def test_the_rule_accepts_a_code_with_a_reason_and_nothing_less() -> None:
    assert not unexplained_ignores("x = f()  # type: ignore[arg-type]  # f is untyped upstream\n")
    assert not unexplained_ignores("x = f()  # type: ignore[misc, union-attr]  # a tuple of events\n")
    assert not unexplained_ignores('x = "# type: ignore"\n')
    assert unexplained_ignores("x = f()  # type: ignore\n")
    assert unexplained_ignores("x = f()  # type: ignore  # f is untyped upstream\n")
    assert unexplained_ignores("x = f()  # type: ignore[arg-type]\n")
    assert unexplained_ignores("x = f()  # type: ignore[arg-type]  #\n")


def test_every_type_ignore_names_its_code_and_says_why() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}: {text}"
        for path in python_files(*CHECKED)
        for line, text in unexplained_ignores(path.read_text())
    ]
    assert not found, "a `type: ignore` needs `[code]  # why` on its line:\n" + "\n".join(found)


def imported_modules(source: str) -> list[str]:
    modules = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.append(node.module)
    return modules


def test_bench_imports_nothing_from_tests() -> None:
    found = [
        f"{path.relative_to(ROOT)}: {module}"
        for path in python_files("bench")
        for module in imported_modules(path.read_text())
        if module == "tests" or module.startswith("tests.")
    ]
    assert not found, "bench/ runs from an installed package, which has no tests/:\n" + "\n".join(found)


def test_bench_puts_nothing_on_sys_path() -> None:
    found = [str(path.relative_to(ROOT)) for path in python_files("bench") if "sys.path" in path.read_text()]
    assert not found, "bench/ must import what it needs as an installed package does:\n" + "\n".join(found)
