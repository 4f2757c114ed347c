"""load_results has scikit-learn's cv_results_ layout; it works mid-run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import rankdata
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import GridSearchCV

import gridcv
from gridcv.config import ExperimentSpec
from gridcv.cv_results import rank as _rank
from gridcv.execution.messages import FoldOutcome, OutcomeKind
from gridcv.plan import make_plan
from gridcv.store import FoldStatus, ResultStore


class Guess(ClassifierMixin, BaseEstimator):
    """A scikit-learn classifier with the test grid's parameter names."""

    def __init__(self, units=4, learning_rate=0.01):
        self.units = units
        self.learning_rate = learning_rate

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):
        return np.full(len(X), self.classes_[0])

    def predict_proba(self, X):
        p = np.zeros((len(X), len(self.classes_)))
        p[:, 0] = 1
        return p


def sklearn_columns(grid, scoring) -> list[str]:
    X, y = np.zeros((30, 2)), np.arange(30) % 3
    search = GridSearchCV(Guess(), grid, scoring=scoring, cv=2, refit=False).fit(X, y)
    return list(search.cv_results_)


@pytest.mark.parametrize("scoring", ["accuracy", ["accuracy", "f1_macro"]])
def test_columns_are_exactly_scikit_learns(make_experiment, scoring):
    grid = {"units": [4, 8], "learning_rate": [0.01, 0.1]}
    path = make_experiment(grid=grid, scoring=scoring)
    gridcv.run_experiment(path)
    results = gridcv.load_results(path)
    expected = sklearn_columns(grid, scoring)
    assert list(results.columns[: len(expected)]) == expected
    extras = list(results.columns[len(expected) :])
    assert extras[:4] == ["n_folds_done", "n_folds_failed", "n_folds_pending", "n_folds_running"]
    assert results["params"].tolist() == [
        {"learning_rate": 0.01, "units": 4},
        {"learning_rate": 0.01, "units": 8},
        {"learning_rate": 0.1, "units": 4},
        {"learning_rate": 0.1, "units": 8},
    ]
    first = "score" if isinstance(scoring, str) else scoring[0]
    means = results[f"mean_test_{first}"].to_numpy()
    assert np.allclose(means, results[[f"split0_test_{first}", f"split1_test_{first}"]].mean(axis=1))
    # each candidate's own rank, in grid order (scipy's min-rank of the negated means; tests/test_parity.py
    # compares with GridSearchCV's ranks value for value)
    assert results[f"rank_test_{first}"].tolist() == rankdata(-means, method="min").astype(int).tolist()


def test_ranking_matches_scikit_learn_with_nan_last():
    assert _rank(np.array([0.5, np.nan, 0.9, 0.5])).tolist() == [2, 4, 1, 2]
    assert _rank(np.array([np.nan, np.nan])).tolist() == [1, 1]
    rng = np.random.default_rng(0)
    for _ in range(50):  # scikit-learn's rule: scipy's rankdata(-means, "min") with NaN below the worst
        means = rng.integers(0, 5, size=12).astype(float) / 4
        means[rng.random(12) < 0.2] = np.nan
        if np.isnan(means).all():
            continue
        filled = np.nan_to_num(means, nan=np.nanmin(means) - 1)
        assert _rank(means).tolist() == rankdata(-filled, method="min").astype(np.int32).tolist()


def test_param_columns_of_several_grids_are_in_scikit_learns_order(make_experiment):
    grid = [{"units": [4, 8]}, {"units": [4], "learning_rate": [0.1]}]  # scikit-learn: param_units first
    path = make_experiment(grid=grid, fit={"epochs": 1, "batch_size": 16})
    gridcv.run_experiment(path)
    results = gridcv.load_results(path)
    expected = sklearn_columns(grid, "accuracy")
    assert list(results.columns[: len(expected)]) == expected


def test_mid_run_results_have_nan_for_unfinished_folds(tmp_path):
    spec = ExperimentSpec.model_validate(
        {
            "name": "mid",
            "data": {"kind": "arrays", "x": "x", "y": "y"},
            "model": "m.py:f",
            "grid": {"u": [1, 2]},
            "cv": {"splitter": "KFold", "n_splits": 2},
            "scoring": "accuracy",
        }
    )
    plan = make_plan(spec, np.arange(10) % 2)
    with ResultStore.open(tmp_path, create=True) as store:
        store.set_meta(
            scoring="accuracy", candidates=[c for c in dict.fromkeys(t.candidate_id for t in plan.tasks)], n_splits=2
        )
        store.add_tasks(plan.tasks)
        first = plan.tasks[0].task_id
        store.mark_running(first, 8, 1)
        store.record(
            FoldOutcome(first, OutcomeKind.DONE, scores={"accuracy": 0.8}, fit_time=2.0, score_time=0.5),
            FoldStatus.DONE,
        )
        store.mark_running(plan.tasks[1].task_id, 8, 1)
        results = gridcv.load_results(tmp_path)
    assert results["split0_test_score"].tolist()[0] == 0.8
    assert np.isnan(results["split1_test_score"].tolist()[0])
    assert np.isnan(results["mean_test_score"]).all()
    assert results["partial_mean_test_score"].tolist()[0] == 0.8
    assert results["n_folds_done"].tolist() == [1, 0]
    assert results["n_folds_running"].tolist() == [1, 0]
    assert results["rank_test_score"].tolist() == [1, 1]
    folds = gridcv.load_folds(tmp_path)
    assert folds["status"].tolist() == ["done", "running", "pending", "pending"]
    assert folds["test_accuracy"].iloc[0] == 0.8


@pytest.mark.filterwarnings("error")  # numpy's "mean of empty slice" included
def test_a_folder_read_before_its_plan_is_stored_is_empty_and_quiet(tmp_path):
    ResultStore.open(tmp_path, create=True).close()  # what a reader can meet in a run's first instant
    results = gridcv.load_results(tmp_path)
    assert len(results) == 0
    assert list(results.columns[:4]) == ["mean_fit_time", "std_fit_time", "mean_score_time", "std_score_time"]
    assert len(gridcv.load_folds(tmp_path)) == 0


def test_failed_candidate_ranks_last_and_keeps_its_error(make_experiment):
    path = make_experiment(grid={"explode": ["no", "yes"]})
    gridcv.run_experiment(path)
    results = gridcv.load_results(path)
    assert results["rank_test_score"].tolist() == [1, 2]
    assert np.isnan(results["mean_test_score"].iloc[1])
    assert results["n_folds_failed"].tolist() == [0, 2]
    folds = gridcv.load_folds(path)
    failed = folds[folds["status"] == "failed"]
    assert failed["message"].tolist() == ["ValueError: this candidate always fails"] * 2
    assert failed["cause"].tolist() == ["error"] * 2
    assert "Traceback" in failed["error"].iloc[0]


def test_every_fold_failing_is_an_error(make_experiment):
    path = make_experiment(grid={"explode": ["yes"]})
    with pytest.raises(gridcv.AllFoldsFailed, match=r"every fold failed \(2 of 2\); the first: ValueError"):
        gridcv.run_experiment(path)


def test_load_results_accepts_the_experiment_file(make_experiment):
    path = make_experiment()
    gridcv.run_experiment(path)
    pd.testing.assert_frame_equal(gridcv.load_results(path), gridcv.load_results(path.parent / "results" / "tiny"))
