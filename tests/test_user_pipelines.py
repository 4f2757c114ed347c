"""``data: kind: python``: the user's PyDataset, tf.data pipeline or generator, trained, scored and refused clearly.

The pipelines below are written as users write them; each logs its calls, so the tests see
what gridcv asked of the factory. Kills, resumes and out-of-memory retries of the same
pipelines in real worker processes are in tests/test_user_pipelines_resume.py.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

import gridcv
from gridcv.cli import main
from gridcv.runner.progress import SilentReporter
from tests.conftest import write_arrays

PIPELINES = '''
import json, math, os, pathlib
import numpy as np
import keras
import tensorflow as tf

HERE = pathlib.Path(__file__).parent
X = np.load(HERE / "data" / "x.npy")
Y = np.load(HERE / "data" / "y.npy")


def labels():
    return Y


def groups():
    return np.arange(len(Y)) // 6


def _log(kind, indices, batch_size, seed, training, epoch=None):
    with open(HERE / "calls.jsonl", "a") as f:
        f.write(json.dumps({"kind": kind, "n": len(indices), "first": int(indices[0]), "batch_size": batch_size,
                            "seed": seed, "training": training, "epoch": epoch, "pid": os.getpid()}) + "\\n")
    marker = HERE / "oom-once"  # holds how many such calls to let through first (the up-front check's)
    if training and batch_size == 16 and marker.exists():
        left = int(marker.read_text() or 0)
        if left:
            marker.write_text(str(left - 1))
        else:
            marker.unlink()
            raise MemoryError("simulated: the batch of 16 does not fit")


class Samples(keras.utils.PyDataset):
    """A PyDataset: the samples of the given indices, shuffled for training from (seed, epoch)."""

    def __init__(self, indices, batch_size, order_seed=None, **kwargs):
        super().__init__(**kwargs)
        self.indices = np.array(indices)
        if order_seed is not None:
            np.random.default_rng(order_seed).shuffle(self.indices)
        self.batch_size = batch_size

    def __len__(self):
        return math.ceil(len(self.indices) / self.batch_size)

    def __getitem__(self, i):
        rows = self.indices[i * self.batch_size:(i + 1) * self.batch_size]
        return X[rows], Y[rows]


def make_py_dataset(indices, batch_size, seed, training, epoch):
    _log("py_dataset", indices, batch_size, seed, training, epoch)
    return Samples(indices, batch_size, [seed, epoch] if training else None)


def make_tf_data(indices, batch_size, seed, training, epoch):
    _log("tf_data", indices, batch_size, seed, training, epoch)
    data = tf.data.Dataset.from_tensor_slices((X[indices], Y[indices]))
    if training:
        data = data.shuffle(len(indices), seed=seed * 1000 + epoch, reshuffle_each_iteration=False)
    return data.batch(batch_size)


def make_generator(indices, batch_size, seed, training, epoch):
    _log("generator", indices, batch_size, seed, training, epoch)
    order = np.array(indices)
    if training:
        np.random.default_rng([seed, epoch]).shuffle(order)
    def batches():
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            yield X[rows], Y[rows]
    return batches()


def make_without_epoch(indices, batch_size, seed, training):
    _log("no_epoch", indices, batch_size, seed, training)
    return Samples(indices, batch_size, seed if training else None)


def make_list(indices, batch_size, seed, training):
    return [X[indices], Y[indices]]


def make_for_one_argument(paths):
    return None


def make_dropping_the_last_batch(indices, batch_size, seed, training):
    return tf.data.Dataset.from_tensor_slices((X[indices], Y[indices])).batch(3, drop_remainder=True)


def short_labels():
    return Y[:-1]
'''

FACTORIES = ["make_py_dataset", "make_tf_data", "make_generator"]


def pipeline_experiment(folder: Path, factory: str, **overrides: object) -> Path:
    """An experiment over the tiny arrays (60 samples, 3 classes) fed by one factory of PIPELINES."""
    if not (folder / "data" / "x.npy").exists():
        write_arrays(folder)
    (folder / "pipelines.py").write_text(PIPELINES)
    from tests.conftest import TINY_BUILDER

    (folder / "builder.py").write_text(textwrap.dedent(TINY_BUILDER))
    config: dict[str, object] = {
        "name": "pipes",
        "seed": 0,
        "data": {"kind": "python", "factory": f"pipelines.py:{factory}", "labels": "pipelines.py:labels"},
        "model": "builder.py:build",
        "fit": {"epochs": 2, "batch_size": 16},
        "grid": {"units": [8]},
        "cv": {"splitter": "StratifiedKFold", "n_splits": 2, "shuffle": True, "random_state": 0},
        "scoring": "accuracy",
        "execution": {"isolation": "inline"},
        "output": str(folder / "results"),
    }
    config.update(overrides)
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def calls(folder: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (folder / "calls.jsonl").read_text().splitlines()]


class Collecting(SilentReporter):
    def __init__(self) -> None:
        self.messages: list[str] = []

    def message(self, text: str) -> None:
        self.messages.append(text)


@pytest.mark.parametrize("factory", FACTORIES)
def test_each_kind_of_pipeline_trains_and_is_scored_on_its_validation_samples(tmp_path, factory):
    """The factory is called with the fold's samples: to train (per epoch, as it takes epoch) and to score."""
    path = pipeline_experiment(tmp_path, factory, return_train_score=True, train_score_max_samples=10)
    reporter = Collecting()
    gridcv.run_experiment(path, reporter=reporter)
    folds = gridcv.load_folds(path)
    assert folds["status"].tolist() == ["done", "done"]
    assert ((folds["test_accuracy"] >= 0) & (folds["test_accuracy"] <= 1)).all()
    assert folds["train_accuracy"].notna().all()
    made = [(c["n"], c["batch_size"], c["training"], c["epoch"]) for c in calls(tmp_path)]
    assert {c["seed"] for c in calls(tmp_path)} == set(folds["seed"].tolist())
    # The up-front check: the fold's training split (to learn the input shape), 4 samples, 4 validation samples.
    check = [(30, 16, True, 0), (4, 4, True, 0), (4, 2, False, 0)]
    fold = [(30, 16, True, 0), (30, 16, True, 1), (30, 16, False, 0), (10, 16, False, 0)]
    if factory == "make_generator":  # made again at every epoch: the first one was spent on the input shape
        fold = [(30, 16, True, 0), (30, 16, True, 0), (30, 16, True, 0), (30, 16, True, 1), (30, 16, False, 0)]
        fold += [(10, 16, False, 0)]
    assert made == check + fold + fold
    assert sum("data: kind: python:" in m for m in reporter.messages) == 1


def test_scores_are_those_of_the_models_predictions_on_the_validation_samples(tmp_path):
    """A model that predicts class x[:, 0] > 1 (fixed weights, learning rate 0): accuracy computed by hand."""
    fixed = """
import keras
import numpy as np


def build(params, input_shape, n_classes):
    last = keras.layers.Dense(n_classes, activation="softmax")
    model = keras.Sequential([keras.Input(shape=input_shape), last])
    kernel = np.zeros((input_shape[0], n_classes))
    kernel[0] = [-4.0, 0.0, 4.0]
    last.set_weights([kernel, np.array([2.0, 0.0, -6.0])])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss="sparse_categorical_crossentropy")
    return model
"""
    path = pipeline_experiment(tmp_path, "make_tf_data")
    (tmp_path / "builder.py").write_text(fixed)
    gridcv.run_experiment(path)
    x, y = np.load(tmp_path / "data" / "x.npy"), np.load(tmp_path / "data" / "y.npy")
    logits = np.stack([-4 * x[:, 0] + 2, 0 * x[:, 0], 4 * x[:, 0] - 6], axis=1)
    predicted = logits.argmax(axis=1)
    from sklearn.model_selection import StratifiedKFold

    splits = StratifiedKFold(2, shuffle=True, random_state=0).split(x, y)
    expected = [float(np.mean(predicted[test] == y[test])) for _, test in splits]
    assert gridcv.load_folds(path)["test_accuracy"].tolist() == expected


def test_groups_from_a_function_and_the_note_for_a_factory_without_epoch(tmp_path):
    path = pipeline_experiment(
        tmp_path,
        "make_without_epoch",
        data={
            "kind": "python",
            "factory": "pipelines.py:make_without_epoch",
            "labels": "pipelines.py:labels",
            "groups": "pipelines.py:groups",
        },
        cv={"splitter": "GroupKFold", "n_splits": 2},
    )
    reporter = Collecting()
    gridcv.run_experiment(path, reporter=reporter)
    folds = gridcv.load_folds(path)
    assert folds["status"].tolist() == ["done", "done"]
    note = [m for m in reporter.messages if m.startswith("data: kind: python:")]
    assert note == [
        "data: kind: python: every epoch is checkpointed, a killed fold resumes from its last epoch, an out-of-memory "
        "fold is retried with half the batch (pipelines.py:make_without_epoch is called again with it), and each "
        "fold is scored on its validation samples. Not promised: a bit-for-bit resume of a pipeline that draws its "
        "shuffling or augmentation from its own random state or numpy's, Python's or TensorFlow's global one: the "
        "factory is called once per fold (a generator once per epoch), so after a resume such a pipeline restarts "
        "its random state and later epochs see other batch orders than an uninterrupted run. To resume exactly, give "
        "the factory an epoch parameter and draw from (seed, epoch)."
    ]
    assert all(c["epoch"] is None for c in calls(tmp_path))


def run_cli(capsys, path: Path) -> tuple[int, str]:
    code = main(["run", str(path), "--quiet"])
    return code, capsys.readouterr().err.strip()


def test_a_factory_that_does_not_exist(tmp_path, capsys):
    path = pipeline_experiment(tmp_path, "make_sequence")
    assert run_cli(capsys, path) == (
        2,
        f"gridcv: error: {path}: key 'data.factory' names make_sequence() in {tmp_path / 'pipelines.py'}, which "
        "defines no such function (it defines HERE, Samples, X, Y, _log, groups, labels, make_dropping_the_last_batch, "
        "make_for_one_argument, make_generator, make_list, make_py_dataset, make_tf_data, "
        "make_without_epoch, short_labels). Fix the name after the colon.",
    )
    assert not (tmp_path / "results").exists()
    (tmp_path / "experiment.yaml").write_text(path.read_text().replace("pipelines.py:make_sequence", "pipes.py:make"))
    assert run_cli(capsys, path) == (
        2,
        f"gridcv: error: {path}: key 'data.factory' names pipes.py, but {tmp_path / 'pipes.py'} does not exist. "
        "Give the function's file relative to the experiment file, e.g. 'models.py:build'.",
    )


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (
            "make_list",
            "returned list, which gridcv cannot feed to Keras. Return a keras.utils.PyDataset (or Sequence), a "
            "tf.data.Dataset, or a generator of (x, y) batches, or one of these with its steps per epoch as (data, "
            "steps) (arrays: wrap them as tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)).",
        ),
        (
            "make_for_one_argument",
            "takes make_for_one_argument(paths), but gridcv calls it as make(indices, batch_size, seed, training) (too "
            "many positional arguments). Give it these four parameters (it also gets epoch= and params= when it names "
            "them).",
        ),
        (
            "make_dropping_the_last_batch",
            "made validation batches (training=False) of 3 samples for the 4 samples it was given. A fold is scored "
            "on the targets of its validation batches, so they must hold each given sample once: keep the last, "
            "smaller batch, and do not repeat or drop samples.",
        ),
    ],
)
def test_a_factory_that_returns_something_unusable(tmp_path, capsys, factory, message):
    path = pipeline_experiment(tmp_path, factory)
    assert run_cli(capsys, path) == (2, f"gridcv: error: {path}: key 'data.factory': pipelines.py:{factory} {message}")
    assert not (tmp_path / "results").exists()


def test_labels_of_the_wrong_length(tmp_path, capsys):
    data = {
        "kind": "python",
        "factory": "pipelines.py:make_tf_data",
        "labels": "pipelines.py:short_labels",
        "groups": "pipelines.py:groups",
    }
    path = pipeline_experiment(tmp_path, "make_tf_data", data=data, cv={"splitter": "GroupKFold", "n_splits": 2})
    assert run_cli(capsys, path) == (
        2,
        f"gridcv: error: {path}: keys 'data.labels' and 'data.groups' disagree: pipelines.py:short_labels gives 59 "
        "labels but pipelines.py:groups gives 60 groups. Give one label and one group per sample, in the same order.",
    )


def test_one_hot_targets_from_the_pipeline_are_scored_as_classes(tmp_path):
    """A tutorial's to_categorical targets with categorical_crossentropy: the pipeline's business, scored as ids."""
    onehot = PIPELINES.replace(
        "return X[rows], Y[rows]\n\n\ndef make_py", "return X[rows], np.eye(3)[Y[rows]]\n\n\ndef make_py"
    )
    path = pipeline_experiment(tmp_path, "make_py_dataset", compile={"loss": "categorical_crossentropy"})
    (tmp_path / "pipelines.py").write_text(onehot)
    (tmp_path / "builder.py").write_text(
        (tmp_path / "builder.py")
        .read_text()
        .replace(
            '    model.compile(optimizer=keras.optimizers.Adam(params.get("learning_rate", 0.01)),\n'
            '                  loss="sparse_categorical_crossentropy")\n',
            "",
        )
    )
    gridcv.run_experiment(path)
    folds = gridcv.load_folds(path)
    assert folds["status"].tolist() == ["done", "done"]
    assert folds["test_accuracy"].between(0, 1).all()
