"""The example experiments run out of the box: their data is made from what scikit-learn ships."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

import gridcv
from gridcv.store import FoldStatus

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parents[1] / "experiments"


@pytest.mark.parametrize(
    "name", ["digits_images", "digits_csv", "segmentation", "digits_sequence", "diabetes_regression"]
)
def test_example_prepares_its_data_and_runs(tmp_path, name):
    for helper in ("models.py", "example_data.py", "digits_sequence.py"):
        shutil.copy(EXAMPLES / helper, tmp_path / helper)
    config = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    # As shipped, but one epoch of one candidate, in this process: a smoke test, not a benchmark.
    config["fit"]["epochs"] = 1
    config["grid"] = {key: values[-1:] for key, values in config["grid"].items()}
    config["execution"] = {"isolation": "inline"}
    config["output"] = str(tmp_path / "results")
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    summary = gridcv.run_experiment(path)
    assert summary.counts[FoldStatus.DONE] == config["cv"]["n_splits"]
    assert not list((tmp_path / "data").glob(".*partial"))  # prepared atomically
