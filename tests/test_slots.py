"""Real worker processes on several slots: folds train at once, epochs are reported as they end,
each worker gets its own device (a faked nvidia-smi) or its share of the cores, and a fold's scores
do not depend on how many slots there were."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import gridcv
from gridcv.config import load_experiment
from gridcv.execution import make_executor
from gridcv.execution.messages import Finished, FoldOutcome, OutcomeKind, Placement, Progress
from gridcv.execution.placement import cpu_cores
from gridcv.execution.processes import ProcessExecutor
from gridcv.monitoring import Monitoring
from gridcv.plan import make_plan
from gridcv.runner.jobs import build_job, fold_assignment
from gridcv.store import ResultStore
from tests.stops import checkpoint_of

pytestmark = pytest.mark.slow

SLOW_EPOCHS = """
import time
import keras


class Slow(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        time.sleep(0.7)


def build(params, input_shape, n_classes):
    model = keras.Sequential([keras.Input(shape=input_shape), keras.layers.Dense(n_classes, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model
"""


def test_two_slots_train_two_folds_at_once_and_report_every_epoch(make_experiment, tmp_path):
    path = make_experiment(
        builder=SLOW_EPOCHS,
        grid={"units": [4]},
        fit={"epochs": 3, "batch_size": 16, "callbacks": [{"name": "builder.py:Slow"}]},
    )
    experiment = load_experiment(path)
    plan = make_plan(experiment.spec, np.arange(60) % 3)
    executor = ProcessExecutor(experiment.spec.execution, deterministic=False, log_dir=None, slots=2)
    try:
        for slot, task in enumerate(plan.tasks):
            work = fold_assignment(experiment.spec, plan, task)
            job = build_job(experiment, plan, work, tmp_path, 16, 1, 1, Monitoring.of(experiment.spec, False))
            executor.start(slot, job)
        seen: list[tuple[float, int, str, int]] = []  # (time, slot, kind, epoch)
        finished = {}
        deadline = time.monotonic() + 240
        while len(finished) < 2 and time.monotonic() < deadline:
            for event in executor.poll(0.5):
                if isinstance(event, Progress):
                    seen.append((time.monotonic(), event.slot, "epoch", event.epoch.epoch))
                else:
                    assert isinstance(event, Finished)
                    finished[event.slot] = event.outcome
                    seen.append((time.monotonic(), event.slot, "end", 0))
        received = [slot.worker.received for slot in executor._slots]
    finally:
        executor.close()
    assert {s: o.kind for s, o in finished.items()} == {0: OutcomeKind.DONE, 1: OutcomeKind.DONE}
    assert {o.worker_id for o in finished.values()} == {"w1", "w2"}
    assert executor.slot_names == ("cpu 1/2", "cpu 2/2")
    share = max(1, cpu_cores() // 2)  # intra- and inter-op threads, as TensorFlow in each worker reports them
    assert [r["threads"] for r in received] == [(share, share)] * 2
    for slot in (0, 1):
        assert [e for _, s, kind, e in seen if s == slot and kind == "epoch"] == [1, 2, 3]
    # both folds were training at once: each slot reported an epoch before the other slot ended
    first_end = min(t for t, _, kind, _ in seen if kind == "end")
    assert {s for t, s, kind, _ in seen if kind == "epoch" and t < first_end} == {0, 1}


def run_two_folds(executor, experiment, folder: Path) -> dict[int, FoldOutcome]:
    """Starts the experiment's two folds on slots 0 and 1; returns their outcomes by slot."""
    plan = make_plan(experiment.spec, np.arange(60) % 3)
    for slot, task in enumerate(plan.tasks):
        work = fold_assignment(experiment.spec, plan, task)
        executor.start(slot, build_job(experiment, plan, work, folder, 16, 1, 1, Monitoring.of(experiment.spec, False)))
    finished: dict[int, FoldOutcome] = {}
    deadline = time.monotonic() + 240
    while len(finished) < 2 and time.monotonic() < deadline:
        finished |= {e.slot: e.outcome for e in executor.poll(0.5) if isinstance(e, Finished)}
    return finished


FAKE_NVIDIA_SMI = """#!/bin/sh
echo "GPU 0: Fake GPU (UUID: GPU-00000000-0000-0000-0000-000000000000)"
echo "GPU 1: Fake GPU (UUID: GPU-11111111-1111-1111-1111-111111111111)"
"""


def test_each_gpu_slot_has_a_worker_that_sees_only_its_own_gpu(make_experiment, tmp_path, monkeypatch):
    """Two GPUs as nvidia-smi lists them (faked: this machine has none, so the folds then train on the
    CPU): each worker is started with its one GPU in CUDA_VISIBLE_DEVICES, in PCI bus order."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "nvidia-smi").write_text(FAKE_NVIDIA_SMI)
    (tmp_path / "bin" / "nvidia-smi").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    experiment = load_experiment(make_experiment(grid={"units": [4]}, execution={"isolation": "process"}))
    executor = make_executor(experiment.spec.execution, False, None)
    try:
        assert executor.slot_names == ("GPU 0", "GPU 1")
        assert executor.placement(1) == Placement("GPU 1", "GPU 1", socket.gethostname())
        finished = run_two_folds(executor, experiment, tmp_path)
        received = [slot.worker.received for slot in executor._slots]  # type: ignore[attr-defined]
    finally:
        executor.close()
    assert {s: (o.kind, o.device, o.host) for s, o in finished.items()} == {
        0: (OutcomeKind.DONE, "GPU 0", socket.gethostname()),
        1: (OutcomeKind.DONE, "GPU 1", socket.gethostname()),
    }
    assert [(r["CUDA_VISIBLE_DEVICES"], r["CUDA_DEVICE_ORDER"], r["device"]) for r in received] == [
        ("0", "PCI_BUS_ID", "GPU 0"),
        ("1", "PCI_BUS_ID", "GPU 1"),
    ]
    assert os.environ.get("CUDA_VISIBLE_DEVICES") is None  # set in each worker only, never in the runner


def fold_table(folder: Path) -> dict[str, tuple[str, dict, dict]]:
    with ResultStore.open(folder, readonly=True) as store:
        return {r.task_id: (r.status.value, r.scores, r.history) for r in store.fold_rows()}


def test_scores_do_not_depend_on_the_slot_count_nor_on_a_kill_and_a_resume_with_another(make_experiment, tmp_path):
    """Deterministic: 1 slot, then 2 slots killed mid-run (runner and workers) and resumed with 1,
    give the same table bit for bit."""
    config = {"deterministic": True, "fit": {"epochs": 3, "batch_size": 16}, "grid": {"units": [4, 8, 16]}}
    one = make_experiment(name="one.yaml", output=str(tmp_path / "one"), execution={"isolation": "process"}, **config)
    gridcv.run_experiment(one)
    two = make_experiment(
        name="two.yaml", output=str(tmp_path / "two"), execution={"isolation": "process", "slots": 2}, **config
    )
    killed = subprocess.run(
        [sys.executable, "-m", "gridcv.cli", "run", str(two), "--quiet"],
        env={**os.environ, "GRIDCV_FAULT": "store-commit@3"},  # the whole run dies at its third commit
        start_new_session=True,
        capture_output=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert gridcv.load_folds(two)["status"].tolist().count("done") == 2
    gridcv.run_experiment(two, gridcv.RunOptions(execution={"slots": 1}))
    assert fold_table(tmp_path / "two") == fold_table(tmp_path / "one")
    attempts = gridcv.load_attempts(two)
    killed_run, resumed = attempts.iloc[:4], attempts.iloc[4:]  # oldest first
    assert set(killed_run["slot"]) == {"cpu 1/2", "cpu 2/2"}
    assert sorted(killed_run["outcome"]) == ["abandoned", "abandoned", "done", "done"]
    assert resumed[["slot", "outcome"]].values.tolist() == [["cpu", "done"]] * 4


SLOW_FOLDS = """
import pathlib, time
import keras

CHECKED = pathlib.Path(__file__).with_name("checked")


def build(params, input_shape, n_classes):
    if CHECKED.exists():  # a fold (the first build is gridcv's check): it takes its time
        time.sleep(120)
    CHECKED.touch()
    model = keras.Sequential([keras.Input(shape=input_shape), keras.layers.Dense(n_classes, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model
"""


def test_every_slots_worker_dies_with_its_runner(make_experiment):
    """SIGKILL of the runner alone (not its group): both slots' workers go too, by themselves."""
    import psutil

    path = make_experiment(builder=SLOW_FOLDS, execution={"isolation": "process", "slots": 2})
    runner = subprocess.Popen(
        [sys.executable, "-m", "gridcv.cli", "run", str(path), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        workers: list[psutil.Process] = []
        servers: list[psutil.Process] = []  # workers are forked from the fork server, a child of the runner
        while len(workers) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
            children = [c for c in psutil.Process(runner.pid).children() if "resource_tracker" not in c.cmdline()[-1]]
            servers = [c for c in children if "forkserver" in " ".join(c.cmdline())]
            workers = servers[0].children() if servers else children
        assert len(workers) == 2, "the runner never started a worker per slot"
    finally:
        os.kill(runner.pid, signal.SIGKILL)
        runner.wait()
    _gone, alive = psutil.wait_procs(workers + servers, timeout=10)
    assert alive == []


def test_ctrl_c_stops_every_slot_after_its_checkpoint(make_experiment, tmp_path):
    path = make_experiment(
        builder=SLOW_EPOCHS,
        fit={"epochs": 30, "batch_size": 16, "callbacks": [{"name": "builder.py:Slow"}]},
        execution={"isolation": "process", "slots": 2},
    )
    runner = subprocess.Popen(
        [sys.executable, "-m", "gridcv.cli", "run", str(path), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    checkpoints = tmp_path / "results" / "tiny" / "checkpoints"
    deadline = time.monotonic() + 240
    while len({p.parts[-3] for p in checkpoints.rglob("epoch-*.npz")}) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)  # until both slots' folds have a checkpoint
    os.killpg(runner.pid, signal.SIGINT)  # a terminal's Ctrl-C: the runner and its workers
    _, err = runner.communicate(timeout=120)
    assert runner.returncode == 130, err
    attempts = gridcv.load_attempts(path)
    assert attempts[["slot", "outcome"]].values.tolist() == [["cpu 1/2", "interrupted"], ["cpu 2/2", "interrupted"]]
    for task_id, message in attempts[["task_id", "message"]].values.tolist():
        # at an epoch's end or, under load, inside one: a checkpoint of exactly that position is saved
        assert checkpoint_of(checkpoints, task_id, message) != [], (message, sorted(checkpoints.rglob("*.npz")))


KILL_ONE_OF_TWO = """
import os, pathlib, signal, time
import keras

HERE = pathlib.Path(__file__).parent


class KillOneOfTwo(keras.callbacks.Callback):
    \"\"\"Once two workers train at once, the first to end an epoch SIGKILLs itself (as the OOM killer would).\"\"\"

    def on_train_begin(self, logs=None):
        (HERE / f"training-{os.getpid()}").touch()

    def on_epoch_end(self, epoch, logs=None):
        deadline = time.monotonic() + 120
        while len(list(HERE.glob("training-*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        try:
            os.close(os.open(HERE / "killed", os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            time.sleep(0.5)  # the other fold: it goes on training meanwhile
        else:
            os.kill(os.getpid(), signal.SIGKILL)


def build(params, input_shape, n_classes):
    model = keras.Sequential([keras.Input(shape=input_shape), keras.layers.Dense(n_classes, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model
"""


def test_an_oom_kill_on_one_slot_is_retried_while_the_other_slot_trains_on(make_experiment):
    path = make_experiment(
        builder=KILL_ONE_OF_TWO,
        fit={"epochs": 3, "batch_size": 16, "callbacks": [{"name": "builder.py:KillOneOfTwo"}]},
        execution={"isolation": "process", "slots": 2},
    )
    gridcv.run_experiment(path)
    attempts = gridcv.load_attempts(path)
    killed = attempts[attempts["outcome"] == "killed"]
    assert len(killed) == 1
    assert killed["message"].iloc[0].startswith("the worker was killed by SIGKILL (most likely the kernel's out-of")
    task = killed["task_id"].iloc[0]
    retried = attempts[attempts["task_id"] == task]
    assert retried[["attempt", "outcome", "batch_size", "accumulation_steps"]].values.tolist() == [
        [1, "killed", 16, 1],
        [2, "done", 8, 2],  # the OOM policy: half the batch, the same effective batch
    ]
    others = attempts[attempts["task_id"] != task]
    assert others[["attempt", "outcome", "batch_size"]].values.tolist() == [[1, "done", 16]] * 3  # undisturbed
    # the other slot's fold was training when the kill came, and finished on its first attempt
    kill = killed.iloc[0]
    beside = others[(others["started_at"] < kill["finished_at"]) & (others["finished_at"] > kill["finished_at"])]
    assert len(beside) == 1 and beside["slot"].iloc[0] != kill["slot"]
    assert gridcv.load_folds(path)["status"].tolist() == ["done"] * 4
