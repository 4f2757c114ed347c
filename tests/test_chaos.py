"""A short chaos run: random SIGKILLs of a deterministic run lose, duplicate and change nothing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from chaos import run_chaos

pytestmark = pytest.mark.slow


def test_random_kills_change_nothing(tmp_path):
    report = run_chaos(tmp_path, kills=5, seed=3, samples=1500)
    assert report.kills >= 5
    assert report.lost_folds == 0
    assert report.duplicated_folds == 0
    assert report.max_score_difference == 0.0
    assert report.history_mismatches == 0
    assert report.whole_epochs_redone == 0
    assert set(report.integrity) == {"ok"}
