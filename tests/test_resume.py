"""Crash-safe resume: kill the whole run at precise moments, resume, compare exactly.

Runs are real ``gridcv run`` processes in their own session, killed with SIGKILL
by the fault hook (gridcv/faults.py) or by the test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import gridcv
from gridcv.store import ResultStore
from tests.conftest import TINY_BUILDER, base_config, write_arrays

pytestmark = pytest.mark.slow

DETERMINISTIC = {
    "deterministic": True,
    "fit": {"epochs": 4, "batch_size": 8},
    "grid": {"units": [4, 8]},
    "execution": {"isolation": "process"},
}


def gridcv_run(path: Path, *args: str, fault: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "GRIDCV_FAULT"}
    if fault:
        env["GRIDCV_FAULT"] = fault
    return subprocess.run(
        [sys.executable, "-m", "gridcv.cli", "run", str(path), "--quiet", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        start_new_session=True,
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same deterministic experiment run once, without interruption."""
    folder = tmp_path_factory.mktemp("reference")
    write_arrays(folder)
    (folder / "builder.py").write_text(TINY_BUILDER)
    config = base_config(**DETERMINISTIC)
    config["output"] = str(folder / "results" / "tiny")
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(config))
    done = gridcv_run(path)
    assert done.returncode == 0, done.stderr
    with ResultStore.open(folder / "results" / "tiny", readonly=True) as store:
        history = {r.task_id: r.history for r in store.fold_rows()}
    return gridcv.load_folds(path), history


@pytest.mark.parametrize(
    "fault",
    [
        "checkpoint-write@3",  # mid-write of fold 1's third checkpoint
        "checkpoint-rename@6",  # fold 2's second checkpoint complete but not renamed
        "store-commit@2",  # fold 1's result written, not committed
        "store-commit@4",  # the last fold's result not committed: the run was nearly done
    ],
)
def test_killed_at_a_precise_moment_resumes_to_the_identical_result(make_experiment, reference, fault):
    ref_folds, ref_history = reference
    path = make_experiment(**DETERMINISTIC)
    killed = gridcv_run(path, fault=fault)
    assert killed.returncode == -signal.SIGKILL
    resumed = gridcv_run(path)
    assert resumed.returncode == 0, resumed.stderr
    folds = gridcv.load_folds(path)
    assert folds["task_id"].tolist() == ref_folds["task_id"].tolist()
    assert folds["status"].tolist() == ["done"] * 4
    assert folds["test_accuracy"].tolist() == ref_folds["test_accuracy"].tolist()
    assert folds["epochs_run"].tolist() == [4] * 4
    with ResultStore.open(path.parent / "results" / "tiny", readonly=True) as store:
        assert {r.task_id: r.history for r in store.fold_rows()} == ref_history
        assert store.integrity_check() == "ok"
        attempts = store.attempt_rows()
    # the fold in flight was abandoned once and resumed from its last whole checkpoint
    abandoned = [a for a in attempts if a.outcome == "abandoned"]
    assert len(abandoned) <= 1
    assert len(attempts) == 4 + len(abandoned)


def test_resumed_fold_continues_from_its_last_checkpoint(make_experiment):
    path = make_experiment(**DETERMINISTIC)
    gridcv_run(path, fault="checkpoint-rename@4")  # fold 1 finished 3 epochs, 4th not renamed
    gridcv_run(path)
    with ResultStore.open(path.parent / "results" / "tiny", readonly=True) as store:
        attempts = store.attempt_rows()
    first = [a for a in attempts if a.attempt == 2]
    assert len(first) == 1 and first[0].resumed_from_epoch == 3


def test_copying_the_experiment_file_is_not_a_checkpoint_write(make_experiment):
    """Atomic writes pass the crash points their caller names: the first checkpoint-write fault
    kills the first fold's first checkpoint, not the runner's copy of experiment.yaml."""
    path = make_experiment(**DETERMINISTIC)
    killed = gridcv_run(path, fault="checkpoint-write@1")
    assert killed.returncode == -signal.SIGKILL
    folder = path.parent / "results" / "tiny"
    assert (folder / "experiment.yaml").read_text() == path.read_text()
    with ResultStore.open(folder, readonly=True) as store:
        assert [(a.attempt, a.outcome) for a in store.attempt_rows()] == [(1, None)]  # fold 1 was training
    assert list((folder / "checkpoints").rglob(".epoch-00001.tmp-*.npz"))  # half of its first checkpoint
