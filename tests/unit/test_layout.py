"""The house rules import-linter cannot see (its contracts, in pyproject.toml, keep the layers'
direction and forbid circles; ``make lint`` and ``make test`` run them).

- SQL is built in ``worker/store`` only (and by the models and migrations that define it).
- No import inside a function: an import made late to dodge a circle hides the circle from
  the contracts. Type-only imports (``if TYPE_CHECKING:``) are the one exception.
- ``worker/`` holds packages, with at most a dozen modules directly in it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("worker", "api", "models", "simulator")
#: What builds SQL: statements, clauses and raw text.
SQL_BUILDERS = {
    "select",
    "update",
    "insert",
    "delete",
    "text",
    "and_",
    "or_",
    "not_",
    "exists",
    "func",
    "tuple_",
    "literal",
    "case",
}


def modules(*packages: str) -> Iterator[Path]:
    for package in packages:
        yield from sorted((ROOT / package).rglob("*.py"))


def relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


def sql_imports(tree: ast.Module) -> list[str]:
    found: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith("sqlalchemy"):
            continue
        if node.module and node.module.startswith("sqlalchemy.dialects"):
            found.append(node.module)
        else:
            found += sorted({alias.name for alias in node.names} & SQL_BUILDERS)
    return found


@pytest.mark.parametrize("path", list(modules("worker", "api")), ids=relative)
def test_sql_is_built_in_the_store_only(path: Path) -> None:
    if relative(path).startswith("worker/store/"):
        return
    assert sql_imports(ast.parse(path.read_text())) == []


def late_imports(tree: ast.Module) -> list[int]:
    """Line numbers of imports below module level, type-only blocks excepted."""
    lines: list[int] = []

    def visit(node: ast.AST, nested: bool) -> None:
        if isinstance(node, ast.If) and _type_checking(node.test):
            return
        if isinstance(node, ast.Import | ast.ImportFrom) and nested:
            lines.append(node.lineno)
        for child in ast.iter_child_nodes(node):
            visit(child, nested or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef))

    visit(tree, False)
    return lines


def _type_checking(test: ast.expr) -> bool:
    return isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"


@pytest.mark.parametrize("path", list(modules(*PRODUCT)), ids=relative)
def test_no_import_is_made_inside_a_function(path: Path) -> None:
    assert late_imports(ast.parse(path.read_text())) == []


def test_worker_holds_packages_and_at_most_a_dozen_modules() -> None:
    loose = sorted(path.name for path in (ROOT / "worker").glob("*.py"))
    assert len(loose) <= 12, loose


def test_the_rules_catch_what_they_are_for() -> None:
    tree = ast.parse(
        "from sqlalchemy import select, Engine\n"
        "from sqlalchemy.dialects import postgresql\n"
        "def late():\n    import json\n"
        "if TYPE_CHECKING:\n    from x import y\n"
    )
    assert sql_imports(tree) == ["select", "sqlalchemy.dialects"]
    assert late_imports(tree) == [4]
    assert len(list(modules("worker"))) > 50  # the tables above are not empty
