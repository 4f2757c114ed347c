"""gridcv.run(...) from Python, and SearchResults in scikit-learn's vocabulary (compared with a real GridSearchCV)."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import GridSearchCV

import gridcv
from gridcv.search import format_ranked
from tests.conftest import TINY_BUILDER, base_config, write_arrays, write_crashed_run


class Guess(ClassifierMixin, BaseEstimator):
    """A scikit-learn classifier with the test grid's parameter names."""

    def __init__(self, units=4, dropout=0.1):
        self.units = units
        self.dropout = dropout

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):
        return np.full(len(X), self.classes_[0])


def test_cv_results_has_gridsearchcvs_keys_types_and_masks(make_experiment):
    grid = [{"units": [4, 8]}, {"units": [4], "dropout": [0.0, 0.3]}]  # dropout missing from two candidates
    search = gridcv.run(make_experiment(grid=grid, fit={"epochs": 1, "batch_size": 16}))
    expected = GridSearchCV(Guess(), grid, cv=2, refit=False).fit(np.zeros((30, 2)), np.arange(30) % 3).cv_results_
    got = search.cv_results_
    assert list(got) == list(expected)
    for key, value in expected.items():
        assert type(got[key]) is type(value), key
        if isinstance(value, np.ndarray):
            assert got[key].dtype == value.dtype, key
    for key in ("param_units", "param_dropout"):
        assert got[key].mask.tolist() == expected[key].mask.tolist()
        assert got[key].compressed().tolist() == expected[key].compressed().tolist()
    assert got["params"] == expected["params"]
    assert search.n_splits_ == 2 and search.multimetric_ is False
    assert search.progress_["n_folds_done"].tolist() == [2, 2, 2, 2]


def test_best_attributes_follow_scikit_learn_for_one_scorer_without_refit(make_experiment):
    search = gridcv.run(make_experiment(grid={"units": [4, 8]}))
    r = search.cv_results_
    assert search.best_index_ == int(r["rank_test_score"].argmin())
    assert search.best_score_ == r["mean_test_score"][search.best_index_]
    assert search.best_params_ == r["params"][search.best_index_]
    folder = search.folder
    for name in ("best_estimator_", "refit_time_", "classes_"):
        assert not hasattr(search, name)
    with pytest.raises(gridcv.NotAvailableError) as info:
        _ = search.best_estimator_
    assert str(info.value) == (
        f"{folder} has no refit model: the experiment has no 'refit:' key. Set 'refit: <scorer>' (or true with "
        "one scorer) and run it again; only the refit is trained."
    )


def test_several_scorers_need_refit_for_best_attributes_as_in_scikit_learn(make_experiment):
    search = gridcv.run(make_experiment(scoring=["accuracy", "f1_macro"]))
    assert search.multimetric_ and not hasattr(search, "best_index_") and not hasattr(search, "best_params_")
    with pytest.raises(gridcv.NotAvailableError) as info:
        _ = search.best_score_
    assert str(info.value) == (
        f"best_index_, best_score_ and best_params_ of {search.folder}: with several scorers (accuracy, f1_macro) "
        "they need 'refit: <scorer>' in the experiment, as in scikit-learn's GridSearchCV. Rank by "
        "cv_results_['rank_test_<scorer>'] instead."
    )


def test_refit_scorer_picks_the_best_and_the_refit_model_loads_lazily(uncompiled_experiment):
    path = uncompiled_experiment(scoring=["accuracy", "f1_macro"], refit="f1_macro", grid={"units": [4, 8]})
    search = gridcv.run(path)
    r = search.cv_results_
    assert search.best_index_ == int(r["rank_test_f1_macro"].argmin())
    assert search.best_score_ == r["mean_test_f1_macro"][search.best_index_]
    assert search._estimator is None  # nothing loaded until asked
    model = search.best_estimator_
    assert model is search.best_estimator_
    assert model.gridcv_info.params == search.best_params_
    assert model.predict(np.zeros((2, 4), dtype=np.float32), verbose=0).shape == (2, 3)
    assert search.classes_.tolist() == [0, 1, 2]
    assert search.refit_time_ == search.best_model_info_.refit["fit_time"] > 0
    (search.folder / "best_model.keras").unlink()
    again = gridcv.load_search(search.folder)
    with pytest.raises(gridcv.NotAvailableError) as info:
        _ = again.best_estimator_
    assert str(info.value) == (
        f"the refit of the best candidate of {search.folder} ({search.best_params_}) has not finished yet. "
        "Run the experiment (gridcv run) to the end to train it."
    )


def test_run_takes_a_dict_with_paths_from_the_current_folder(tmp_path, monkeypatch):
    write_arrays(tmp_path)
    (tmp_path / "builder.py").write_text(TINY_BUILDER)
    monkeypatch.chdir(tmp_path)
    config = base_config(grid={"units": [4]})
    search = gridcv.run(config, quiet=True)
    folder = tmp_path / "results" / "tiny"
    assert search.folder == folder and search.progress_["n_folds_done"].tolist() == [2]
    copy = (folder / "experiment.yaml").read_text()
    assert copy.splitlines()[0] == (
        f"# Written by gridcv.run() from a dict; relative paths in it are relative to {tmp_path}"
    )
    assert yaml.safe_load(copy) == config
    assert gridcv.run(config, quiet=True).cv_results_["split0_test_score"] == search.cv_results_["split0_test_score"]


def test_run_takes_execution_keys_as_keyword_arguments_and_names_a_wrong_one(make_experiment):
    path = make_experiment(execution={"isolation": "process"})
    search = gridcv.run(path, quiet=True, isolation="inline", max_retries=1)
    assert gridcv.load_folds(search.folder)["worker_id"].tolist() == ["inline"] * 4
    with pytest.raises(gridcv.ConfigError) as info:
        gridcv.run(path, isolaton="inline")
    assert str(info.value).startswith(
        "gridcv.run() got an unknown keyword argument 'isolaton' (did you mean 'isolation'?). It takes output, "
        "restart, retry_failed, debug, quiet, reporter and the execution: keys (isolation, max_worker_memory, "
    )
    assert inspect.signature(gridcv.run).parameters["output"].kind is inspect.Parameter.KEYWORD_ONLY


def test_a_dict_with_a_value_yaml_cannot_write_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(gridcv.ConfigError) as info:
        gridcv.run(base_config(data={"kind": "arrays", "x": Path("data/x.npy"), "y": "data/y.npy"}))
    assert str(info.value).startswith("the experiment dict: holds a value YAML cannot write (")
    assert str(info.value).endswith(
        "Use str, int, float, bool, None, lists and dicts: str(path) for a Path, int(n) or float(x) for numpy numbers."
    )
    assert not (tmp_path / "results").exists()


def test_a_crashed_run_reads_with_nan_and_says_no_candidate_is_complete(tmp_path):
    write_crashed_run(tmp_path)
    search = gridcv.load_search(tmp_path)
    r = search.cv_results_
    assert r["split0_test_score"].tolist()[0] == 0.8 and np.isnan(r["split1_test_score"]).all()
    assert np.isnan(r["mean_test_score"]).all() and r["rank_test_score"].tolist() == [1, 1]
    assert search.progress_["partial_mean_test_score"].tolist()[0] == 0.8
    assert search.progress_["n_folds_running"].tolist() == [1, 0]
    with pytest.raises(gridcv.NotAvailableError) as info:
        _ = search.best_params_
    assert str(info.value) == (
        f"no candidate of {tmp_path} has a score on every fold yet (1 of 4 folds done); "
        "progress_['partial_mean_test_score'] has the means so far."
    )
    assert repr(search) == f"SearchResults('{tmp_path}': 2 candidates x 2 splits, 1 folds done)"


def test_the_results_table_needs_no_pandas_and_ranks_best_first(tmp_path):
    write_crashed_run(tmp_path)
    assert format_ranked(gridcv.load_search(tmp_path)).splitlines() == [
        "rank u mean_accuracy std_accuracy folds_done failed mean_fit_s",
        "   1 1           NaN          NaN          1      0        NaN",
        "   1 2           NaN          NaN          0      0        NaN",
    ]
