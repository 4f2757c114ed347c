"""Reruns after the experiment file changed: new grid values add work, anything else is refused."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

import gridcv
from gridcv.cli import main


def edit(path: Path, **changes) -> None:
    config = yaml.safe_load(path.read_text())
    config.update(changes)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_new_grid_values_only_add_folds(make_experiment):
    path = make_experiment()
    gridcv.run_experiment(path)
    before = gridcv.load_folds(path).set_index("task_id")
    edit(path, grid={"units": [4, 8, 16]})
    summary = gridcv.run_experiment(path)
    assert summary.attempts == 2
    after = gridcv.load_folds(path).set_index("task_id")
    assert after.loc[before.index, "finished_at"].tolist() == before["finished_at"].tolist()
    assert gridcv.load_results(path)["param_units"].tolist() == [4, 8, 16]


def test_removed_grid_values_leave_the_table_but_stay_stored(make_experiment):
    path = make_experiment()
    gridcv.run_experiment(path)
    edit(path, grid={"units": [8]})
    assert gridcv.run_experiment(path).attempts == 0
    assert gridcv.load_results(path)["param_units"].tolist() == [8]
    assert len(gridcv.load_folds(path)) == 4


def test_other_changes_are_refused_and_leave_results_untouched(make_experiment, capsys):
    path = make_experiment()
    gridcv.run_experiment(path)
    folder = path.parent / "results" / "tiny"
    before = digest(folder)
    edit(path, fit={"epochs": 3, "batch_size": 16}, scoring="balanced_accuracy")
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"gridcv: error: {path}: the experiment changed since {folder} was started: fit, scoring differ (only "
        "adding grid values is compatible). The finished folds were computed with the old settings, so they are "
        "not mixed with new ones. Pass --restart to move the old results aside (they are kept) and start again, "
        "or --output DIR to write to another folder."
    )
    assert digest(folder) == before


def test_builder_edits_count_as_a_change(make_experiment, capsys):
    path = make_experiment()
    gridcv.run_experiment(path)
    builder = path.parent / "builder.py"
    builder.write_text(builder.read_text().replace('"relu"', '"tanh"'))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "the experiment changed since" in err and ": model differ (only adding grid values" in err


def test_restart_moves_old_results_aside(make_experiment, capsys):
    path = make_experiment()
    gridcv.run_experiment(path)
    folder = path.parent / "results" / "tiny"
    before = digest(folder)
    edit(path, fit={"epochs": 3, "batch_size": 16})
    assert main(["run", str(path), "--restart", "--quiet"]) == 0
    aside = [p for p in folder.parent.iterdir() if p.name.startswith("tiny.old-")]
    assert len(aside) == 1
    assert {k: v for k, v in digest(aside[0]).items() if k != "run.lock"} == {
        k: v for k, v in before.items() if k != "run.lock"
    }
    assert gridcv.load_folds(path)["epochs_run"].tolist() == [3] * 4


def test_output_writes_elsewhere(make_experiment, capsys):
    path = make_experiment()
    gridcv.run_experiment(path)
    edit(path, fit={"epochs": 3, "batch_size": 16})
    other = path.parent / "elsewhere"
    assert main(["run", str(path), "--output", str(other), "--quiet"]) == 0
    assert gridcv.load_folds(other)["epochs_run"].tolist() == [3] * 4
    assert gridcv.load_folds(path.parent / "results" / "tiny")["epochs_run"].tolist() == [2] * 4


def test_retry_failed_runs_failed_folds_again(make_experiment):
    builder = """
import pathlib, keras
def build(params, input_shape, n_classes):
    if not pathlib.Path(__file__).with_name("fixed").exists():
        raise RuntimeError("flaky")
    m = keras.Sequential([keras.Input(shape=input_shape), keras.layers.Dense(n_classes, activation="softmax")])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return m
"""
    path = make_experiment(builder=builder)
    with pytest.raises(gridcv.AllFoldsFailed):
        gridcv.run_experiment(path)
    (path.parent / "fixed").write_text("")
    with pytest.raises(gridcv.AllFoldsFailed):  # failed is final ...
        gridcv.run_experiment(path)
    gridcv.run_experiment(path, gridcv.RunOptions(retry_failed=True))  # ... unless asked
    folds = gridcv.load_folds(path)
    assert folds["status"].tolist() == ["done"] * 4
    assert folds["attempts"].tolist() == [2] * 4
