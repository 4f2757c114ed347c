"""experiments/digits_training.yaml runs as shipped, shrunk to a smoke test (one candidate, two epochs)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

import gridcv

EXAMPLES = Path(__file__).resolve().parents[1] / "experiments"


@pytest.mark.slow
def test_training_options_example_runs_and_refits(tmp_path):
    shutil.copy(EXAMPLES / "digits_data.py", tmp_path / "digits_data.py")
    config = yaml.safe_load((EXAMPLES / "digits_training.yaml").read_text())
    config["fit"]["epochs"] = 2
    config["grid"] = {key: values[-1:] for key, values in config["grid"].items()}
    config["execution"] = {"isolation": "inline"}
    config["output"] = str(tmp_path / "results")
    path = tmp_path / "digits_training.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    gridcv.run_experiment(path)
    results = gridcv.load_results(path)
    assert {"mean_test_f1_macro", "mean_train_accuracy"} <= set(results.columns)
    assert results.attrs["warnings"] == []
    folds = gridcv.load_folds(path)  # callbacks monitor a tenth of each 1,198-image training split
    assert folds["monitored"].tolist() == ["train_split"] * 3
    assert folds["n_monitored_samples"].tolist() == [120] * 3 and folds["n_fit_samples"].tolist() == [1078] * 3
    summary = json.loads((tmp_path / "results" / "best_model.json").read_text())
    assert summary["refit_scorer"] == "f1_macro" and summary["refit"]["n_samples"] == 1797
    assert (summary["refit"]["n_fit_samples"], summary["refit"]["n_monitored_samples"]) == (1617, 180)
    assert gridcv.load_best_model(tmp_path / "results").output_shape == (None, 10)
