"""A fold attempt inside a Dask task: the task's side of :mod:`gridcv.execution.dask`.

Runs in a Dask worker process, on one of its threads. The fold trains in a
spawned gridcv worker process driven by a
:class:`~gridcv.execution.processes.WorkerSlot`, as in a local run: epochs are
sent to the runner as Dask events, the memory guard samples the process, a
death by signal comes back as an outcome. The worker processes stay warm
between tasks (TensorFlow imports once per Dask worker and device).

Three things a Dask worker can do that a local slot cannot:

- die with the task: Dask then runs the task again elsewhere. The attempt
  claims a file next to its checkpoints when it starts, so the second run
  finds it and reports the attempt ``lost`` at once instead of training a
  second time behind the runner's back;
- outlive the runner: a runner that dies releases its tasks, which Dask
  marks cancelled; the task sees it within a second and kills its process;
- be daemonic (Dask's default), which forbids child processes: the runner
  checks every worker before sending folds (:func:`probe_worker`).
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

import distributed

from gridcv.config.schema import ExecutionSpec
from gridcv.errors import WorkerStartError
from gridcv.execution.messages import DataRef, EpochEnded, Finished, FoldJob, FoldOutcome, OutcomeKind, Progress
from gridcv.execution.placement import CPU, WorkerSetup, thread_share, visible_gpus
from gridcv.execution.processes import WorkerSlot
from gridcv.execution.worker_process import POLL_SECONDS, start_worker

DAEMON_PROBLEM = "daemonic"
STOP_CHECK_SECONDS = 1.0


@dataclass(frozen=True)
class TaskRequest:
    """What a Dask task needs to run one attempt (or the builder check) and report on it."""

    job: FoldJob
    slot: int
    slot_name: str
    topic: str  # the Dask event topic epochs are reported on
    stop_event: str  # the distributed.Event the runner sets to stop folds after their checkpoint
    deterministic: bool
    execution: ExecutionSpec
    log_dir: Path | None
    gpu: bool


def fold_on_worker(request: TaskRequest) -> FoldOutcome:
    """The Dask task of one fold attempt: trains it in a gridcv worker process; never raises."""
    job, worker, host = request.job, distributed.get_worker(), socket.gethostname()
    key = str(worker.get_current_task())  # gridcv names its tasks with strings
    ended = FoldOutcome(
        job.task.task_id,
        OutcomeKind.LOST,
        batch_size=job.batch_size,
        accumulation_steps=job.accumulation_steps,
        host=host,
    )
    try:
        if not claim(job):
            why = f"the Dask worker that started it was lost, and Dask ran the task again on {worker.address}"
            return replace(ended, message=f"{why}; it is sent again as a new attempt")
    except OSError as exc:
        return replace(ended, kind=OutcomeKind.FATAL, message=f"cannot write {job.checkpoint_dir}: {exc}")
    if multiprocessing.current_process().daemon:
        return replace(ended, kind=OutcomeKind.FATAL, message=DAEMONIC)
    with _devices().lease(request.gpu) as entry:
        slot = _warm().take(task_setup(request, worker.state.nthreads, entry), request)
        try:
            outcome = _drive(slot, request, worker, key)
        except WorkerStartError as exc:
            return replace(ended, kind=OutcomeKind.FATAL, message=str(exc))
        finally:
            _warm().give_back(slot, request)
    return replace(outcome, host=outcome.host or host)


def check_on_worker(request: TaskRequest) -> tuple[str, Any]:
    """The Dask task of the builder check: the reply a local worker would send (see ``attempt_check``)."""
    worker = distributed.get_worker()
    with _devices().lease(request.gpu) as entry:
        slot = _warm().take(task_setup(request, worker.state.nthreads, entry), request)
        try:
            process = slot.ensure_worker()
            process.conn.send(("check", request.job))
            reply: tuple[str, Any] = process.receive(timeout=None)
        except (WorkerStartError, AssertionError) as exc:  # AssertionError: a daemonic Dask worker
            reply = ("fatal", (type(exc).__name__, str(exc), traceback.format_exc()))
        finally:
            _warm().give_back(slot, request)
    return reply


def _drive(slot: WorkerSlot, request: TaskRequest, worker: Any, key: str) -> FoldOutcome:
    """Runs the fold to its end, relaying epochs and stop requests; kills it if the runner is gone."""
    slot.start(request.job)
    stop = distributed.Event(request.stop_event)
    checked, asked = time.monotonic(), False
    while True:
        process = slot.worker
        assert process is not None
        wait([process.conn, process.process.sentinel], timeout=POLL_SECONDS)
        for event in slot.receive():
            if isinstance(event, Finished):
                return event.outcome
            assert isinstance(event, Progress)
            worker.log_event(request.topic, {"slot": request.slot, "key": key, "epoch": _plain(event.epoch)})
        if (stopped := slot.sample_memory()) is not None:
            return stopped.outcome
        if _cancelled(worker, key):  # the runner died or let go: no one will read this attempt
            process.process.kill()
            process.process.join()
            return FoldOutcome(request.job.task.task_id, OutcomeKind.INTERRUPTED, message="cancelled by the runner")
        if not asked and time.monotonic() - checked >= STOP_CHECK_SECONDS:
            checked = time.monotonic()
            if stop.is_set():
                slot.request_stop()
                asked = True


def _cancelled(worker: Any, key: str) -> bool:
    """Whether Dask let go of this task (its runner released it, or the runner's connection closed)."""
    state = worker.state.tasks.get(key)
    return state is None or state.state == "cancelled"


def _plain(epoch: EpochEnded) -> dict[str, Any]:
    """An epoch as Dask events carry it (msgpack: plain numbers)."""
    return {**asdict(epoch), "logs": {k: float(v) for k, v in epoch.logs.items()}}


def claim(job: FoldJob) -> bool:
    """Claims the attempt; False if a run of this task claimed it already (its Dask worker died)."""
    folder = job.checkpoint_dir.parent
    folder.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(folder / f".attempt-{job.attempt}.claim", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        return False
    return True


def task_setup(request: TaskRequest, threads: int, gpu: str | None) -> WorkerSetup:
    """The gridcv worker's setup for a task: the leased GPU, or the CPU shared by the Dask worker's threads."""
    execution = request.execution
    if gpu is not None:
        environ = (
            ("CUDA_VISIBLE_DEVICES", gpu),
            ("CUDA_DEVICE_ORDER", os.environ.get("CUDA_DEVICE_ORDER", "PCI_BUS_ID")),
        )
        limit = int(execution.gpu_memory_limit) if execution.gpu_memory_limit else None
        return WorkerSetup(request.slot_name, f"GPU {gpu}", environ, None, limit)
    share = thread_share(threads, request.deterministic)
    if execution.devices == CPU:
        return WorkerSetup(request.slot_name, CPU, (("CUDA_VISIBLE_DEVICES", "-1"),), share)
    gpus = visible_gpus()  # no GPU resource asked for: TensorFlow takes what it sees, as a local run does
    return WorkerSetup(request.slot_name, f"GPU {gpus[0]}" if gpus else CPU, (), share)


class _Devices:
    """This Dask worker's GPUs, leased to its tasks one each (a worker offering ``GPU=2`` runs two)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._use: dict[str, int] | None = None

    @contextmanager
    def lease(self, wanted: bool) -> Iterator[str | None]:
        entry = None
        if wanted:
            with self._lock:
                if self._use is None:
                    self._use = dict.fromkeys(visible_gpus(), 0)
                if self._use:
                    entry = min(self._use, key=lambda e: self._use[e] if self._use else 0)
                    self._use[entry] += 1
        try:
            yield entry
        finally:
            if entry is not None and self._use is not None:
                with self._lock:
                    self._use[entry] -= 1


class _Spawner:
    """Starts processes from one thread that lives as long as the Dask worker.

    ``PR_SET_PDEATHSIG`` kills a child when the *thread* that started it ends,
    and Dask's pool threads come and go.
    """

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[Callable[[], Any], Future[Any]]] = queue.Queue()
        threading.Thread(target=self._serve, name="gridcv-spawner", daemon=True).start()

    def call(self, function: Callable[[], Any]) -> Any:
        result: Future[Any] = Future()
        self._jobs.put((function, result))
        return result.result()

    def _serve(self) -> None:
        while True:
            function, result = self._jobs.get()
            try:
                result.set_result(function())
            except BaseException as exc:
                result.set_exception(exc)


class _WarmWorkers:
    """gridcv worker processes of this Dask worker, idle between tasks, by setup."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[tuple[Any, ...], list[WorkerSlot]] = {}
        self._spawner = _Spawner()
        self._started = 0

    @staticmethod
    def _key(setup: WorkerSetup, request: TaskRequest) -> tuple[Any, ...]:
        return (replace(setup, slot=""), request.deterministic, request.execution.model_dump_json())

    def take(self, setup: WorkerSetup, request: TaskRequest) -> WorkerSlot:
        """An idle slot of this setup (its worker logging to ``request.log_dir``), or a new one."""
        with self._lock:
            idle = self._idle.get(self._key(setup, request), [])
            slot = idle.pop() if idle else None
        if slot is None:
            return WorkerSlot(request.slot, self._spawn_for(setup, request), request.execution, setup)
        slot.setup, slot.spawn = setup, self._spawn_for(setup, request)
        worker = slot.worker
        log = self._log_path(request, worker.id) if worker is not None else None
        if worker is not None and worker.ready and worker.alive() and log != worker.log_path:
            worker.conn.send(("log", None if log is None else str(log)))
            worker.receive(timeout=None)
            worker.log_path = log
        return slot

    def give_back(self, slot: WorkerSlot, request: TaskRequest) -> None:
        """Keeps the slot's worker warm for the next task, unless it is busy, gone or killed."""
        if slot.job is None and slot.worker is not None and slot.worker.alive():
            with self._lock:
                self._idle.setdefault(self._key(slot.setup, request), []).append(slot)
        else:
            slot.stop()

    def _log_path(self, request: TaskRequest, worker_id: str) -> Path | None:
        return None if request.log_dir is None else request.log_dir / f"worker-{worker_id}.log"

    def _spawn_for(self, setup: WorkerSetup, request: TaskRequest) -> Callable[[], Any]:
        def spawn() -> Any:
            with self._lock:
                self._started += 1
                worker_id = f"{socket.gethostname()}-{os.getpid()}-w{self._started}"
            log = self._log_path(request, worker_id)
            return self._spawner.call(lambda: start_worker(worker_id, request.deterministic, log, setup))

        return spawn


_SINGLETONS: dict[str, Any] = {}
_SINGLETONS_LOCK = threading.Lock()


def _warm() -> _WarmWorkers:
    """This Dask worker process's warm gridcv workers (made on first use: a Dask worker is long-lived)."""
    with _SINGLETONS_LOCK:
        if "warm" not in _SINGLETONS:
            _SINGLETONS["warm"] = _WarmWorkers()
        return _SINGLETONS["warm"]


def _devices() -> _Devices:
    """This Dask worker process's GPU leases."""
    with _SINGLETONS_LOCK:
        if "devices" not in _SINGLETONS:
            _SINGLETONS["devices"] = _Devices()
        return _SINGLETONS["devices"]


def probe_worker(data: DataRef, anchor: str, marker: str) -> list[str]:
    """What keeps this Dask worker from training folds: a daemonic process, data it cannot read, a
    results folder it does not see or cannot write. Run on every worker by the runner (``client.run``)."""
    from gridcv.data.sources import resolve_path

    problems = []
    if multiprocessing.current_process().daemon:
        problems.append(DAEMON_PROBLEM)
    for name in ("x", "y", "groups", "root", "masks", "path"):
        value = getattr(data.spec, name, None)
        if isinstance(value, str):
            path = resolve_path(value, data.base_dir)
            try:
                if path.is_dir():
                    os.listdir(path)
                else:
                    with open(path, "rb") as f:
                        f.read(1)
            except OSError as exc:
                problems.append(f"cannot read the data's data.{name}, {path} ({exc.strerror})")
    folder = Path(anchor)
    if not (folder / marker).is_file():
        problems.append(f"does not see the file the runner just wrote in {folder}, so it is not the same folder")
    else:
        try:
            (folder / f"{marker}-{uuid.uuid4().hex[:8]}").write_text("seen\n")
        except OSError as exc:
            problems.append(f"cannot write in {folder} ({exc.strerror})")
    return problems


def storage_anchor(folder: Path) -> Path:
    """The results folder, or its nearest existing parent before the first run creates it."""
    folder = folder.absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


DAEMONIC = (
    "this Dask worker runs as a daemonic process (Dask's default, distributed.worker.daemon: True), which may not "
    "start the worker process a fold trains in. Start the Dask workers with DASK_DISTRIBUTED__WORKER__DAEMON=False "
    "in their environment, then run again."
)
