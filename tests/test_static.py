"""The code base stays typed (strict mypy) and lint-clean (ruff)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_strict_mypy_passes():
    out = subprocess.run([sys.executable, "-m", "mypy", "gridcv"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout


def test_ruff_passes():
    out = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "gridcv", "tests", "benchmarks"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout


def _gridcv_imports(path: Path) -> list[tuple[str, str, int]]:
    """(module, name, line) of every ``from gridcv... import name`` in a file, inside functions and in
    the code strings it runs (a benchmark's loop is a string run by a fresh interpreter)."""
    import ast

    def walk(tree: ast.AST, offset: int) -> list[tuple[str, str, int]]:
        found = []
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gridcv"):
                found += [(str(node.module), alias.name, offset + node.lineno) for alias in node.names]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "from gridcv" in node.value:
                try:
                    found += walk(ast.parse(node.value), offset + node.lineno - 1)
                except SyntaxError:
                    pass  # prose, not code
        return found

    return walk(ast.parse(path.read_text(encoding="utf-8")), 0)


def _exists(module: str, name: str) -> bool:
    """Whether ``from module import name`` finds a name or, in a package, a submodule."""
    import importlib.util

    imported = importlib.import_module(module)
    if hasattr(imported, name):
        return True
    return hasattr(imported, "__path__") and importlib.util.find_spec(f"{module}.{name}") is not None


def test_every_gridcv_name_the_benchmarks_import_exists():
    """The benchmarks are not run by the suite; a name moved in the package must not break them unseen."""
    missing = [
        f"{path.relative_to(ROOT)}:{line}: {module}.{name}"
        for path in sorted((ROOT / "benchmarks").glob("*.py"))
        for module, name, line in _gridcv_imports(path)
        if not _exists(module, name)
    ]
    assert missing == []
