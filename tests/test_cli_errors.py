"""Bad input: one paragraph naming the file, the key and the fix; exit 2; no traceback;
existing results untouched."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from gridcv.cli import main


def run_cli(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.err.strip()


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def finished_run(make_experiment, capsys):
    """A finished tiny run; returns (experiment path, results folder, snapshot of it)."""
    path = make_experiment()
    assert main(["run", str(path), "--quiet"]) == 0
    capsys.readouterr()
    folder = path.parent / "results" / "tiny"
    return path, folder, snapshot(folder)


def rewrite(path: Path, **changes) -> None:
    config = yaml.safe_load(path.read_text())
    config.update(changes)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def test_unknown_top_level_key_suggests_the_right_one(finished_run, capsys):
    path, folder, before = finished_run
    config = yaml.safe_load(path.read_text())
    config["fitt"] = config.pop("fit")
    path.write_text(yaml.safe_dump(config))
    code, err = run_cli(capsys, "run", str(path))
    assert code == 2
    assert err == (
        f"gridcv: error: {path}: unknown key 'fitt' at the top level (did you mean 'fit'?); valid keys there are "
        "name, output, seed, deterministic, data, task, model, fit, grid, cv, scoring, return_train_score, "
        "train_score_max_samples, refit, compile, execution. "
        "See experiments/digits.yaml for a valid file."
    )
    assert snapshot(folder) == before


def test_unknown_nested_key(make_experiment, capsys):
    path = make_experiment(fit={"epochs": 2, "batchsize": 16})
    code, err = run_cli(capsys, "run", str(path))
    assert code == 2
    assert err == (
        f"gridcv: error: {path}: unknown key 'batchsize' in 'fit' (did you mean 'batch_size'?); valid keys there "
        "are epochs, batch_size, shuffle, callbacks, validation_split_from_train, monitor_test_fold, precision, "
        "checkpoint_every. See experiments/digits.yaml for a valid file."
    )


def test_missing_required_key_and_wrong_type(make_experiment, capsys):
    path = make_experiment()
    config = yaml.safe_load(path.read_text())
    del config["model"]
    config["seed"] = "zero"
    path.write_text(yaml.safe_dump(config))
    code, err = run_cli(capsys, "run", str(path))
    assert code == 2
    assert err == (
        f"gridcv: error: {path}: key 'seed' has value 'zero': Input should be a valid integer, unable to parse "
        "string as an integer; required key 'model' is missing; add it. See experiments/digits.yaml for a valid file."
    )


def test_invalid_yaml(make_experiment, capsys):
    path = make_experiment(raw="name: x\ngrid: [1, 2\n")
    code, err = run_cli(capsys, "run", str(path))
    assert code == 2
    assert err.startswith(f"gridcv: error: {path}: not valid YAML at line 3, column 1")
    assert err.endswith("Fix the syntax (indentation and 'key: value' pairs).")


def test_missing_experiment_file(tmp_path, capsys):
    code, err = run_cli(capsys, "run", str(tmp_path / "nope.yaml"))
    assert code == 2
    assert err == (
        f"gridcv: error: {tmp_path / 'nope.yaml'}: no such experiment file. Check the path; "
        "experiment files are YAML files such as experiments/digits.yaml."
    )


def test_missing_data_file(finished_run, capsys):
    path, folder, before = finished_run
    rewrite(path, data={"kind": "arrays", "x": "data/missing.npy", "y": "data/y.npy"})
    code, err = run_cli(capsys, "run", str(path))
    assert code == 2
    assert err == (
        f"gridcv: error: {path}: key 'data.x' points at {path.parent / 'data' / 'missing.npy'}, which does not "
        "exist. Fix the path (relative to the experiment file), or set data.prepare to a function that creates it."
    )
    assert snapshot(folder) == before


def test_x_and_y_lengths_differ(make_experiment, capsys):
    path = make_experiment()
    np.save(path.parent / "data" / "y_short.npy", np.arange(10) % 3)
    rewrite(path, data={"kind": "arrays", "x": "data/x.npy", "y": "data/y_short.npy"})
    code, err = run_cli(capsys, "run", str(path))
    assert code == 2
    assert err == (
        f"gridcv: error: {path}: keys 'data.x' and 'data.y' disagree: data/x.npy has 60 samples but "
        "data/y_short.npy has 10 labels. Both must have one row per sample."
    )


def test_float_labels_make_a_regression_task_that_accuracy_does_not_score(make_experiment, capsys):
    """Whole numbers saved as floats: the task is inferred from their type; the scorer check says both fixes."""
    path = make_experiment()
    np.save(path.parent / "data" / "y_float.npy", np.arange(60) % 3 * 1.0)
    rewrite(path, data={"kind": "arrays", "x": "data/x.npy", "y": "data/y_float.npy"})
    config = yaml.safe_load(path.read_text())
    del config["scoring"]
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    code, err = run_cli(capsys, "run", str(path))
    assert code == 2
    assert err == (
        f"gridcv: error: {path}: key 'scoring' is not set, so it is 'accuracy' (the default), which scores predicted "
        "classes, but the task is regression (inferred from key 'data.y': data/y_float.npy holds float64 numbers). "
        "Set scoring to regression scorers (r2, neg_mean_squared_error, neg_root_mean_squared_error, "
        "neg_mean_absolute_error, ...). Or, if they are class ids, save them as integers (np.save(path, "
        "y.astype(np.int64))) or declare task: classification."
    )
    assert not (path.parent / "results").exists()


def test_float_labels_declared_as_classes_are_taken_as_classes(make_experiment):
    path = make_experiment(task="classification")
    np.save(path.parent / "data" / "y_float.npy", np.arange(60) % 3 * 1.0)
    rewrite(path, data={"kind": "arrays", "x": "data/x.npy", "y": "data/y_float.npy"})
    assert main(["run", str(path), "--quiet"]) == 0


def test_labels_that_are_a_numeric_target(make_experiment, capsys):
    """0.0, 0.05, 0.1, ...: as classes, 60 classes of one sample each; refused before any fold trains."""
    path = make_experiment(task="classification")
    np.save(path.parent / "data" / "y_target.npy", np.arange(60) / 20)
    rewrite(path, data={"kind": "arrays", "x": "data/x.npy", "y": "data/y_target.npy"})
    code, err = run_cli(capsys, "run", str(path))
    assert code == 2
    assert err == (
        f"gridcv: error: {path}: key 'data.y' must hold class labels, but data/y_target.npy (dtype float64) holds "
        "60 distinct numbers that are not all integers (e.g. 0.05 at index 1); as classes, each distinct value "
        "would be a class of its own. Class labels are integers 0 .. n_classes-1; for a numeric target, set "
        "task: regression."
    )
    assert not (path.parent / "results").exists()


def test_csv_labels_that_are_a_numeric_target(make_experiment, capsys):
    path = make_experiment(task="classification")
    (path.parent / "samples").mkdir()
    rows = ["file,label"]
    for i, value in enumerate(["3", "0.53", "1.25", "0.53", "2", "7.5e-1"]):
        np.save(path.parent / "samples" / f"{i}.npy", np.full(4, i, dtype=np.float32))
        rows.append(f"{i}.npy,{value}")
    (path.parent / "samples" / "list.csv").write_text("\n".join(rows) + "\n")
    rewrite(path, data={"kind": "csv", "path": "samples/list.csv"})
    code, err = run_cli(capsys, "run", str(path))
    assert code == 2
    assert err == (
        f"gridcv: error: {path}: key 'data.y_column' is 'label', but that column of "
        f"{path.parent / 'samples' / 'list.csv'} holds 5 distinct numbers that are not all integers (e.g. '0.53' "
        "in row 3); as classes, each distinct value would be a class of its own. Class labels are integers "
        "0 .. n_classes-1 or names; for a numeric target, set task: regression."
    )
    assert not (path.parent / "results").exists()
    rewrite(path, task=None, scoring="accuracy")  # inferred: regression, which accuracy does not score
    code, err = run_cli(capsys, "run", str(path))
    assert code == 2
    assert err == (
        f"gridcv: error: {path}: key 'scoring' names 'accuracy', which scores predicted classes, but the task is "
        f"regression (inferred from key 'data.y_column': column 'label' of {path.parent / 'samples' / 'list.csv'} "
        "holds numbers that are not all whole). Set scoring to regression scorers (r2, neg_mean_squared_error, "
        "neg_root_mean_squared_error, neg_mean_absolute_error, ...)."
    )


def test_a_grid_value_that_is_not_a_list(make_experiment, capsys):
    path = make_experiment(grid={"filters": 8, "units": [4, 8]})
    code, err = run_cli(capsys, "run", str(path))
    assert code == 2
    assert err == (
        f"gridcv: error: {path}: key 'grid.filters' is 8; grid values are lists of the values to try: write "
        "`filters: [8]`. See experiments/digits.yaml for a valid file."
    )


def test_grid_values_that_are_not_lists_in_a_list_of_grids(make_experiment, capsys):
    path = make_experiment(grid=[{"units": [4]}, {"units": [8], "optimizer": "adam", "dropout": 0.5}])
    code, err = run_cli(capsys, "run", str(path))
    assert code == 2
    assert err == (
        f"gridcv: error: {path}: key 'grid[1].optimizer' is 'adam' and key 'grid[1].dropout' is 0.5; grid values "
        "are lists of the values to try: write `optimizer: [adam]` and `dropout: [0.5]`. See "
        "experiments/digits.yaml for a valid file."
    )


def test_a_grid_that_is_not_a_mapping(make_experiment, capsys):
    path = make_experiment(grid=[{"units": [4]}, 8])
    code, err = run_cli(capsys, "run", str(path))
    assert code == 2
    assert err == (
        f"gridcv: error: {path}: key 'grid[1]' is 8; a grid given as a list holds mappings of parameter names to "
        "lists of the values to try (- {filters: [8, 16]}). See experiments/digits.yaml for a valid file."
    )


def test_builder_file_missing(make_experiment, capsys):
    path = make_experiment(model="nowhere.py:build")
    code, err = run_cli(capsys, "run", str(path))
    assert code == 2
    assert err == (
        f"gridcv: error: {path}: key 'model' names nowhere.py, but {path.parent / 'nowhere.py'} does not exist. "
        "Give the builder's file relative to the experiment file, e.g. 'models.py:build'."
    )


def test_builder_function_missing(make_experiment, capsys):
    path = make_experiment(model="builder.py:make")
    code, err = run_cli(capsys, "run", str(path))
    assert code == 2
    assert err == (
        f"gridcv: error: {path}: key 'model' names make() in {path.parent / 'builder.py'}, which defines no such "
        "function (it defines build). Fix the name after the colon."
    )


def test_builder_module_not_importable(make_experiment, capsys):
    path = make_experiment(model="no_such_package.models:build")
    code, err = run_cli(capsys, "run", str(path))
    assert code == 2
    assert err == (
        f"gridcv: error: {path}: key 'model' names module 'no_such_package.models', which is not importable. "
        "Install it, or use 'path/to/file.py:function' relative to the experiment file."
    )


UNCOMPILED = """
import keras

def build(params, input_shape, n_classes):
    return keras.Sequential([keras.Input(shape=input_shape), keras.layers.Dense(n_classes)])
"""


def test_uncompiled_model_with_an_unknown_loss_in_compile(finished_run, capsys):
    # An uncompiled model is compiled from `compile:` (issue 6); a name Keras does not
    # know there is found by the builder check, before anything is written.
    path, folder, before = finished_run
    (path.parent / "builder.py").write_text(UNCOMPILED)
    rewrite(path, compile={"loss": "sparse_categorical_crossentropi"})
    other = path.parent / "results" / "other"
    code, err = run_cli(capsys, "run", str(path), "--output", str(other))
    assert code == 2
    assert not other.exists()
    assert snapshot(folder) == before
    assert err == (
        f"gridcv: error: {path}: key 'compile.loss' is 'sparse_categorical_crossentropi', which is not a "
        "Keras loss. Did you mean 'sparse_categorical_crossentropy'? Use a name from keras.losses, e.g. "
        "sparse_categorical_crossentropy for integer labels."
    )


def test_builder_returns_something_else(make_experiment, capsys):
    path = make_experiment(builder="def build(params, input_shape, n_classes):\n    return 'a model'\n")
    code, err = run_cli(capsys, "run", str(path))
    assert code == 2
    assert err == (
        f"gridcv: error: {path}: key 'model': builder.py:build returned str, not a keras.Model. The builder must "
        "return a model: build(params, input_shape, n_classes)."
    )
    assert not (path.parent / "results" / "tiny").exists()


def test_more_splits_than_samples_per_class(make_experiment, capsys):
    path = make_experiment(cv={"splitter": "StratifiedKFold", "n_splits": 25})
    code, err = run_cli(capsys, "run", str(path))
    assert code == 2
    assert err == (
        f"gridcv: error: {path}: key 'cv.n_splits' is 25, but class 0 has only 20 samples, so some validation "
        "folds would not contain it. Lower cv.n_splits to at most 20, or use KFold if that is intended."
    )


def test_unknown_splitter_and_argument(make_experiment, capsys):
    path = make_experiment(cv={"splitter": "StratifiedKFolds", "n_splits": 2})
    code, err = run_cli(capsys, "run", str(path))
    assert code == 2
    assert err.startswith(
        f"gridcv: error: {path}: key 'cv.splitter' is 'StratifiedKFolds', which is not a "
        "scikit-learn splitter. Did you mean 'StratifiedKFold'? Use one of GroupKFold, "
    )
    path = make_experiment(cv={"splitter": "KFold", "n_split": 2})
    code, err = run_cli(capsys, "run", str(path))
    assert err == (
        f"gridcv: error: {path}: unknown key 'n_split' in 'cv' (did you mean 'n_splits'?); valid keys there are "
        "splitter, n_splits, shuffle, random_state (KFold takes n_splits, shuffle, random_state)."
    )


def test_unknown_scorer(make_experiment, capsys):
    path = make_experiment(scoring=["accuracy", "f1_macr"])
    code, err = run_cli(capsys, "run", str(path))
    assert code == 2
    assert err == (
        f"gridcv: error: {path}: key 'scoring' names 'f1_macr', which is not a scikit-learn scorer. Did you mean "
        "'f1_macro' or 'f1_micro'? See sklearn.metrics.get_scorer_names() for the full list."
    )


def test_bad_memory_size_on_the_command_line(make_experiment, capsys):
    path = make_experiment()
    code, err = run_cli(capsys, "run", str(path), "--max-worker-memory", "lots")
    assert code == 2
    assert err.startswith(
        f"gridcv: error: {path}: execution.max_worker_memory (from the file or the command line) "
        "is 'lots': could not parse value and unit from byte string."
    )


def test_results_of_a_folder_without_results(tmp_path, capsys):
    code, err = run_cli(capsys, "results", str(tmp_path))
    assert code == 2
    assert err == (
        f"gridcv: error: {tmp_path}: no gridcv results here (expected results.sqlite). Pass the results "
        "folder of a run, such as results/<name>, or the experiment file."
    )


def test_no_traceback_without_debug_and_one_with_it(make_experiment):
    path = make_experiment(scoring="nope")
    cmd = [sys.executable, "-m", "gridcv.cli", "run", str(path)]
    plain = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert plain.returncode == 2
    assert "Traceback" not in plain.stderr
    assert plain.stderr.count("\n") == 1
    debug = subprocess.run(
        [sys.executable, "-m", "gridcv.cli", "--debug", "run", str(path)], capture_output=True, text=True, timeout=120
    )
    assert debug.returncode == 2 and "Traceback" in debug.stderr


def test_a_callback_mapping_with_an_unknown_name_or_argument(finished_run, capsys):
    path, folder, before = finished_run
    rewrite(path, fit={"epochs": 2, "batch_size": 16, "callbacks": {"early_stoping": {"patience": 2}}})
    code, err = run_cli(capsys, "run", str(path))
    assert (code, err) == (
        2,
        f"gridcv: error: {path}: key 'fit.callbacks' names 'early_stoping', which is not a gridcv callback. Did you "
        "mean 'early_stopping'? Use one of early_stopping, reduce_lr_on_plateau, model_checkpoint, tensorboard, or "
        "'module:ClassName' for a callback of your own.",
    )
    rewrite(path, fit={"epochs": 2, "batch_size": 16, "callbacks": {"early_stopping": {"patient": 2}}})
    code, err = run_cli(capsys, "run", str(path))
    assert (code, err) == (
        2,
        f"gridcv: error: {path}: unknown key 'patient' in 'fit.callbacks.early_stopping' (did you mean 'patience'?); "
        "early_stopping takes monitor, min_delta, patience, mode, baseline, restore_best_weights, start_from_epoch.",
    )
    assert snapshot(folder) == before
