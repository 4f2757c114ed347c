"""Parity with scikit-learn, value for value: load_results against GridSearchCV's own cv_results_.

The Keras model below answers one class whatever its input (a fixed bias of 10 on that class, a
learning rate too small to move it), so its fold scores are known in advance: those of a scikit-learn
estimator that answers the same class. Both searches run on the same splits, the grid is a list of
dicts with ties and a candidate whose builder raises, and the two tables must agree in columns,
order, dtypes and values (timings aside), ranks included.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import GridSearchCV, StratifiedKFold

import gridcv

ANSWERING = """
import keras


def build(params, input_shape, n_classes):
    if params.get("explode") == "yes":
        raise ValueError("this candidate always fails")
    bias = [10.0 if c == params["answer"] else 0.0 for c in range(n_classes)]
    model = keras.Sequential([
        keras.Input(shape=input_shape),
        keras.layers.Dense(n_classes, activation="softmax", kernel_initializer="zeros",
                           bias_initializer=keras.initializers.Constant(bias)),
    ])
    model.compile(optimizer=keras.optimizers.SGD(1e-9), loss="sparse_categorical_crossentropy")
    return model
"""

# Candidates: answer 0 with units 4 and 8 (a tie), answer 1 twice (a tie), answer 2, and one that raises.
GRID = [{"answer": [0, 1], "units": [4, 8]}, {"answer": [2], "explode": ["no", "yes"]}]
CV = {"splitter": "StratifiedKFold", "n_splits": 3, "shuffle": True, "random_state": 0}
SCORING = ["accuracy", "f1_macro"]
TIMINGS = ["mean_fit_time", "std_fit_time", "mean_score_time", "std_score_time"]


class Answering(ClassifierMixin, BaseEstimator):
    """Answers one class, as the Keras model does; raises for ``explode='yes'`` as its builder does."""

    def __init__(self, answer: int = 0, units: int = 4, explode: str = "no") -> None:
        self.answer = answer
        self.units = units
        self.explode = explode

    def fit(self, X, y):
        if self.explode == "yes":
            raise ValueError("this candidate always fails")
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):
        return np.full(len(X), self.answer)


def test_load_results_equals_grid_search_cv_value_for_value(make_experiment, tmp_path):
    y = np.array([0] * 30 + [1] * 20 + [2] * 10)  # unbalanced: each answer scores differently
    x = np.random.default_rng(0).normal(size=(60, 4)).astype(np.float32)
    (tmp_path / "data").mkdir()
    np.save(tmp_path / "data" / "x.npy", x)
    np.save(tmp_path / "data" / "y.npy", y)
    path = make_experiment(
        builder=ANSWERING,
        grid=GRID,
        cv=CV,
        scoring=SCORING,
        return_train_score=True,
        fit={"epochs": 1, "batch_size": 8},
    )
    gridcv.run_experiment(path)
    ours = gridcv.load_results(path)

    splitter = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the failing candidate's FitFailedWarning, f1's zero division
        search = GridSearchCV(
            Answering(), GRID, scoring=SCORING, cv=splitter, refit=False, return_train_score=True, error_score=np.nan
        ).fit(x, y)
    theirs = pd.DataFrame(search.cv_results_)

    assert list(ours.columns[: theirs.shape[1]]) == list(theirs.columns)
    assert list(ours.columns[theirs.shape[1] :]) == [
        "n_folds_done",
        "n_folds_failed",
        "n_folds_pending",
        "n_folds_running",
        "partial_mean_test_accuracy",
        "partial_mean_test_f1_macro",
    ]
    assert ours[theirs.columns].dtypes.to_dict() == theirs.dtypes.to_dict()  # rank_* int32, scores float64...
    same = [c for c in theirs.columns if c not in TIMINGS]
    pd.testing.assert_frame_equal(ours[same], theirs[same], check_exact=True)
    # What the comparison rests on, stated plainly: the ties, the failed candidate, its NaN-missing params.
    assert ours["rank_test_accuracy"].tolist() == [1, 1, 3, 3, 5, 6]
    assert ours["rank_test_f1_macro"].tolist() == [1, 1, 3, 3, 5, 6]
    assert np.isnan(ours["mean_test_accuracy"].iloc[5]) and ours["n_folds_failed"].tolist() == [0] * 5 + [3]
    assert ours["param_units"].tolist()[:4] == [4.0, 8.0, 4.0, 8.0] and ours["param_units"].iloc[4:].isna().all()
    assert ours["param_explode"].iloc[:4].isna().all() and ours["param_explode"].tolist()[4:] == ["no", "yes"]
    assert (ours[TIMINGS].iloc[:5] > 0).all().all()
