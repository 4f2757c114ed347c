"""End to end through the inline executor: experiment file -> results table."""

from __future__ import annotations

import numpy as np

import gridcv
from gridcv.store import FoldStatus


def test_inline_run_fills_the_results_table(make_experiment):
    path = make_experiment()
    summary = gridcv.run_experiment(path)
    assert summary.counts[FoldStatus.DONE] == 4 and summary.total == 4
    results = gridcv.load_results(path)
    assert list(results["param_units"]) == [4, 8]
    assert results["rank_test_score"].tolist() in ([1, 2], [2, 1], [1, 1])
    assert np.isfinite(results[["split0_test_score", "split1_test_score"]].to_numpy()).all()
    folds = gridcv.load_folds(path)
    assert folds["status"].tolist() == ["done"] * 4
    assert folds["epochs_run"].tolist() == [2] * 4
    assert folds["worker_id"].tolist() == ["inline"] * 4


def test_second_run_skips_done_folds(make_experiment):
    path = make_experiment()
    gridcv.run_experiment(path)
    before = gridcv.load_folds(path)
    summary = gridcv.run_experiment(path)
    assert summary.attempts == 0
    after = gridcv.load_folds(path)
    assert before["finished_at"].tolist() == after["finished_at"].tolist()
    assert after["attempts"].tolist() == [1, 1, 1, 1]


def test_an_earlier_inline_interrupt_does_not_stop_the_next_run(make_experiment):
    from gridcv.execution.worker import request_stop

    request_stop()  # what a Ctrl-C during an earlier inline run (a notebook cell) leaves behind
    path = make_experiment()
    gridcv.run_experiment(path)
    assert gridcv.load_folds(path)["epochs_run"].tolist() == [2, 2, 2, 2]
