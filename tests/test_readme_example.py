"""The README's notebook example runs as written (from a copy of the repository's experiments folder)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def notebook_example() -> str:
    """The python block that follows the README's ``notebook example`` marker."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- notebook example[^>]*-->\n```python\n(.*?)```", text, re.DOTALL)
    assert found, "the README lost its notebook example"
    return found.group(1)


def test_the_readme_notebook_example_runs(tmp_path, monkeypatch):
    (tmp_path / "experiments").mkdir()
    for helper in ("models.py", "example_data.py"):
        shutil.copy(ROOT / "experiments" / helper, tmp_path / "experiments" / helper)
    monkeypatch.chdir(tmp_path)
    names: dict = {}
    exec(compile(notebook_example(), "README.md", "exec"), names)
    search, info = names["search"], names["info"]
    assert search.best_params_ in ({"filters": 8}, {"filters": 16})
    assert search.best_index_ == int(np.argmin(search.cv_results_["rank_test_f1_macro"]))
    assert list(names["table"]["mean_test_accuracy"]) == list(search.cv_results_["mean_test_accuracy"])
    assert info.classes == tuple("0123456789") and info.input_shape == (16, 16, 1)
    assert names["predicted"] in info.classes
    assert (tmp_path / "results" / "digits-notebook" / "experiment.yaml").is_file()
