"""A short chaos run: SIGKILLs of a deterministic run, mid-fold included, lose, duplicate and change nothing.

The run is killed five times (kills take turns: mid-fold, at a fault point, at a random moment), so the
test also asserts that the kills hit training, not only TensorFlow's start-up: an attempt was abandoned
mid-fold and a fold resumed from a checkpoint, and the comparison with the uninterrupted run is exact.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from chaos import ChaosReport, compare, run_chaos, tally_attempts


@pytest.mark.slow
def test_random_kills_change_nothing(tmp_path):
    report = run_chaos(tmp_path, kills=5, seed=3, samples=1500)
    assert report.kills >= 5
    assert report.mid_fold_kills >= 2  # kills 1 and 4
    assert report.abandoned_attempts >= report.mid_fold_kills  # each left a fold training
    assert report.resumed_attempts >= 1  # and a later attempt resumed it from its checkpoint
    assert report.lost_folds == 0
    assert report.duplicated_folds == 0
    assert report.max_score_difference == 0.0
    assert report.history_mismatches == 0
    assert report.whole_epochs_redone == 0
    assert set(report.integrity) == {"ok"}
    assert report.ok()


def test_the_chaos_counts_can_fail():
    """What the chaos run reports when a fold is lost, changed, committed twice or restarted from scratch."""
    from gridcv.execution.messages import OutcomeKind as K
    from gridcv.store import AttemptRow, FoldRow, FoldStatus

    def row(task_id: str, score: float, history: list[float], status: FoldStatus = FoldStatus.DONE) -> FoldRow:
        return FoldRow(task_id, "c", 0, {}, 0, 0, status, 1, scores={"accuracy": score}, history={"loss": history})

    reference = {"a": row("a", 0.5, [1.0, 0.5]), "b": row("b", 0.75, [1.0]), "c": row("c", 0.25, [2.0])}
    result = {
        "a": row("a", 0.5, [1.0, 0.5]),
        "b": row("b", 0.5, [1.0, 0.9]),
        "c": row("c", 0.0, [], FoldStatus.FAILED),
    }
    report = ChaosReport()
    compare(reference, result, report)
    assert (report.lost_folds, report.max_score_difference, report.history_mismatches) == (1, 0.25, 2)
    assert not report.ok()

    def attempt(task_id: str, n: int, outcome: K, resumed: int | None) -> AttemptRow:
        return AttemptRow(task_id, n, outcome, None, None, 16, 1, None, "w1", resumed, float(n), n + 1.0)

    attempts = [
        attempt("a", 1, K.ABANDONED, None),
        attempt("a", 2, K.DONE, 0),  # killed with epoch 3 checkpointed, yet restarted from 0
        attempt("b", 1, K.DONE, 0),
        attempt("b", 2, K.DONE, 2),  # a second committed result
    ]
    report = ChaosReport()
    tally_attempts(attempts, {"a": 3, "b": 2}, report)
    assert (report.duplicated_folds, report.abandoned_attempts, report.resumed_attempts) == (1, 1, 1)
    assert report.whole_epochs_redone == 3
