"""The up-front check (issue 10): the first candidate's model runs on one real batch before any fold
trains, and a mistake every fold would hit is one paragraph, exit code 2, nothing written.

Each mistake is run with ``--restart`` against a finished results folder: the check comes before
the folder is moved aside, so the folder must stay exactly as it was.
"""

from __future__ import annotations

import hashlib
import shutil
import textwrap
from pathlib import Path

import pytest
import yaml

import gridcv
from gridcv.cli import main
from gridcv.errors import BuilderError
from tests.conftest import TINY_BUILDER, base_config, write_arrays, write_segmentation


@pytest.fixture(scope="module")
def finished_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results folder of a finished tiny run, made once for this module."""
    folder = tmp_path_factory.mktemp("finished")
    write_arrays(folder)
    (folder / "builder.py").write_text(textwrap.dedent(TINY_BUILDER))
    config = base_config(grid={"units": [4]}, fit={"epochs": 1, "batch_size": 16})
    config["output"] = str(folder / "results")
    (folder / "experiment.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", str(folder / "experiment.yaml"), "--quiet"]) == 0
    return folder / "results"


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def refused(path: Path, finished_folder: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """Runs ``gridcv run --restart`` over a copy of a finished folder; asserts exit 2 and nothing touched."""
    results = path.parent / "results" / "tiny"
    shutil.copytree(finished_folder, results)
    before = snapshot(results)
    capsys.readouterr()
    code = main(["run", str(path), "--quiet", "--restart"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert snapshot(results) == before  # no fold row written, not moved aside
    assert sorted(p.name for p in results.parent.iterdir()) == ["tiny"]
    assert err.startswith("gridcv: error: ")
    return err.removeprefix("gridcv: error: ")


def builder_returning(last_layer: str, loss: str = '"sparse_categorical_crossentropy"', head: str = "") -> str:
    return f"""
import keras


def build(params, input_shape, n_classes):
    model = keras.Sequential([keras.Input(shape=input_shape), {head}{last_layer}])
    model.compile(optimizer="adam", loss={loss})
    return model
"""


def test_a_builder_with_the_wrong_signature(make_experiment, finished_folder, capsys):
    path = make_experiment(builder="def build(params, shape):\n    raise TypeError('never called')\n")
    assert refused(path, finished_folder, capsys) == (
        f"{path}: key 'model': builder.py:build takes build(params, shape), but gridcv calls it as "
        "build(params, input_shape, n_classes) (too many positional arguments). Give it these three "
        "parameters: def build(params, input_shape, n_classes)."
    )


def test_ten_units_for_three_classes(make_experiment, finished_folder, capsys):
    path = make_experiment(builder=builder_returning('keras.layers.Dense(10, activation="softmax")'))
    assert refused(path, finished_folder, capsys) == (
        f"{path}: key 'model': builder.py:build returned a model with 10 output units, but the data has 3 "
        "classes; end the model with Dense(3, activation='softmax')."
    )


def test_one_unit_for_three_classes(make_experiment, finished_folder, capsys):
    path = make_experiment(
        builder=builder_returning('keras.layers.Dense(1, activation="sigmoid")', '"binary_crossentropy"')
    )
    assert refused(path, finished_folder, capsys) == (
        f"{path}: key 'model': builder.py:build returned a model with one output unit, but the data has 3 "
        "classes (one unit fits only two classes); end the model with Dense(3, activation='softmax')."
    )


def test_a_mask_of_the_wrong_shape(make_experiment, finished_folder, tmp_path, capsys):
    write_segmentation(tmp_path)
    path = make_experiment(
        builder=builder_returning('keras.layers.Conv2D(n_classes, 3, strides=2, activation="softmax")'),
        data={"kind": "images", "root": "images", "masks": "masks", "n_classes": 3, "color_mode": "grayscale"},
        cv={"splitter": "KFold", "n_splits": 2},
        scoring=["mean_iou"],
    )
    assert refused(path, finished_folder, capsys) == (
        f"{path}: key 'model': builder.py:build returned a model whose output is (3, 3, 3) per image, but the "
        "masks are 8x8 with 3 classes; the output must be (8, 8, 3) per image."
    )


def test_a_one_hot_loss_on_integer_labels(make_experiment, finished_folder, capsys):
    path = make_experiment(
        builder=builder_returning('keras.layers.Dense(n_classes, activation="softmax")', '"categorical_crossentropy"')
    )
    assert refused(path, finished_folder, capsys) == (
        f"{path}: key 'model': builder.py:build returned a model compiled with the loss 'categorical_crossentropy', "
        "which expects one-hot targets, but gridcv feeds integer class ids 0 .. 2. Use "
        "sparse_categorical_crossentropy."
    )


CUSTOM_LOSS = """
import keras


def one_hot_loss(y_true, y_pred):  # written for one-hot targets
    return keras.ops.categorical_crossentropy(y_true, y_pred)


def build(params, input_shape, n_classes):
    model = keras.Sequential([keras.Input(shape=input_shape), keras.layers.Dense(n_classes, activation="softmax")])
    model.compile(optimizer="adam", loss=one_hot_loss)
    return model
"""


def test_a_loss_that_cannot_be_computed_on_the_labels(make_experiment, finished_folder, capsys):
    path = make_experiment(builder=CUSTOM_LOSS)
    assert refused(path, finished_folder, capsys) == (
        f"{path}: key 'model': builder.py:build returned a model whose output is (3,) per sample, and the loss "
        "'one_hot_loss' cannot be computed on it and the labels: ValueError: Arguments `target` and `output` "
        "must have the same rank (ndim). Received: target.shape=(4,), output.shape=(4, 3). gridcv feeds integer "
        "class ids 0 .. 2, one per sample. Use sparse_categorical_crossentropy (one output per class), or "
        "binary_crossentropy (one sigmoid output for two classes)."
    )


UNCOMPILED = """
import keras


def build(params, input_shape, n_classes):
    return keras.Sequential([keras.Input(shape=input_shape), keras.layers.Dense(n_classes, activation="softmax")])
"""


def test_a_compile_section_keras_refuses(make_experiment, finished_folder, capsys):
    path = make_experiment(builder=UNCOMPILED, compile={"optimizer": "adam", "learning_rate": "fast"})
    assert refused(path, finished_folder, capsys) == (
        f"{path}: key 'compile' makes Adam(learning_rate='fast'), which Keras refuses: Argument `learning_rate` "
        "should be float, or an instance of LearningRateSchedule, or a callable (that takes in the current "
        "iteration value and returns the corresponding learning rate value). Received instead: "
        "learning_rate=fast. Fix the value in 'compile' (or the grid key of the same name)."
    )


def test_a_callback_that_cannot_be_made(make_experiment, finished_folder, capsys):
    """Built-in callbacks' arguments are type-checked in the parent (tests/test_training_config.py); what only
    the constructor knows is found by the up-front check."""
    threshold = "\n\nclass Threshold(keras.callbacks.Callback):\n    def __init__(self, threshold):\n"
    threshold += "        super().__init__()\n        if threshold < 0:\n"
    threshold += "            raise ValueError('threshold must be >= 0')\n"
    callbacks = [{"name": "early_stopping", "patience": 1}, {"name": "builder.py:Threshold", "threshold": -1}]
    path = make_experiment(
        builder=TINY_BUILDER + threshold, fit={"epochs": 1, "batch_size": 16, "callbacks": callbacks}
    )
    assert refused(path, finished_folder, capsys) == (
        f"{path}: key 'fit.callbacks[1]' (builder.py:Threshold, threshold=-1) cannot be made: ValueError: "
        "threshold must be >= 0. Fix its arguments."
    )


# Raises for depth 0 (a bug for that value only); for depth 1 its output has 10 units for 3 classes.
SECOND_CANDIDATE = """
import keras


def build(params, input_shape, n_classes):
    if params["depth"] == 0:
        raise ValueError("depth 0 is not supported")
    model = keras.Sequential([keras.Input(shape=input_shape), keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model
"""


def test_a_builder_that_raises_for_the_first_candidate_is_checked_on_the_next(make_experiment, finished_folder, capsys):
    path = make_experiment(builder=SECOND_CANDIDATE, grid={"depth": [0, 1]})
    assert refused(path, finished_folder, capsys) == (
        f"{path}: key 'model': builder.py:build returned a model with 10 output units, but the data has 3 "
        "classes; end the model with Dense(3, activation='softmax')."
    )


def test_a_builder_that_raises_for_the_first_candidate_only_leaves_it_to_its_folds(make_experiment):
    # scikit-learn's error_score: the failing candidate's folds record the error, the others run.
    path = make_experiment(grid={"explode": ["yes", "no"]}, fit={"epochs": 1, "batch_size": 16})
    gridcv.run_experiment(path)
    folds = gridcv.load_folds(path)
    assert folds["status"].tolist() == ["failed", "failed", "done", "done"]
    assert folds["message"].tolist()[:2] == ["ValueError: this candidate always fails"] * 2


def test_the_check_stops_the_run_the_same_way_in_a_worker_process(make_experiment):
    path = make_experiment(
        builder=builder_returning('keras.layers.Dense(10, activation="softmax")'),
        execution={"isolation": "process"},
    )
    with pytest.raises(BuilderError) as info:
        gridcv.run_experiment(path)
    assert str(info.value) == (
        f"{path}: key 'model': builder.py:build returned a model with 10 output units, but the data has 3 "
        "classes; end the model with Dense(3, activation='softmax')."
    )
    assert not (path.parent / "results" / "tiny").exists()


def test_a_metric_that_cannot_be_computed_on_the_labels(make_experiment, finished_folder, capsys):
    path = make_experiment(builder=UNCOMPILED, compile={"metrics": ["accuracy", "f1_score"]})
    assert refused(path, finished_folder, capsys) == (
        f"{path}: key 'model': builder.py:build returned a model whose metrics (accuracy, f1_score) (key "
        "'compile.metrics') cannot be computed on its output and the labels: ValueError: FBetaScore expects 2D "
        "inputs with shape (batch_size, output_dim). Received input shapes: y_pred.shape=(4, 3) and "
        "y_true.shape=(4,). gridcv feeds integer class ids 0 .. 2, one per sample. Use metrics for integer labels "
        "(accuracy, sparse_categorical_accuracy), or none: gridcv's scoring does not need them."
    )


def test_a_later_candidate_whose_output_cannot_be_scored_is_refused_before_its_fold_trains(make_experiment):
    builder = builder_returning('keras.layers.Dense(params["out"], activation="softmax")')
    path = make_experiment(builder=builder, grid={"out": [3, 10]}, fit={"epochs": 1, "batch_size": 16})
    with pytest.raises(gridcv.UserError) as info:
        gridcv.run_experiment(path)
    assert str(info.value) == (
        f"{path}: key 'model': builder.py:build returned a model with 10 output units, but the data has 3 "
        "classes; end the model with Dense(3, activation='softmax')."
    )
    folds = gridcv.load_folds(path)
    assert folds["status"].tolist() == ["done", "done", "pending", "pending"]  # fixed, the run resumes there
    assert folds["epochs_run"][2:].isna().all()  # refused before it trained
