"""Worker processes: isolation, deaths by signal, out-of-memory policy, the memory guard.

These spawn real workers (each imports TensorFlow, a few seconds) and kill them for real.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

import gridcv
from gridcv.config import ExecutionSpec
from gridcv.execution.messages import FoldOutcome, OutcomeKind
from gridcv.execution.placement import WorkerSetup
from gridcv.execution.processes import WorkerSlot
from gridcv.execution.worker_process import WorkerProcess
from gridcv.store import FoldStatus

pytestmark = pytest.mark.slow

# Misbehaves in the first fold of the first candidate only (a marker file remembers),
# then builds a normal model: what a retry should recover from.
MISBEHAVING = """
import os, signal, pathlib
import numpy as np
import keras

HOLD = []
BUILDS = [0]

def build(params, input_shape, n_classes):
    BUILDS[0] += 1  # the first build in a process is gridcv's builder check
    marker = pathlib.Path(__file__).with_name("misbehaved-" + str(params["units"]))
    if params["units"] == 4 and BUILDS[0] >= 2 and not marker.exists():
        marker.write_text("x")
        how = params["how"]
        if how == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        if how == "memory_error":
            raise MemoryError("simulated")
        if how == "balloon":
            HOLD.append(np.ones(1536 * 2**20 // 8))  # 1.5 GiB of its own memory, touched
            import time; time.sleep(30)
        if how == "segfault":
            os.kill(os.getpid(), signal.SIGSEGV)
    model = keras.Sequential([keras.Input(shape=input_shape), keras.layers.Dense(params["units"], activation="relu"),
                              keras.layers.Dense(n_classes, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model
"""


def experiment(make_experiment, how: str, **execution) -> Path:
    return make_experiment(
        builder=MISBEHAVING,
        grid={"units": [4, 8], "how": [how]},
        execution={"isolation": "process", **execution},
    )


def test_parent_never_imports_tensorflow(make_experiment):
    path = make_experiment(execution={"isolation": "process"})
    code = (
        "import sys, gridcv; gridcv.run_experiment(sys.argv[1]);"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')));"
        "import psutil; print(psutil.Process().memory_info().rss)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    modules, rss = out.stdout.split()
    assert modules == "[]"
    assert int(rss) < 300 * 2**20  # the runner holds scikit-learn and pandas, never TensorFlow (~0.9 GB)
    folds = gridcv.load_folds(path)
    assert folds["status"].tolist() == ["done"] * 4
    assert folds["worker_id"].tolist() == ["w1"] * 4
    assert folds["worker_folds"].tolist() == [1, 2, 3, 4]
    assert (folds["peak_rss"] > 100 * 2**20).all()
    assert folds["gpu_peak_memory"].isna().all()  # recorded only where a GPU is present


def test_worker_killed_mid_fold_is_retried_with_half_the_batch(make_experiment):
    path = experiment(make_experiment, "sigkill")
    gridcv.run_experiment(path)
    folds = gridcv.load_folds(path).set_index("param_units")
    assert folds["status"].tolist() == ["done"] * 4
    killed = folds.loc[4].iloc[0]
    assert (killed["attempts"], killed["batch_size"], killed["accumulation_steps"]) == (2, 8, 2)
    assert killed["effective_batch_size"] == 16
    assert folds.loc[4]["attempts"].tolist() == [2, 1]  # its second fold started at the batch that fit
    assert folds.loc[4]["batch_size"].tolist() == [8, 8]
    assert folds.loc[8]["attempts"].tolist() == [1, 1]
    assert folds.loc[8]["batch_size"].tolist() == [16, 16]
    attempts = gridcv.load_attempts(path)
    first = attempts[attempts["outcome"] == "killed"]
    assert len(first) == 1
    assert (
        first["message"]
        .iloc[0]
        .startswith("the worker was killed by SIGKILL (most likely the kernel's out-of-memory killer); it had reached ")
    )
    assert first["batch_size"].iloc[0] == 16


def test_worker_killed_with_on_oom_skip_fails_only_that_fold(make_experiment):
    path = experiment(make_experiment, "sigkill", on_oom="skip")
    gridcv.run_experiment(path)
    folds = gridcv.load_folds(path)
    assert folds["status"].tolist() == ["failed", "done", "done", "done"]
    assert folds["cause"].iloc[0] == "killed"
    assert folds["batch_size"].tolist() == [16] * 4  # skip tries no smaller batch, in any fold


def test_worker_killed_with_on_oom_stop_ends_the_run_and_resumes(make_experiment):
    path = experiment(make_experiment, "sigkill", on_oom="stop")
    with pytest.raises(gridcv.RunStopped, match=r"ran out of memory .* and execution.on_oom is 'stop'"):
        gridcv.run_experiment(path)
    assert gridcv.load_folds(path)["status"].tolist() == ["pending", "pending", "pending", "pending"]
    gridcv.run_experiment(path)  # the marker is there now: the retry succeeds
    assert gridcv.load_folds(path)["status"].tolist() == ["done"] * 4


def test_memory_error_is_out_of_memory(make_experiment):
    path = experiment(make_experiment, "memory_error")
    gridcv.run_experiment(path)
    attempts = gridcv.load_attempts(path)
    assert attempts["outcome"].tolist().count("oom") == 1
    assert attempts[attempts["outcome"] == "oom"]["message"].iloc[0] == "MemoryError: simulated"
    assert gridcv.load_folds(path)["batch_size"].tolist() == [8, 8, 16, 16]  # one OOM per candidate


def test_memory_guard_stops_a_worker_over_its_limit(make_experiment):
    path = experiment(make_experiment, "balloon", max_worker_memory="1.5GiB")
    gridcv.run_experiment(path)
    attempts = gridcv.load_attempts(path)
    guard = attempts[attempts["outcome"] == "oom"]
    assert len(guard) == 1
    assert "above max_worker_memory (1.5 GiB); it was stopped by gridcv's memory guard" in guard["message"].iloc[0]
    # stopped while the builder still slept (30 s): the guard did not wait for the fold to end
    assert guard["finished_at"].iloc[0] - guard["started_at"].iloc[0] < 20
    assert gridcv.load_folds(path)["status"].tolist() == ["done"] * 4


def test_a_crash_is_not_an_out_of_memory(make_experiment):
    path = experiment(make_experiment, "segfault")
    gridcv.run_experiment(path)
    folds = gridcv.load_folds(path)
    assert folds["status"].tolist() == ["failed", "done", "done", "done"]
    assert folds["message"].iloc[0].startswith("the worker was killed by SIGSEGV; it had reached")
    assert folds["batch_size"].tolist() == [16, 16, 16, 16]


def test_worker_is_replaced_after_folds_per_worker(make_experiment):
    path = make_experiment(execution={"isolation": "process", "folds_per_worker": 3})
    gridcv.run_experiment(path)
    folds = gridcv.load_folds(path)
    assert folds["worker_id"].tolist() == ["w1", "w1", "w1", "w2"]
    assert folds["worker_folds"].tolist() == [1, 2, 3, 1]


SLOW_BUILDER = """
import time, keras

class Slow(keras.callbacks.Callback):
    pass

def build(params, input_shape, n_classes):
    time.sleep(60)
"""


def test_workers_die_with_their_runner(make_experiment, tmp_path):
    path = make_experiment(builder=SLOW_BUILDER, execution={"isolation": "process"})
    runner = subprocess.Popen(
        [sys.executable, "-m", "gridcv.cli", "run", str(path), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    workers: list[psutil.Process] = []
    while not workers and time.monotonic() < deadline:
        time.sleep(0.5)
        workers = [
            c
            for c in psutil.Process(runner.pid).children(recursive=True)
            if "resource_tracker" not in " ".join(c.cmdline())
        ]
    assert workers, "the runner never started a worker"
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait()
    _gone, alive = psutil.wait_procs(workers, timeout=10)
    assert alive == []


# Candidate units=4 asks TensorFlow for a tensor of 2**33 floats per sample above 8 in a batch: at
# batch 16 the allocation fails and TensorFlow raises its own ResourceExhaustedError inside fit; at
# batch 8 it asks for nothing. (TF_ENABLE_ONEDNN_OPTS=0 makes the CPU allocator fail at once instead
# of retrying for 10 seconds.)
HUNGRY = """
import keras
import tensorflow as tf


class Hungry(keras.layers.Layer):
    def call(self, x):
        extra = tf.maximum(tf.shape(x, out_type=tf.int64)[0] - 8, 0) * 2**33
        return x + 0.0 * tf.reduce_sum(tf.zeros(tf.reshape(extra, [1])))

    def compute_output_shape(self, input_shape):
        return input_shape


def build(params, input_shape, n_classes):
    hungry = [Hungry()] if params["units"] == 4 else []
    model = keras.Sequential([
        keras.Input(shape=input_shape),
        *hungry,
        keras.layers.Dense(params["units"], activation="relu"),
        keras.layers.Dense(n_classes, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", jit_compile=False)
    return model
"""


@pytest.fixture
def cpu_allocator(monkeypatch):
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")  # the workers' TensorFlow fails an allocation at once


def test_tensorflows_resource_exhausted_error_in_fit_is_retried_once_per_candidate(make_experiment, cpu_allocator):
    path = make_experiment(builder=HUNGRY, execution={"isolation": "process"})
    gridcv.run_experiment(path)
    attempts = gridcv.load_attempts(path)
    oom = attempts[attempts["outcome"] == "oom"]
    assert len(oom) == 1 and oom["batch_size"].iloc[0] == 16
    assert (
        oom["message"]
        .iloc[0]
        .startswith("ResourceExhaustedError: OOM when allocating tensor with shape[68719476736] and type float")
    )
    folds = gridcv.load_folds(path)
    assert folds["status"].tolist() == ["done"] * 4
    assert folds["attempts"].tolist() == [2, 1, 1, 1]  # the candidate's second fold started at the batch that fit
    assert folds["batch_size"].tolist() == [8, 8, 16, 16]
    assert folds["accumulation_steps"].tolist() == [2, 2, 1, 1]
    assert folds["effective_batch_size"].tolist() == [16] * 4
    assert folds["batch_lowered_by"].fillna("").tolist() == ["", "fold 0 ran out of memory at batch 16", "", ""]


def test_min_batch_size_reached_fails_the_candidates_folds_and_the_run_goes_on(make_experiment, cpu_allocator):
    path = make_experiment(builder=HUNGRY, execution={"isolation": "process", "min_batch_size": 16})
    summary = gridcv.run_experiment(path)
    assert summary.counts[FoldStatus.DONE] == 2 and summary.counts[FoldStatus.FAILED] == 2
    folds = gridcv.load_folds(path)
    assert folds["status"].tolist() == ["failed", "failed", "done", "done"]
    assert folds["cause"].tolist() == ["oom", "oom", "done", "done"]
    assert folds["message"].iloc[0].startswith("ResourceExhaustedError: OOM when allocating tensor")
    assert folds["message"].iloc[1] == (
        "not trained: fold 1 of this candidate ran out of memory at batch 16, and execution.min_batch_size is 16; "
        "lower it to let smaller batches be tried"
    )
    assert folds["attempts"].tolist() == [1, 1, 1, 1]
    results = gridcv.load_results(path)
    assert results["rank_test_score"].tolist() == [2, 1]


def hold_memory(conn, mib: int) -> None:
    """A stand-in worker process: holds ``mib`` MiB of its own memory until told to stop."""
    held = np.ones(mib * 2**20 // 8)
    conn.send(("ready", os.getpid()))
    try:
        while conn.recv()[0] != "stop":
            pass
    except EOFError:  # the test ended without needing this stand-in
        pass
    del held


def stand_in_worker(worker_id: str, mib: int) -> WorkerProcess:
    """A WorkerProcess (its real rss() and stop()) whose process holds ``mib`` MiB instead of running folds."""
    ctx = multiprocessing.get_context("spawn")
    worker = WorkerProcess.__new__(WorkerProcess)
    worker.id, worker.folds, worker.ready, worker.log_path, worker.received = worker_id, 1, True, None, {}
    worker.conn, child = ctx.Pipe()
    worker.process = ctx.Process(target=hold_memory, args=(child, mib), daemon=True)
    worker.process.start()
    child.close()
    assert worker.conn.recv()[0] == "ready"
    return worker


@pytest.mark.parametrize(("held", "replaced"), [(400, True), (20, False)])
def test_a_worker_above_max_worker_memory_after_a_fold_is_replaced(held, replaced):
    execution = ExecutionSpec(max_worker_memory="200MiB")
    spares = iter([stand_in_worker("w2", 10)])
    slot = WorkerSlot(0, lambda: next(spares), execution, WorkerSetup())
    slot.worker, slot.job = stand_in_worker("w1", held), object()  # type: ignore[assignment]
    first = slot.worker
    finished = slot._finished(FoldOutcome("t", OutcomeKind.DONE))
    assert finished.outcome.kind is OutcomeKind.DONE and slot.job is None  # the fold itself is done
    assert (not first.alive()) is replaced
    assert slot.ensure_worker(wait=False).id == ("w2" if replaced else "w1")  # the next fold's worker
    slot.stop()
