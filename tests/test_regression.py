"""Regression and multilabel: results laid out and valued as scikit-learn's GridSearchCV gives them.

The models have fixed weights and train with learning rate 0, so their predictions are
known in advance; a scikit-learn estimator with the same parameter predicts the same
numbers, and GridSearchCV on the same splits must give the same table, value for value.
"""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.metrics import f1_score, roc_auc_score
from sklearn.model_selection import GridSearchCV, GroupKFold, KFold, RepeatedKFold

import gridcv
from gridcv.config.tasks import SINGLE_TARGET_SCORERS, regression_scorers
from gridcv.errors import ConfigError

# An uncompiled model (gridcv compiles it: SGD at learning rate 0, and for regression the default loss
# becomes mean_squared_error) whose one unit outputs scale * x[:, 0]; with power-of-two scales and zero
# weights elsewhere the float32 arithmetic is exact.
FIXED = """
import keras
import numpy as np


def build(params, input_shape, n_classes):
    last = keras.layers.Dense(n_classes)
    model = keras.Sequential([keras.Input(shape=input_shape), last])
    kernel = np.zeros((input_shape[0], n_classes))
    kernel[0, :] = params["scale"]
    last.set_weights([kernel, np.zeros(n_classes)])
    return model
"""
# One sigmoid unit per label: label k is predicted from scale * x[:, k] - 0.5 (default loss: binary_crossentropy).
FIXED_LABELS = """
import keras
import numpy as np


def build(params, input_shape, n_classes):
    last = keras.layers.Dense(n_classes, activation="sigmoid")
    model = keras.Sequential([keras.Input(shape=input_shape), last])
    last.set_weights([np.eye(input_shape[0], n_classes) * params["scale"], np.full(n_classes, -0.5)])
    return model
"""
REGRESSION_SCORERS = list(regression_scorers())


class Scaled(RegressorMixin, BaseEstimator):
    """What the fixed model predicts, computed as Keras does (float32), as a scikit-learn regressor."""

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale

    def fit(self, X, y):
        return self

    def predict(self, X):
        return (X[:, 0].astype(np.float32) * np.float32(self.scale)).astype(np.float64)


def write_regression(folder, n: int = 45) -> tuple[np.ndarray, np.ndarray]:
    """Positive features and targets (every scorer, the log and deviance ones included, is defined)."""
    rng = np.random.default_rng(5)
    x = rng.uniform(0.5, 2.0, size=(n, 4)).astype(np.float32)
    y = 1.5 * x[:, 0].astype(np.float64) + rng.uniform(0.05, 0.3, size=n)
    (folder / "data").mkdir(exist_ok=True)
    np.save(folder / "data" / "x.npy", x)
    np.save(folder / "data" / "y_reg.npy", y)
    return x, y


def regression_experiment(make_experiment, tmp_path, **overrides):
    write_regression(tmp_path)
    config = {
        "data": {"kind": "arrays", "x": "data/x.npy", "y": "data/y_reg.npy"},
        "fit": {"epochs": 1, "batch_size": 8},
        "grid": {"scale": [0.5, 2.0]},
        "cv": {"splitter": "KFold", "n_splits": 3, "shuffle": True, "random_state": 0},
        "scoring": REGRESSION_SCORERS,
        "compile": {"optimizer": "sgd", "learning_rate": 0.0},
    }
    return make_experiment(builder=FIXED, **{**config, **overrides})


def test_regression_results_equal_grid_search_cv_value_for_value(make_experiment, tmp_path):
    path = regression_experiment(make_experiment, tmp_path)
    gridcv.run_experiment(path)
    results = gridcv.load_results(path)
    x, y = np.load(tmp_path / "data" / "x.npy"), np.load(tmp_path / "data" / "y_reg.npy")
    search = GridSearchCV(
        Scaled(),
        {"scale": [0.5, 2.0]},
        scoring=REGRESSION_SCORERS,
        cv=KFold(3, shuffle=True, random_state=0),
        refit=False,
    ).fit(x, y)
    expected = search.cv_results_
    ours = [c for c in results.columns if not c.startswith(("n_folds_", "partial_"))]
    assert ours == list(expected)
    assert results["params"].tolist() == [{"scale": 0.5}, {"scale": 2.0}]
    assert results["param_scale"].tolist() == [0.5, 2.0]
    for name in REGRESSION_SCORERS:  # each regression scorer, by name
        for column in [c for c in expected if c.endswith(f"_test_{name}")]:
            assert results[column].tolist() == list(expected[column]), column


@pytest.mark.parametrize(
    ("cv", "splitter"),
    [
        (
            {"splitter": "RepeatedKFold", "n_splits": 3, "n_repeats": 2, "random_state": 0},
            RepeatedKFold(n_splits=3, n_repeats=2, random_state=0),
        ),
        ({"splitter": "GroupKFold", "n_splits": 3}, GroupKFold(n_splits=3)),
    ],
)
def test_regression_with_repeated_and_group_splitters_equals_grid_search_cv(make_experiment, tmp_path, cv, splitter):
    x, y = write_regression(tmp_path)
    data = {"kind": "arrays", "x": "data/x.npy", "y": "data/y_reg.npy"}
    groups = np.arange(len(y)) % 9 if cv["splitter"] == "GroupKFold" else None
    if groups is not None:
        np.save(tmp_path / "data" / "groups.npy", groups)
        data["groups"] = "data/groups.npy"
    scoring = ["r2", "neg_mean_squared_error"]
    path = regression_experiment(make_experiment, tmp_path, data=data, cv=cv, grid={"scale": [2.0]}, scoring=scoring)
    gridcv.run_experiment(path)
    results = gridcv.load_results(path)
    search = GridSearchCV(Scaled(), {"scale": [2.0]}, scoring=scoring, cv=splitter, refit=False)
    expected = search.fit(x, y, groups=groups).cv_results_
    for column in [c for c in expected if "_test_" in c]:
        assert results[column].tolist() == list(expected[column]), column
    assert gridcv.load_folds(path)["status"].tolist() == ["done"] * (6 if "n_repeats" in cv else 3)


def test_the_task_is_inferred_from_float_targets_and_the_fold_rows_say_so(make_experiment, tmp_path):
    path = regression_experiment(make_experiment, tmp_path, scoring="r2", grid={"scale": [1.0]})
    gridcv.run_experiment(path)
    folds = gridcv.load_folds(path)
    assert folds["status"].tolist() == ["done"] * 3
    assert np.isfinite(folds["test_r2"]).all()
    assert np.isfinite(folds["best_loss"]).all()  # trained with the default regression loss, mean squared error


def test_several_targets_are_scored_as_scikit_learn_averages_them(make_experiment, tmp_path):
    x, y = write_regression(tmp_path)
    targets = np.stack([y, 2 * y], axis=1)
    np.save(tmp_path / "data" / "y2.npy", targets)
    path = regression_experiment(
        make_experiment,
        tmp_path,
        data={"kind": "arrays", "x": "data/x.npy", "y": "data/y2.npy"},
        grid={"scale": [2.0]},
        scoring=["r2", "neg_mean_absolute_error"],
    )
    gridcv.run_experiment(path)
    folds = gridcv.load_folds(path)
    splits = list(KFold(3, shuffle=True, random_state=0).split(x))
    predicted = (x[:, 0] * np.float32(2.0)).astype(np.float64)[:, None].repeat(2, axis=1)
    from sklearn.metrics import mean_absolute_error, r2_score

    assert folds["test_r2"].tolist() == [r2_score(targets[te], predicted[te]) for _, te in splits]
    assert folds["test_neg_mean_absolute_error"].tolist() == [
        -mean_absolute_error(targets[te], predicted[te]) for _, te in splits
    ]
    single = SINGLE_TARGET_SCORERS[0]
    config = yaml.safe_load(path.read_text())
    config["scoring"] = ["r2", single]
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError) as err:
        gridcv.run_experiment(path)
    assert str(err.value) == (
        f"{path}: key 'scoring' names {single!r}, which scores one target, but the task is regression with 2 "
        "targets per sample (inferred from key 'data.y': data/y2.npy holds 2 columns of numbers). Set scoring to "
        "regression scorers (r2, neg_mean_squared_error, neg_root_mean_squared_error, neg_mean_absolute_error, ...)."
    )


def test_multilabel_scores_equal_scikit_learns_on_known_predictions(make_experiment, tmp_path):
    """Three 0/1 labels per sample, one sigmoid unit per label: f1_samples and roc_auc as scikit-learn has them."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, 3)).astype(np.float32)
    y = (x + rng.normal(scale=0.8, size=x.shape) > 0).astype(np.int64)
    (tmp_path / "data").mkdir(exist_ok=True)
    np.save(tmp_path / "data" / "x3.npy", x)
    np.save(tmp_path / "data" / "labels.npy", y)
    path = make_experiment(
        builder=FIXED_LABELS,
        data={"kind": "arrays", "x": "data/x3.npy", "y": "data/labels.npy"},
        fit={"epochs": 1, "batch_size": 8},
        grid={"scale": [2.0]},
        cv={"splitter": "KFold", "n_splits": 2, "shuffle": True, "random_state": 1},
        scoring=["f1_samples", "roc_auc", "accuracy"],
        compile={"optimizer": "sgd", "learning_rate": 0.0},
    )
    gridcv.run_experiment(path)
    folds = gridcv.load_folds(path)
    probabilities = 1 / (1 + np.exp(-(x.astype(np.float64) * 2.0 - 0.5)))
    predicted = (x * np.float32(2.0) - np.float32(0.5) > 0).astype(np.int64)
    splits = list(KFold(2, shuffle=True, random_state=1).split(x))
    assert folds["test_f1_samples"].tolist() == [f1_score(y[te], predicted[te], average="samples") for _, te in splits]
    assert folds["test_accuracy"].tolist() == [float(np.mean((y[te] == predicted[te]).all(axis=1))) for _, te in splits]
    assert folds["test_roc_auc"].tolist() == pytest.approx(
        [roc_auc_score(y[te], probabilities[te]) for _, te in splits], rel=1e-6
    )
