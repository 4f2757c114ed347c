"""`gridcv status` and `gridcv results` start fast: what they load is checked, not timed.

Each command runs in a fresh interpreter and reports the heavy libraries in
``sys.modules`` afterwards: neither pandas, scikit-learn, SciPy, TensorFlow nor
matplotlib (their imports are most of the 2 s the commands took before).
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_crashed_run

HEAVY = ("pandas", "sklearn", "scipy", "tensorflow", "keras", "matplotlib")
ROOT = Path(__file__).resolve().parents[1]


def loaded_after(code: str) -> list[str]:
    """The heavy libraries a fresh interpreter has loaded after running ``code``."""
    probe = f"import sys, json\n{code}\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    return list(json.loads(done.stdout.splitlines()[-1]))


@pytest.mark.parametrize(
    "code",
    [
        "import gridcv",
        "import gridcv; gridcv.run, gridcv.load_search, gridcv.load_best_model_info, gridcv.NotAvailableError",
        "import gridcv.report",
        "from gridcv.cli import _parser; _parser().parse_args(['status', 'x'])",
        "from gridcv.cli import main; main(['status', FOLDER])",
        "from gridcv.cli import main; main(['results', FOLDER])",
        "import gridcv; gridcv.load_search(FOLDER).cv_results_",
    ],
)
def test_status_and_results_load_no_heavy_library(tmp_path, code):
    write_crashed_run(tmp_path)
    assert loaded_after(code.replace("FOLDER", repr(str(tmp_path)))) == []


def test_load_results_still_brings_pandas(tmp_path):
    write_crashed_run(tmp_path)
    assert "pandas" in loaded_after(f"import gridcv; gridcv.load_results({str(tmp_path)!r})")


@pytest.mark.parametrize("package", ["gridcv", "gridcv.runner", "gridcv.report"])
def test_every_public_name_is_listed_and_resolves_to_where_it_is_defined(package):
    module = importlib.import_module(package)
    assert set(module.__all__) <= set(dir(module))
    for name in module.__all__:
        value = getattr(module, name)
        assert getattr(importlib.import_module(value.__module__), name) is value, name
    with pytest.raises(AttributeError, match=f"^module '{package}' has no attribute 'nope'$"):
        module.nope  # noqa: B018
