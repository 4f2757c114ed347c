"""Workers forked from the fork server: it forks with one thread and no TensorFlow runtime, refuses
to when it would not, and workers are spawned when it cannot start."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from gridcv.execution.worker_process import worker_context
from gridcv.training.forking import ForkState, fork_state


def report_fork_state(conn: Any) -> None:
    """Runs in a forked worker: what the server recorded right before forking it, and its threads now."""
    from gridcv.training import preload

    server = os.getppid()
    conn.send((preload.AT_FORK, len(os.listdir(f"/proc/{server}/task")), server))
    conn.close()


def forked_report() -> tuple[ForkState, int, int]:
    ctx = worker_context()
    parent, child = ctx.Pipe()
    process = ctx.Process(target=report_fork_state, args=(child,))
    process.start()
    child.close()
    report: tuple[ForkState, int, int] = parent.recv()
    process.join(30)
    assert process.exitcode == 0
    return report


def test_the_fork_server_forks_with_no_thread_of_its_own_and_no_tensorflow_runtime():
    first, _, server = forked_report()
    assert first is not None and first.hazards() == []
    assert (first.python_threads, first.tensorflow_runtime) == ((), False)
    assert first.native_threads <= first.blas_threads  # at most OpenBLAS's pools, which it stops itself
    second, threads_now, same_server = forked_report()
    assert same_server == server
    # OpenBLAS's fork handler stopped its pools in the server too: it forks a lone thread from now on
    assert (second.native_threads, threads_now) == (0, 1)


def test_a_thread_or_tensorflow_runtime_is_a_hazard():
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, name="busy")
    thread.start()
    try:
        state = fork_state(blas_threads=0)
    finally:
        stop.set()
        thread.join()
    assert "busy" in state.python_threads
    assert state.hazards()[0].startswith("Python threads run (") and "busy" in state.hazards()[0]
    assert ForkState((), 2, 1, True).hazards() == [
        "1 native thread(s) run besides OpenBLAS's pools",
        "TensorFlow's runtime (the eager context) is initialised",
    ]
    assert ForkState((), 2, 2, False).hazards() == []


PARENT_RECORDING_BUILDER = """
import os, pathlib
import keras


def build(params, input_shape, n_classes):
    with open(pathlib.Path(__file__).with_name("parents"), "a") as f:
        f.write(f"{os.getppid()}\\n")
    model = keras.Sequential([keras.Input(shape=input_shape), keras.layers.Dense(n_classes, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model
"""


def run_recording_parents(path: Path, fault: str | None) -> tuple[int, set[int]]:
    """Runs the experiment in a fresh runner; its pid and the parents of the processes that built models."""
    env = {k: v for k, v in os.environ.items() if k != "GRIDCV_FAULT"}
    if fault:
        env["GRIDCV_FAULT"] = fault
    command = [sys.executable, "-m", "gridcv.cli", "run", str(path), "--quiet", "--isolation", "process"]
    runner = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, err = runner.communicate(timeout=300)
    assert runner.returncode == 0, err
    parents = path.with_name("parents")
    recorded = {int(line) for line in parents.read_text().split()}
    parents.unlink()
    return runner.pid, recorded


@pytest.mark.slow
def test_workers_are_spawned_when_the_fork_server_cannot_start(make_experiment):
    import gridcv

    path = make_experiment(builder=PARENT_RECORDING_BUILDER, grid={"units": [4]})
    runner, parents = run_recording_parents(path, fault=None)
    assert runner not in parents  # forked by the fork server, a child of the runner
    path = make_experiment(
        builder=PARENT_RECORDING_BUILDER,
        grid={"units": [4]},
        name="again.yaml",
        output=str(path.parent / "results" / "again"),
    )
    runner, parents = run_recording_parents(path, fault="fork-server")  # the server dies once it imported TF
    assert parents == {runner}  # spawned by the runner itself
    assert gridcv.load_folds(path)["status"].tolist() == ["done", "done"]
