"""The package layout keeps the process boundary: checked by parsing every module, importing none.

- Only ``gridcv/training/`` imports Keras or TensorFlow (at the top of a module or inside a function).
- Only ``gridcv/results.py`` imports pandas; only ``gridcv/store/`` imports sqlite3; only
  ``gridcv/execution/`` imports multiprocessing, subprocess or psutil (one package owns each).
- Outside ``training/``, only the worker's entry point, the inline executor, ``load_best_model``
  and the ``gridcv.models`` name reach ``gridcv.training``, and (but for that name) only
  inside functions, so importing them imports no Keras.

The slow companion, ``test_parent_never_imports_tensorflow`` (tests/test_workers.py), checks the
modules a real run's parent process has loaded.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gridcv"

# Modules outside training/ allowed to import gridcv.training, and why.
TRAINING_GATES = {
    "execution/worker.py": "the worker process's entry point",
    "execution/executor.py": "the inline executor trains in the caller's process",
    "best_model.py": "load_best_model loads Keras in the caller's process when asked",
    "models.py": "the name experiment files use for the built-in builders (imported by workers only)",
}


def imports_of(path: Path) -> list[tuple[str, int, bool]]:
    """(imported module, line, at the top level) for every import statement in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, id(node) in top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno, id(node) in top))
    return found


# Outside dependency -> the one place that may import it, as a path prefix, and how messages name it.
OWNERS = {
    "keras": ("training/", "Keras or TensorFlow"),
    "tensorflow": ("training/", "Keras or TensorFlow"),
    "pandas": ("results.py", "pandas"),
    "sqlite3": ("store/", "sqlite3"),
    "multiprocessing": ("execution/", "multiprocessing, subprocess or psutil"),
    "subprocess": ("execution/", "multiprocessing, subprocess or psutil"),
    "psutil": ("execution/", "multiprocessing, subprocess or psutil"),
}


def violations(package: Path) -> list[str]:
    """Every import that breaks the layout's rules, as ``file:line: why``."""
    out = []
    for path in sorted(package.rglob("*.py")):
        name = path.relative_to(package).as_posix()
        in_training = name.startswith("training/")
        for module, line, top_level in imports_of(path):
            root = module.split(".")[0]
            where = f"gridcv/{name}:{line}"
            if root in OWNERS and not name.startswith(OWNERS[root][0]):
                owner, what = OWNERS[root]
                out.append(f"{where}: imports {module}; only gridcv/{owner} may import {what}")
            if module.startswith("gridcv.training") and not in_training:
                if name not in TRAINING_GATES:
                    out.append(f"{where}: imports {module}; the parent side reaches training only through the worker")
                elif top_level and name != "models.py":
                    out.append(f"{where}: imports {module} at the top level; import it inside the function")
    return out


def test_the_layout_keeps_keras_and_pandas_where_they_belong():
    assert violations(PACKAGE) == []


@pytest.mark.parametrize(
    ("module", "line", "expected"),
    [
        ("runner/runner.py", "import keras", "imports keras; only gridcv/training/ may import Keras or TensorFlow"),
        ("store/database.py", "    import tensorflow as tf", "imports tensorflow; only gridcv/training/ may"),
        ("config/schema.py", "import pandas as pd", "imports pandas; only gridcv/results.py may import pandas"),
        ("runner/status.py", "import sqlite3", "imports sqlite3; only gridcv/store/ may import sqlite3"),
        ("runner/runner.py", "    import multiprocessing", "only gridcv/execution/ may import multiprocessing"),
        ("runner/jobs.py", "from gridcv.training.fold import run_fold", "the parent side reaches training only"),
        ("execution/worker.py", "from gridcv.training.fold import run_fold", "at the top level; import it inside"),
    ],
)
def test_the_layout_check_fails_on_a_forbidden_import(tmp_path, module, line, expected):
    """The check is able to fail: a copy of the package with one forbidden import added is caught."""
    copy = tmp_path / "gridcv"
    for path in PACKAGE.rglob("*.py"):
        target = copy / path.relative_to(PACKAGE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    victim = copy / module
    text = victim.read_text(encoding="utf-8")
    if line.startswith(" "):  # inside a function
        text = f"{text}\n\ndef _added() -> None:\n{line}\n"
    else:
        text = f"{line}\n{text}"
    victim.write_text(text, encoding="utf-8")
    found = violations(copy)
    assert len(found) == 1 and found[0].startswith(f"gridcv/{module}:") and expected in found[0], found
