"""The user's own pipelines survive what gridcv's own data survives: a SIGKILL mid-fold, and running out of memory.

Each kind (a PyDataset class, a tf.data function, a plain generator; tests/test_user_pipelines.py
has them) runs in real ``gridcv run`` processes with worker processes. Their factories take
``epoch`` and draw their order from (seed, epoch), so a killed and resumed run must equal an
uninterrupted one exactly: same histories, same scores.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

import gridcv
from gridcv.store import ResultStore
from tests.test_resume import gridcv_run
from tests.test_user_pipelines import FACTORIES, calls, pipeline_experiment

pytestmark = pytest.mark.slow

PROCESS = {"deterministic": True, "fit": {"epochs": 3, "batch_size": 8}, "execution": {"isolation": "process"}}


def histories(path: Path) -> dict[str, dict[str, list[float]]]:
    with ResultStore.open(path.parent / "results", readonly=True) as store:
        return {r.task_id: r.history for r in store.fold_rows()}


@pytest.mark.parametrize("factory", FACTORIES)
def test_a_pipeline_killed_mid_fold_resumes_to_the_uninterrupted_result(tmp_path, factory):
    reference = pipeline_experiment(tmp_path / "reference", factory, **PROCESS)
    done = gridcv_run(reference)
    assert done.returncode == 0, done.stderr
    path = pipeline_experiment(tmp_path / "killed", factory, **PROCESS)
    killed = gridcv_run(path, fault="checkpoint-rename@2")  # fold 1's second epoch written, not renamed
    assert killed.returncode == -signal.SIGKILL
    resumed = gridcv_run(path)
    assert resumed.returncode == 0, resumed.stderr
    folds, expected = gridcv.load_folds(path), gridcv.load_folds(reference)
    assert folds["status"].tolist() == ["done", "done"]
    assert folds["test_accuracy"].tolist() == expected["test_accuracy"].tolist()
    assert histories(path) == histories(reference)
    attempts = gridcv.load_attempts(path)
    assert attempts["outcome"].tolist() == ["abandoned", "done", "done"]
    assert attempts["resumed_from_epoch"].tolist()[1:] == [1, 0]  # the abandoned attempt never reported
    # the runner called the labels function in a child process, and the workers the factory
    assert len({c["pid"] for c in calls(tmp_path / "killed")}) == 2  # the killed run's worker, the resumed run's


@pytest.mark.parametrize("factory", FACTORIES)
def test_a_pipeline_out_of_memory_is_retried_with_half_the_batch(tmp_path, factory):
    path = pipeline_experiment(
        tmp_path, factory, fit={"epochs": 2, "batch_size": 16}, execution={"isolation": "process"}
    )
    (tmp_path / "oom-once").write_text("1")  # the up-front check's call goes through, the first fold's does not
    result = gridcv_run(path)
    assert result.returncode == 0, result.stderr
    attempts = gridcv.load_attempts(path)
    oom = attempts[attempts["outcome"] == "oom"]
    assert len(oom) == 1 and oom["message"].iloc[0] == "MemoryError: simulated: the batch of 16 does not fit"
    folds = gridcv.load_folds(path)
    assert folds["status"].tolist() == ["done", "done"]
    # One OOM per candidate: its other fold starts at the batch that fit (same effective batch).
    assert (folds["batch_size"].tolist(), folds["accumulation_steps"].tolist()) == ([8, 8], [2, 2])
    # the factory was called again with the smaller batch, for the fold that ran out of memory
    sizes = [(c["n"], c["batch_size"], c["training"]) for c in calls(tmp_path)]
    assert (30, 8, True) in sizes and (30, 8, False) in sizes


def test_the_runner_never_imports_the_users_keras_module(tmp_path):
    """pipelines.py imports Keras and TensorFlow beside its labels function: the runner calls it in a child."""
    import subprocess
    import sys

    path = pipeline_experiment(tmp_path, "make_tf_data", execution={"isolation": "process"})
    code = (
        "import sys, gridcv; gridcv.run_experiment(sys.argv[1]);"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "[]"
    assert gridcv.load_folds(path)["status"].tolist() == ["done", "done"]
