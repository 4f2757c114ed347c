"""Train scores with scikit-learn's column names, history metrics, and refit of the best candidate."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import GridSearchCV, StratifiedKFold

import gridcv
from gridcv.store import FoldStatus, ResultStore
from tests.conftest import SEEN_BUILDER, seen_by_build, write_arrays


class _Prior(ClassifierMixin, BaseEstimator):
    """The smallest estimator with a ``units`` parameter, to get scikit-learn's columns."""

    def __init__(self, units: int = 4) -> None:
        self.units = units

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, X):
        return np.full((len(X), len(self.classes_)), 1.0 / len(self.classes_))

    def predict(self, X):
        return np.zeros(len(X), dtype=int)


def test_train_score_columns_match_scikit_learn(make_experiment, tmp_path):
    scoring = ["accuracy", "neg_log_loss"]
    path = make_experiment(builder=SEEN_BUILDER, scoring=scoring, return_train_score=True, train_score_max_samples=10)
    gridcv.run_experiment(path)
    # Each fold scored its 30 test samples and exactly 10 of the 30 it trained on (train_score_max_samples).
    for _, trained, scored in seen_by_build(tmp_path)[1:]:
        assert len(set(trained)) == 30 and len(scored) == len(set(scored)) == 40
        assert len(set(scored) & set(trained)) == 10
    results = gridcv.load_results(path)
    x, y = np.zeros((60, 1)), np.arange(60) % 3
    search = GridSearchCV(
        _Prior(), {"units": [4, 8]}, scoring=scoring, refit=False, cv=StratifiedKFold(2), return_train_score=True
    ).fit(x, y)
    ours = [c for c in results.columns if not c.startswith(("n_folds_", "partial_"))]
    assert ours == list(search.cv_results_)
    assert np.isfinite(results[["split0_train_accuracy", "mean_train_neg_log_loss"]].to_numpy()).all()
    folds = gridcv.load_folds(path)
    assert (folds["train_neg_log_loss"] < 0).all()
    assert {"best_loss"} <= set(folds.columns)


def test_single_scorer_train_columns_are_named_score(make_experiment):
    path = make_experiment(return_train_score=True)
    gridcv.run_experiment(path)
    columns = list(gridcv.load_results(path).columns)
    assert columns[columns.index("rank_test_score") + 1 :][:4] == [
        "split0_train_score",
        "split1_train_score",
        "mean_train_score",
        "std_train_score",
    ]


def test_refit_saves_loads_predicts_and_is_not_redone(uncompiled_experiment):
    path = uncompiled_experiment(
        scoring=["accuracy", "f1_macro"],
        refit="f1_macro",
        grid={"units": [2, 16]},
        fit={"epochs": 3, "batch_size": 16},
        compile={"learning_rate": 0.05},
    )
    folder = path.parent / "results" / "tiny"
    gridcv.run_experiment(path)
    results = gridcv.load_results(path)
    best = int(results["rank_test_f1_macro"].to_numpy().argmin())
    summary = json.loads((folder / "best_model.json").read_text())
    assert summary["params"] == results["params"][best]
    assert summary["refit_scorer"] == "f1_macro"
    assert summary["cv_results"]["mean_test_f1_macro"] == pytest.approx(results["mean_test_f1_macro"][best])
    assert summary["refit"]["n_samples"] == 60 and summary["refit"]["epochs_run"] == 3

    model = gridcv.load_best_model(folder)
    x = np.load(path.parent / "data" / "x.npy")
    assert model.predict(x[:5], verbose=0).shape == (5, 3)
    assert gridcv.load_best_model(path).count_params() == model.count_params()  # the experiment file works too

    stamp = (folder / "best_model.keras").stat().st_mtime_ns
    gridcv.run_experiment(path)
    assert (folder / "best_model.keras").stat().st_mtime_ns == stamp
    with ResultStore.open(folder, readonly=True) as store:
        assert [r.status for r in store.refit_rows()] == [FoldStatus.DONE]


def test_refit_interrupted_resumes_from_its_checkpoint(uncompiled_experiment, clear_stop_request):
    folder_marker = uncompiled_experiment().parent / "stop-now"
    overrides = {
        "grid": {"units": [4]},
        "fit": {
            "epochs": 3,
            "batch_size": 16,
            "callbacks": [{"name": "builder.py:StopOnMarker", "marker": str(folder_marker)}],
        },
    }
    path = uncompiled_experiment(**overrides)  # refit off: the search runs to the end
    gridcv.run_experiment(path)
    path = uncompiled_experiment(refit=True, **overrides)  # same fingerprint: only the refit is left
    folder_marker.touch()
    with pytest.raises(gridcv.RunInterrupted, match="during the refit"):
        gridcv.run_experiment(path)
    clear_stop_request.clear()
    folder = path.parent / "results" / "tiny"
    assert not (folder / "best_model.keras").exists()
    assert list((folder / "checkpoints").glob("refit-*/*/epoch-00001.npz"))
    with ResultStore.open(folder, readonly=True) as store:
        assert [r.status for r in store.refit_rows()] == [FoldStatus.PENDING]
    gridcv.run_experiment(path)
    summary = json.loads((folder / "best_model.json").read_text())
    assert summary["refit"]["resumed_from_epoch"] == 1 and summary["refit"]["epochs_run"] == 3
    assert not list((folder / "checkpoints").glob("refit-*"))
    assert gridcv.load_best_model(folder).output_shape == (None, 3)


def test_refit_with_early_stopping_on_the_test_fold_trains_for_the_folds_mean_epochs(uncompiled_experiment):
    # With the default the refit monitors a part of all the data instead (tests/test_monitoring.py).
    stop = {"name": "early_stopping", "patience": 1, "monitor": "val_loss", "min_delta": 100.0}
    path = uncompiled_experiment(
        grid={"units": [4]},
        refit=True,
        fit={"epochs": 8, "batch_size": 16, "callbacks": [stop], "monitor_test_fold": True},
    )
    gridcv.run_experiment(path)
    assert gridcv.load_folds(path)["epochs_run"].tolist() == [2, 2]
    summary = json.loads((path.parent / "results" / "tiny" / "best_model.json").read_text())
    assert summary["refit"]["epochs"] == 2 and summary["refit"]["epochs_run"] == 2


def test_load_best_model_without_a_refit_is_a_clear_error(tmp_path):
    write_arrays(tmp_path)
    with pytest.raises(gridcv.ResultsError, match="no refit model here"):
        gridcv.load_best_model(tmp_path)


OOM_IN_REFIT = """
import keras

BUILDS = [0]


def build(params, input_shape, n_classes):
    BUILDS[0] += 1  # 1: gridcv's builder check; 2, 3: the two folds; 4: the refit's first attempt
    if BUILDS[0] == 4:
        raise MemoryError("simulated: the refit's batch does not fit")
    model = keras.Sequential([keras.Input(shape=input_shape), keras.layers.Dense(n_classes, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model
"""


def test_an_out_of_memory_refit_is_retried_with_half_the_batch_like_a_fold(make_experiment):
    path = make_experiment(builder=OOM_IN_REFIT, grid={"units": [4]}, refit=True, fit={"epochs": 2, "batch_size": 16})
    gridcv.run_experiment(path)
    folder = path.parent / "results" / "tiny"
    with ResultStore.open(folder, readonly=True) as store:
        (refit,) = store.refit_rows()
        attempts = store.attempts_of(refit.task_id)
    assert refit.status is FoldStatus.DONE and refit.task_id.startswith("refit-")
    assert [(a.outcome, a.batch_size, a.accumulation_steps) for a in attempts] == [("oom", 16, 1), ("done", 8, 2)]
    summary = json.loads((folder / "best_model.json").read_text())
    assert (summary["refit"]["batch_size"], summary["refit"]["accumulation_steps"]) == (8, 2)
    assert summary["refit"]["effective_batch_size"] == 16 and summary["task_id"] == refit.task_id


def test_a_builder_under_the_home_folder_is_found_by_the_check_and_by_the_worker(make_experiment, monkeypatch):
    home = make_experiment().parent / "home"
    home.mkdir()
    (home / "mine.py").write_text((make_experiment().parent / "builder.py").read_text())
    monkeypatch.setenv("HOME", str(home))
    path = make_experiment(model="~/mine.py:build", execution={"isolation": "process"})
    gridcv.run_experiment(path)
    assert gridcv.load_folds(path)["status"].tolist() == ["done"] * 4
