"""The task: inferred from the targets or declared, and refused where scorers, splitters or outputs do not fit it."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import yaml

from gridcv.config import load_experiment, parse_data
from gridcv.config.tasks import MULTILABEL_SCORERS, scorers_of
from gridcv.data.sources import open_source
from gridcv.errors import BuilderError, ConfigError, DataError
from gridcv.training.outputs import Culprit, OutputKind, output_layout
from tests.conftest import base_config

W = "exp.yaml"


def arrays(tmp_path, y: np.ndarray) -> dict[str, str]:
    np.save(tmp_path / "x.npy", np.zeros((len(y), 2), dtype=np.float32))
    np.save(tmp_path / "y.npy", y)
    return {"kind": "arrays", "x": "x.npy", "y": "y.npy"}


@pytest.mark.parametrize(
    ("y", "task", "n_outputs", "how"),
    [
        (np.array([0, 2, 1, 2]), "classification", 3, "inferred from key 'data.y': y.npy holds integer labels"),
        (np.array([0.5, 2.0, 1.0, 2.5]), "regression", 1, "inferred from key 'data.y': y.npy holds float64 numbers"),
        (
            np.array([[0, 1, 1], [1, 0, 0]] * 2),
            "multilabel",
            3,
            "inferred from key 'data.y': y.npy holds 3 columns of 0/1",
        ),
        (
            np.ones((4, 2), dtype=np.float32),
            "regression",
            2,
            "inferred from key 'data.y': y.npy holds 2 columns of numbers",
        ),
    ],
)
def test_the_task_is_inferred_from_how_the_targets_are_stored(tmp_path, y, task, n_outputs, how):
    source = open_source(parse_data(arrays(tmp_path, y)), tmp_path, W)
    assert (source.task, source.n_classes, source.task_origin.how) == (task, n_outputs, how)
    assert source.labels().tolist() == y.tolist()


def test_targets_that_fit_no_task_or_not_the_declared_one(tmp_path):
    with pytest.raises(DataError) as err:
        open_source(parse_data(arrays(tmp_path, np.array([[0, 3], [1, 2]]))), tmp_path, W)
    assert str(err.value) == (
        "exp.yaml: key 'data.y' must be a 1-D array of integer class labels (classification) or of numbers "
        "(regression), or a 2-D array of 0/1 columns (multilabel) or of numbers (regression with several targets), "
        "but y.npy has dtype int64 and shape (2, 2). Save 0/1 label columns as integers 0 and 1, or several numeric "
        "targets as floats. Or declare task: to say how to read them."
    )
    with pytest.raises(DataError) as err:
        open_source(parse_data(arrays(tmp_path, np.array([0, 1, 1]))), tmp_path, W, task="multilabel")
    assert str(err.value) == (
        "exp.yaml: the task is multilabel, so key 'data.y' must hold one column of 0/1 per label (shape "
        "(n_samples, n_labels)), but y.npy has shape (3,)."
    )
    with pytest.raises(DataError) as err:
        open_source(parse_data(arrays(tmp_path, np.array([0.5, np.nan]))), tmp_path, W, task="regression")
    assert str(err.value) == (
        "exp.yaml: key 'data.y' holds a value that is not a finite number for sample 1 of y.npy (nan); regression "
        "targets must be finite. Fill or drop such samples."
    )
    # integers are classes unless the task says they are numbers
    source = open_source(parse_data(arrays(tmp_path, np.array([3, 5, 4]))), tmp_path, W, task="regression")
    assert (source.task, source.labels().dtype, source.n_classes) == ("regression", np.float64, 1)


def test_csv_label_columns_make_multilabel_or_several_targets(tmp_path):
    for i in range(4):
        np.save(tmp_path / f"{i}.npy", np.zeros(2, dtype=np.float32))
    rows = ["file,cat,dog,weight", "0.npy,1,0,2.5", "1.npy,0,1,3", "2.npy,1,1,0.5", "3.npy,0,0,1"]
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    labels = open_source(parse_data({"kind": "csv", "path": "m.csv", "y_column": ["cat", "dog"]}), tmp_path, W)
    assert (labels.task, labels.n_classes, labels.labels().tolist()) == (
        "multilabel",
        2,
        [[1, 0], [0, 1], [1, 1], [0, 0]],
    )
    both = open_source(parse_data({"kind": "csv", "path": "m.csv", "y_column": ["cat", "weight"]}), tmp_path, W)
    assert (both.task, both.n_classes) == ("regression", 2)
    one = open_source(parse_data({"kind": "csv", "path": "m.csv", "y_column": "weight"}), tmp_path, W)
    assert (one.task, one.labels().tolist()) == ("regression", [2.5, 3.0, 0.5, 1.0])
    csv = tmp_path / "m.csv"
    assert one.task_origin.how == (
        f"inferred from key 'data.y_column': column 'weight' of {csv} holds numbers that are not all whole"
    )
    open_source(parse_data({"kind": "csv", "path": "m.csv", "y_column": "cat"}), tmp_path, W, task="regression")
    (tmp_path / "m.csv").write_text("file,cat\n0.npy,yes\n1.npy,no\n")
    with pytest.raises(DataError) as err:
        open_source(parse_data({"kind": "csv", "path": "m.csv", "y_column": "cat"}), tmp_path, W, task="regression")
    assert str(err.value) == (
        f"exp.yaml: the task is regression, but column 'cat' of {tmp_path / 'm.csv'} holds 'yes' in row 2, which is "
        "not a number. Fix the row, or name the target column in data.y_column."
    )


def error_of(tmp_path, **sections) -> str:
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump(base_config(**sections)))
    with pytest.raises(ConfigError) as err:
        load_experiment(path)
    return str(err.value).replace(f"{path}: ", "")


def test_a_declared_task_is_checked_against_the_scorers_splitter_and_balancing(tmp_path):
    assert error_of(tmp_path, task="regression") == (
        "key 'scoring' names 'accuracy', which scores predicted classes, but the task is regression (declared "
        "with 'task:'). Set scoring to regression scorers (r2, neg_mean_squared_error, neg_root_mean_squared_error, "
        "neg_mean_absolute_error, ...)."
    )
    assert error_of(tmp_path, task="classification", scoring=["accuracy", "r2"]) == (
        "key 'scoring' names 'r2', which scores predicted numbers, but the task is classification (declared with "
        "'task:'). Set scoring to classification scorers (accuracy, balanced_accuracy, f1_macro, roc_auc, "
        "neg_log_loss, ...). Or declare task: regression if the labels are numeric targets."
    )
    assert error_of(tmp_path, task="multilabel", scoring="f1", cv={"splitter": "KFold", "n_splits": 2}) == (
        "key 'scoring' names 'f1', which scores one class per sample, not several labels, but the task is "
        "multilabel (declared with 'task:'). Set scoring to multilabel scorers (f1_samples, f1_macro, roc_auc, "
        "average_precision, accuracy (every label right), ...)."
    )
    assert error_of(tmp_path, task="regression", scoring="r2") == (
        "key 'cv.splitter' is StratifiedKFold, which stratifies by class, but the task is regression (declared "
        "with 'task:'): numeric targets have no classes to stratify by. Use KFold, RepeatedKFold, ShuffleSplit, or "
        "GroupKFold for groups."
    )
    kfold = {"splitter": "KFold", "n_splits": 2}
    assert error_of(tmp_path, task="regression", scoring="r2", cv=kfold, grid={"balance": ["oversample"]}) == (
        "key 'data.balance' (or grid key 'balance') asks for class balancing, which works on one class per sample, "
        "but the task is regression (declared with 'task:'). Use balance: none."
    )
    images = {"kind": "images", "root": "im"}
    assert error_of(tmp_path, task="regression", scoring="r2", cv=kfold, data=images) == (
        "key 'task' is regression, but data: kind: images gives each image the class of its folder. Use task: "
        "classification, or a CSV manifest (kind: csv) with numeric or 0/1 label columns."
    )
    assert error_of(tmp_path, task="segmentation", scoring="mean_iou") == (
        "key 'task' is segmentation, but the data has no masks: segmentation takes images with masks (kind: "
        "images with data.masks, or kind: csv with data.mask_column). Set them, or another task."
    )


def test_multilabel_scorers_are_those_scikit_learn_scores_on_label_columns():
    """The static list in gridcv.config.tasks, checked against scikit-learn itself."""
    import warnings

    from sklearn.metrics import get_scorer

    from gridcv.training.scoring import PredictedLabels

    rng = np.random.default_rng(0)
    y = (rng.random((20, 3)) < 0.5).astype(int)
    p = rng.random((20, 3))
    estimator = PredictedLabels(p, (p > 0.5).astype(int))
    works = []
    for name in scorers_of("classification"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                get_scorer(name)(estimator, np.arange(20).reshape(-1, 1), y)
            works.append(name)
        except (ValueError, TypeError):
            pass
    assert set(MULTILABEL_SCORERS) <= set(works)
    # what works besides: the one-vs-rest/one aliases of roc_auc, and probability losses gridcv leaves out
    assert set(works) - set(MULTILABEL_SCORERS) == {
        "roc_auc_ovr",
        "roc_auc_ovo",
        "roc_auc_ovr_weighted",
        "roc_auc_ovo_weighted",
        "neg_log_loss",
        "neg_brier_score",
        "d2_log_loss_score",
        "d2_brier_score",
    }


def model_with(units: int, activation: str | None, loss: object) -> keras.Model:
    model = keras.Sequential([keras.Input(shape=(2,)), keras.layers.Dense(units, activation=activation)])
    model.compile(optimizer="sgd", loss=loss)
    return model


def layout_of(model: keras.Model, task: str, n: int):
    shapes = [tuple(model.outputs[0].shape)]
    return output_layout(model, task, n, (2,), shapes, Culprit("exp.yaml: key 'model': m.py:build"))


def test_regression_and_multilabel_layouts():
    assert layout_of(model_with(1, None, "mse"), "regression", 1).kind is OutputKind.VALUES
    assert layout_of(model_with(2, "sigmoid", "mae"), "regression", 2).kind is OutputKind.VALUES
    assert (
        layout_of(model_with(3, "sigmoid", "binary_crossentropy"), "multilabel", 3).kind
        is OutputKind.LABEL_PROBABILITIES
    )
    logits = keras.losses.BinaryCrossentropy(from_logits=True)
    assert layout_of(model_with(3, None, logits), "multilabel", 3).kind is OutputKind.LABEL_LOGITS
    layout = layout_of(model_with(1, None, "mse"), "regression", 1)
    assert layout.values(np.array([[1.5], [2.0]])).tolist() == [1.5, 2.0]


@pytest.mark.parametrize(
    ("units", "activation", "loss", "task", "message"),
    [
        (
            1,
            "softmax",
            "mse",
            "regression",
            "returned a model whose output layer applies softmax, which makes its outputs sum to 1 (one unit: always "
            "1), so it cannot fit numeric targets. Use Dense(1) with no activation.",
        ),
        (
            1,
            None,
            "sparse_categorical_crossentropy",
            "regression",
            "returned a model compiled with the loss 'sparse_categorical_crossentropy', which compares class "
            "probabilities with classes, but the task is regression (numeric targets). Use a loss that compares "
            "values: mean_squared_error, mean_absolute_error or huber.",
        ),
        (
            3,
            None,
            "mse",
            "regression",
            "returned a model with 3 output units, but the task is regression with 1 target(s) per sample; end the "
            "model with Dense(1) and no activation.",
        ),
        (
            3,
            "softmax",
            "binary_crossentropy",
            "multilabel",
            "returned a model whose output layer applies softmax, which makes its outputs sum to 1: the labels "
            "compete, but a sample may have several labels. Use Dense(3, activation='sigmoid') with "
            "binary_crossentropy.",
        ),
        (
            3,
            None,
            "binary_crossentropy",
            "multilabel",
            "returned a model whose output layer has no activation (its outputs are logits), but the loss "
            "'binary_crossentropy' expects probabilities (from_logits=False). Add activation='sigmoid' to the last "
            "layer, or compile with binary_crossentropy(from_logits=True).",
        ),
        (
            3,
            "sigmoid",
            "categorical_crossentropy",
            "multilabel",
            "returned a model compiled with the loss 'categorical_crossentropy', which expects one class per sample, "
            "but the task is multilabel (a 0/1 target per label). Use binary_crossentropy with Dense(3, "
            "activation='sigmoid').",
        ),
    ],
)
def test_outputs_that_do_not_fit_regression_or_multilabel_are_refused(units, activation, loss, task, message):
    with pytest.raises(BuilderError) as err:
        layout_of(model_with(units, activation, loss), task, 1 if task == "regression" else 3)
    assert str(err.value) == f"exp.yaml: key 'model': m.py:build {message}"
