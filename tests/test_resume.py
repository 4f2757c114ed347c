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
    ("fault", "fold", "resumed_from"),
    [
        ("checkpoint-write@3", 0, 2),  # mid-write of fold 1's third checkpoint: epochs 1-2 are whole
        ("checkpoint-rename@6", 1, 1),  # fold 2's second checkpoint complete but not renamed: epoch 1 is
        ("store-commit@2", 1, 4),  # fold 2's result written, not committed: its last checkpoint is whole
        ("store-commit@4", 3, 4),  # the last fold's result not committed: the run was nearly done
    ],
)
def test_killed_at_a_precise_moment_resumes_to_the_identical_result(
    make_experiment, reference, fault, fold, resumed_from
):
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
    # Exactly the fold in flight was abandoned, once, and its next attempt resumed from its last
    # whole checkpoint: at most the epoch in flight was lost (a restart from epoch 0 would give the
    # same deterministic history, so the epoch is what proves it).
    in_flight = folds["task_id"].iloc[fold]
    assert [(a.task_id, a.attempt) for a in attempts if a.outcome == "abandoned"] == [(in_flight, 1)]
    assert [(a.attempt, a.outcome, a.resumed_from_epoch) for a in attempts if a.task_id == in_flight] == [
        (1, "abandoned", None),
        (2, "done", resumed_from),
    ]
    assert len(attempts) == 5


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
    [half] = (folder / "checkpoints").rglob(".epoch-00001.tmp-*.npz")  # half of its first checkpoint
    # The next run removes what the cut write left, and says so.
    resumed = subprocess.run(
        [sys.executable, "-m", "gridcv.cli", "run", str(path)], capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "] removed 1 temporary file(s) left by writes a kill cut short\n" in resumed.stdout
    assert not half.exists() and not [p for p in folder.rglob(".*") if ".tmp-" in p.name]
