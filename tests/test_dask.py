"""backend: dask on a real distributed.LocalCluster (processes, 2 workers, 1 thread each, CPU).

One cluster serves the module (its workers stay warm between tests); each test writes its own
tiny experiment. Folds train in gridcv worker processes started by the Dask tasks, so these kill
real processes: a fold's own, a Dask worker, the runner. The last tests are fast: what a lost
worker becomes, and what a worker's probe reports, without a cluster.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest
import yaml

import gridcv
from gridcv.errors import ClusterError
from gridcv.store import ResultStore
from tests.conftest import base_config, write_arrays
from tests.stops import checkpoint_of

distributed = pytest.importorskip("distributed", reason="backend: dask needs pip install 'gridcv[dask]'")
dask = pytest.importorskip("dask")
slow = pytest.mark.slow

BUILDER = """
import os, pathlib, signal, time
import keras

HERE = pathlib.Path(__file__).parent


def build(params, input_shape, n_classes):
    model = keras.Sequential([
        keras.Input(shape=input_shape),
        keras.layers.Dense(params["units"], activation="relu"),
        keras.layers.Dropout(0.1),
        keras.layers.Dense(n_classes, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    return model


def first(name):
    \"\"\"True for the one process that creates the marker file `name` (the first to get here).\"\"\"
    try:
        os.close(os.open(HERE / name, os.O_CREAT | os.O_EXCL))
        return True
    except FileExistsError:
        return False


class Slow(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        time.sleep(0.3)


class Held(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if (HERE / "hold").exists():  # the test holds folds back until both have started
            time.sleep(1.0)


class KillMyself(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if first("killed-myself"):
            os.kill(os.getpid(), signal.SIGKILL)


class KillMyDaskWorker(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if first("killed-dask-worker"):
            os.kill(os.getppid(), signal.SIGKILL)  # the Dask worker process whose task started this one
"""

SHARED = {
    "deterministic": True,
    "fit": {"epochs": 3, "batch_size": 16, "callbacks": [{"name": "builder.py:Slow"}]},
    "grid": {"units": [4, 8]},
}


def write_experiment(folder: Path, execution: dict[str, Any], callbacks: tuple[str, ...] = (), epochs: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_arrays(folder)
    (folder / "builder.py").write_text(BUILDER)
    config = base_config(**SHARED, execution=execution)
    callbacks_of = [*config["fit"]["callbacks"], *({"name": c} for c in callbacks)]
    config["fit"] = {**config["fit"], "epochs": epochs, "callbacks": callbacks_of}
    config["output"] = str(folder / "results")
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def cluster():
    """Two Dask worker processes (non-daemonic, so their tasks may start gridcv's worker processes; the
    setting holds while the module runs, for the worker a nanny starts again after a test kills one)."""
    with dask.config.set({"distributed.worker.daemon": False}):
        local = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
        yield local
        local.close()


def on_dask(cluster) -> dict[str, Any]:
    return {"isolation": "process", "backend": "dask", "dask_scheduler": cluster.scheduler_address}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The shared experiment run on the local backend, one slot: the table Dask must reproduce."""
    path = write_experiment(tmp_path_factory.mktemp("local"), {"isolation": "process"})
    gridcv.run_experiment(path)
    return table(path)


def table(path: Path) -> dict[str, tuple[str, dict, dict]]:
    """task id -> (status, scores, per-epoch history): what must match exactly."""
    with ResultStore.open(path.parent / "results", readonly=True) as store:
        return {r.task_id: (r.status.value, r.scores, r.history) for r in store.fold_rows()}


@slow
def test_dask_gives_the_local_backends_table_bit_for_bit(cluster, reference, tmp_path):
    path = write_experiment(tmp_path, on_dask(cluster))
    gridcv.run_experiment(path)
    assert table(path) == reference  # scores and histories compared exactly (floats with ==)
    attempts = gridcv.load_attempts(path)
    workers = sorted(cluster.scheduler_info["workers"])
    assert sorted(set(attempts["slot"])) == [f"dask {w}" for w in workers]  # both workers trained folds
    assert set(attempts["device"]) == {"cpu"} and set(attempts["host"]) == {socket.gethostname()}
    assert attempts["outcome"].tolist() == ["done"] * 4


@slow
def test_a_fold_that_sigkills_itself_is_retried_with_half_the_batch(cluster, tmp_path):
    path = write_experiment(tmp_path, on_dask(cluster), callbacks=("builder.py:KillMyself",))
    gridcv.run_experiment(path)
    attempts = gridcv.load_attempts(path)
    killed = attempts[attempts["outcome"] == "killed"]
    assert len(killed) == 1 and killed["batch_size"].iloc[0] == 16
    assert killed["message"].iloc[0].startswith("the worker was killed by SIGKILL (most likely the kernel's out-of")
    retry = attempts[attempts["task_id"] == killed["task_id"].iloc[0]]
    assert retry[["attempt", "outcome", "batch_size", "accumulation_steps"]].values.tolist() == [
        [1, "killed", 16, 1],
        [2, "done", 8, 2],
    ]
    others = attempts[attempts["task_id"] != killed["task_id"].iloc[0]]
    assert others[["attempt", "outcome", "batch_size"]].values.tolist() == [[1, "done", 16]] * 3  # undisturbed
    assert gridcv.load_folds(path)["status"].tolist() == ["done"] * 4


@slow
def test_the_runner_killed_mid_run_resumes_with_nothing_lost_or_duplicated(cluster, reference, tmp_path):
    path = write_experiment(tmp_path, on_dask(cluster))
    # The runner alone dies as it commits the first result: the other fold is still training on Dask.
    killed = subprocess.run(
        [sys.executable, "-m", "gridcv.cli", "run", str(path), "--quiet"],
        env={**os.environ, "GRIDCV_FAULT": "store-commit@1"},
        start_new_session=True,
        capture_output=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    with distributed.Client(cluster.scheduler_address, set_as_default=False) as client:
        deadline = time.monotonic() + 30
        while running_tasks(client) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert running_tasks(client) == {}  # the orphaned task saw itself cancelled and killed its fold
    gridcv.run_experiment(path)
    assert table(path) == reference
    attempts = gridcv.load_attempts(path)
    assert (attempts.groupby("task_id")["outcome"].apply(lambda o: (o == "done").sum()) == 1).all()
    assert set(attempts["outcome"]) <= {"done", "abandoned"}


def running_tasks(client) -> dict[str, list[str]]:
    """Tasks whose thread still runs on a Dask worker (a task released by its client keeps running
    until it returns: the scheduler forgets it at once, the worker does not)."""

    def running(dask_worker):
        states = ("executing", "long-running", "cancelled")
        return [str(t.key) for t in dask_worker.state.tasks.values() if t.state in states]

    return {address: keys for address, keys in client.run(running).items() if keys}


@slow
def test_a_task_that_kills_its_dask_worker_is_sent_again(cluster, tmp_path):
    path = write_experiment(tmp_path, on_dask(cluster), callbacks=("builder.py:KillMyDaskWorker",))
    gridcv.run_experiment(path)
    attempts = gridcv.load_attempts(path)
    lost = attempts[attempts["outcome"] == "lost"]
    assert len(lost) == 1
    assert "Dask" in lost["message"].iloc[0] and "sent again" in lost["message"].iloc[0]
    again = attempts[attempts["task_id"] == lost["task_id"].iloc[0]]
    # not an out-of-memory retry: the same batch, and no retry of max_retries spent
    assert again[["attempt", "outcome", "batch_size"]].values.tolist() == [[1, "lost", 16], [2, "done", 16]]
    assert gridcv.load_folds(path)["status"].tolist() == ["done"] * 4


@slow
def test_daemonic_dask_workers_are_refused_with_the_fix(tmp_path):
    with (
        dask.config.set({"distributed.worker.daemon": True}),  # Dask's default
        distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as daemonic,
    ):
        path = write_experiment(tmp_path, on_dask(daemonic))
        with pytest.raises(ClusterError) as refused:
            gridcv.run_experiment(path)
        address = next(iter(daemonic.scheduler_info["workers"]))
    assert str(refused.value).startswith(
        f"the Dask worker(s) at {address} run as daemonic processes (Dask's default, distributed.worker.daemon: "
        "True), which may not start the worker process each fold trains in"
    )
    assert "DASK_DISTRIBUTED__WORKER__DAEMON=False" in str(refused.value)
    assert not (tmp_path / "results").exists()  # refused before anything was written


@slow
def test_ctrl_c_stops_every_task_after_its_checkpoint_and_the_run_resumes(cluster, tmp_path):
    path = write_experiment(tmp_path, on_dask(cluster), callbacks=("builder.py:Held",), epochs=30)
    (tmp_path / "hold").touch()  # folds far longer than a stop takes, even with one worker still starting
    runner = subprocess.Popen(
        [sys.executable, "-m", "gridcv.cli", "run", str(path), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    checkpoints = tmp_path / "results" / "checkpoints"
    deadline = time.monotonic() + 240
    while len({p.parts[-3] for p in checkpoints.rglob("epoch-*.npz")}) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)  # until both tasks' folds have a checkpoint (a worker still starting is not signalled)
    os.killpg(runner.pid, signal.SIGINT)  # the runner's terminal: the Dask workers are elsewhere
    _, err = runner.communicate(timeout=120)
    assert runner.returncode == 130, err
    stopped = gridcv.load_attempts(path)
    assert stopped["outcome"].tolist() == ["interrupted", "interrupted"]  # both slots' folds
    for task_id, message in stopped[["task_id", "message"]].values.tolist():
        # at an epoch's end or, under load, inside one: a checkpoint of exactly that position is saved
        assert checkpoint_of(checkpoints, task_id, message) != [], (message, sorted(checkpoints.rglob("*.npz")))
    (tmp_path / "hold").unlink()
    gridcv.run_experiment(path)
    assert gridcv.load_folds(path)["status"].tolist() == ["done"] * 4
    resumed = gridcv.load_attempts(path).groupby("task_id")["resumed_from_epoch"].max()
    assert (resumed[stopped["task_id"]] > 0).all()  # they went on from their checkpoints


def test_a_killed_worker_or_a_lost_connection_is_a_lost_attempt_and_other_errors_are_errors():
    from gridcv.execution.dask import outcome_of
    from gridcv.execution.messages import OutcomeKind

    class Failed:
        def __init__(self, exc: BaseException) -> None:
            self.exc = exc

        def result(self):
            raise self.exc

    job = types.SimpleNamespace(task=types.SimpleNamespace(task_id="t1"), batch_size=16, accumulation_steps=2)
    worker = types.SimpleNamespace(address="tcp://10.0.0.5:40123")
    killed = outcome_of(Failed(distributed.KilledWorker("key", worker, 3)), job)
    assert (killed.kind, killed.batch_size, killed.accumulation_steps) == (OutcomeKind.LOST, 16, 2)
    assert killed.message == "the Dask worker tcp://10.0.0.5:40123 died while running it; it is sent again"
    closed = outcome_of(Failed(distributed.comm.CommClosedError("in <TCP>: Stream is closed")), job)
    assert closed.kind is OutcomeKind.LOST
    assert closed.message == (
        "the connection to the Dask cluster was lost (CommClosedError: in <TCP>: Stream is closed); it is sent again"
    )
    broken = outcome_of(Failed(ValueError("cannot unpickle")), job)
    assert (broken.kind, broken.message) == (OutcomeKind.ERROR, "the Dask task failed: ValueError: cannot unpickle")
    assert broken.error.splitlines()[-1] == "ValueError: cannot unpickle"


def test_a_workers_probe_names_what_it_cannot_read_see_or_write(tmp_path):
    from gridcv.config import parse_data
    from gridcv.execution.dask import cluster_problems
    from gridcv.execution.dask_task import probe_worker
    from gridcv.execution.messages import DataRef

    write_arrays(tmp_path)
    data = DataRef(parse_data({"kind": "arrays", "x": "data/x.npy", "y": "data/missing.npy"}), tmp_path)
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / ".gridcv-probe-1").write_text("")
    assert probe_worker(data, str(tmp_path / "results"), ".gridcv-probe-1") == [
        f"cannot read the data's data.y, {tmp_path / 'data' / 'missing.npy'} (No such file or directory)"
    ]
    assert len(list((tmp_path / "results").glob(".gridcv-probe-1-*"))) == 1  # it wrote beside the runner's file
    elsewhere = probe_worker(data, str(tmp_path / "results"), ".gridcv-probe-2")  # a file it cannot see
    assert (
        elsewhere[-1]
        == f"does not see the file the runner just wrote in {tmp_path / 'results'}, so it is not the same folder"
    )
    message = cluster_problems({elsewhere[-1]: ["tcp://a:1", "tcp://b:2"]}, tmp_path / "results", "exp.yaml")
    assert message == (
        f"the Dask worker(s) at tcp://a:1, tcp://b:2: does not see the file the runner just wrote in "
        f"{tmp_path / 'results'}, so it is not the same folder. The data and the results folder "
        f"({tmp_path / 'results'}) must be on storage every worker sees under the same path (a shared file "
        "system), since workers read the data and write checkpoints there; exp.yaml names them."
    )


def test_a_dask_run_without_a_scheduler_says_how_to_start_one(make_experiment, monkeypatch):
    from gridcv.execution import dask as backend

    monkeypatch.setattr(backend, "CONNECT_SECONDS", 1.0)
    path = make_experiment(execution={"isolation": "process", "backend": "dask"})
    with pytest.raises(ClusterError) as refused:
        gridcv.run_experiment(path)
    assert str(refused.value) == (
        f"{path}: execution.backend is dask but execution.dask_scheduler is not set. Set it to the scheduler's "
        "address (tcp://host:8786) or to its scheduler file (dask scheduler --scheduler-file FILE), in the file "
        "or with --dask-scheduler."
    )
    with pytest.raises(ClusterError, match=r"no Dask scheduler answered at tcp://127.0.0.1:9 within 1 s \("):
        gridcv.run_experiment(path, gridcv.RunOptions(execution={"dask_scheduler": "tcp://127.0.0.1:9"}))


def test_workers_offering_gpus_get_a_slot_per_gpu_and_each_task_asks_for_one(monkeypatch):
    """The GPU path of backend: dask without a GPU: the scheduler's worker list, the submit call and
    what a task's gridcv worker is given are checked against faked GPUs."""
    from gridcv.config import ExecutionSpec
    from gridcv.execution.dask import DaskExecutor, slot_names, slot_pins
    from gridcv.execution.dask_task import TaskRequest, fold_on_worker

    workers = {
        "tcp://b:2": {"resources": {"GPU": 1}, "nthreads": 4},
        "tcp://a:1": {"resources": {"GPU": 2}, "nthreads": 8},
    }
    assert slot_pins(workers, gpu=True) == ["tcp://a:1", "tcp://a:1", "tcp://b:2"]
    assert slot_names(slot_pins(workers, gpu=True)) == ("dask tcp://a:1 1/2", "dask tcp://a:1 2/2", "dask tcp://b:2")
    assert slot_pins(workers, gpu=False) == ["tcp://a:1"] * 8 + ["tcp://b:2"] * 4  # devices: cpu: a slot per thread

    calls: list[dict[str, Any]] = []
    executor = DaskExecutor.__new__(DaskExecutor)  # no cluster: only what _submit sends
    executor._client = types.SimpleNamespace(submit=lambda function, request, **kw: calls.append(kw))
    job = types.SimpleNamespace(task=types.SimpleNamespace(task_id="t1"), attempt=2)
    request = TaskRequest(job, 0, "dask tcp://a:1 1/2", "topic", "stop", True, ExecutionSpec(), None, True)
    for executor.gpu in (True, False):
        executor._submit(fold_on_worker, request, "tcp://a:1")
    assert [{k: v for k, v in c.items() if k != "key"} for c in calls] == [
        {"pure": False, "retries": 0, "resources": {"GPU": 1}, "workers": ["tcp://a:1"], "allow_other_workers": True},
        {"pure": False, "retries": 0, "resources": None, "workers": ["tcp://a:1"], "allow_other_workers": True},
    ]
    assert calls[0]["key"].startswith("gridcv-t1-a2-")


def test_a_dask_worker_leases_its_gpus_one_per_task_and_sets_each_fold_process_to_its_gpu(monkeypatch):
    from gridcv.config import ExecutionSpec
    from gridcv.execution import dask_task
    from gridcv.execution.placement import WorkerSetup

    monkeypatch.setattr(dask_task, "visible_gpus", lambda: ["0", "1"])  # this Dask worker's CUDA_VISIBLE_DEVICES
    devices = dask_task._Devices()
    with devices.lease(True) as first, devices.lease(True) as second, devices.lease(False) as none:
        assert (first, second, none) == ("0", "1", None)  # two tasks at once: one GPU each
    with devices.lease(True) as again:
        assert again == "0"
    capped = ExecutionSpec(gpu_memory_limit="2GiB")
    request = dask_task.TaskRequest(None, 1, "dask tcp://a:1 2/2", "t", "s", True, capped, None, True)
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    assert dask_task.task_setup(request, 8, "1") == WorkerSetup(
        "dask tcp://a:1 2/2",
        "GPU 1",
        (("CUDA_VISIBLE_DEVICES", "1"), ("CUDA_DEVICE_ORDER", "PCI_BUS_ID")),
        None,
        2 * 1024**3,
    )
    on_cpu = dask_task.TaskRequest(
        None, 0, "dask tcp://a:1", "t", "s", False, ExecutionSpec(devices="cpu"), None, False
    )
    assert dask_task.task_setup(on_cpu, 8, None).environ == (("CUDA_VISIBLE_DEVICES", "-1"),)
