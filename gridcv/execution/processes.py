"""Slots that train folds in worker processes: with :mod:`~gridcv.execution.worker_process` (one
process: its start, pipe and end), the only code that starts and stops them.

:class:`ProcessExecutor` has slots; each trains one fold at a time in a
worker process that it replaces when it dies, after
``folds_per_worker`` folds, or when its memory after a fold is above
``max_worker_memory``. Hand-written workers were chosen over
``concurrent.futures`` (``max_tasks_per_child``) and loky because gridcv
needs what they hide: each worker's pid (to sample and cap its memory during
a fold), the fold that was running when it died and the signal that killed
it, a way to ask it to stop after its next checkpoint, messages while a fold
trains (epochs), and replacement decided by memory rather than by count
only. The plumbing stays small: a pipe and a process per slot, and one
``connection.wait`` over all of them.

Each slot's worker is set up by a :class:`~gridcv.execution.placement.WorkerSetup`:
its one GPU, or its share of the CPU's threads. :class:`WorkerSlot` is also
what a Dask task drives (:mod:`gridcv.execution.dask`), so a fold trains in
the same kind of worker process on a cluster.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from gridcv.config.schema import ExecutionSpec
from gridcv.execution.memory import format_bytes
from gridcv.execution.messages import Event, Finished, FoldJob, FoldOutcome, OutcomeKind, Placement, Progress
from gridcv.execution.placement import WorkerSetup, cpu_slots, host_name
from gridcv.execution.worker import STOP_SIGNAL, read_check_reply
from gridcv.execution.worker_process import POLL_SECONDS, WorkerProcess, death_of


class WorkerSlot:
    """One place a fold trains: its worker (replaced as needed), a warm successor, the fold in flight.

    Args:
        index: The slot's number, in the events it makes.
        spawn: Starts a new worker for this slot.
        execution: ``folds_per_worker`` and ``max_worker_memory``.
        setup: The slot's device and threads (recorded with outcomes of workers that died).
    """

    def __init__(
        self, index: int, spawn: Callable[[], WorkerProcess], execution: ExecutionSpec, setup: WorkerSetup
    ) -> None:
        self.index = index
        self.spawn = spawn
        self.execution = execution
        self.setup = setup
        self.limit = int(execution.max_worker_memory) if execution.max_worker_memory else None
        self.worker: WorkerProcess | None = None
        self.standby: WorkerProcess | None = None  # warmed up while the current worker runs its last fold
        self.job: FoldJob | None = None
        self.peak = 0
        self.stopping = False  # a stop was asked for before the worker could take the signal

    def ensure_worker(self, wait: bool = True) -> WorkerProcess:
        """The slot's live worker: the current one, the warm successor, or a new one.

        With ``wait=False`` it may still be importing TensorFlow; :meth:`receive`
        hands it the fold when it says it is ready, so slots start side by side.
        """
        if self.worker is None or not self.worker.alive():
            if self.worker is not None:
                self.worker.stop(grace=0)
            if self.standby is not None and self.standby.alive():
                self.worker, self.standby = self.standby, None
            else:
                self.worker = self.spawn()
        if wait:
            self.worker.wait_ready()
        return self.worker

    def start(self, job: FoldJob) -> None:
        worker = self.ensure_worker(wait=False)
        worker.folds += 1
        if worker.folds == self.execution.folds_per_worker and self.standby is None:
            # This is the worker's last fold: its successor imports TensorFlow meanwhile
            # (seconds of start-up that would otherwise be spent waiting).
            self.standby = self.spawn()
        self.job, self.peak, self.stopping = job, 0, False
        if worker.ready:
            worker.conn.send(("fold", job))

    def receive(self) -> list[Event]:
        """Every message the worker has sent, and its end if it died.

        Raises:
            WorkerStartError: The worker died before it was ready (TensorFlow did not import).
        """
        assert self.worker is not None and self.job is not None
        worker = self.worker
        events: list[Event] = []
        while worker.conn.poll():
            try:
                tag, payload = worker.conn.recv()
            except (EOFError, OSError):
                break
            if tag == "ready":
                worker.ready, worker.received = True, payload
                if self.stopping:  # stopped before it started: the fold is not sent
                    return [*events, self._not_started()]
                worker.conn.send(("fold", self.job))
            elif tag == "epoch":
                events.append(Progress(self.index, payload))
            elif tag == "outcome":
                return [*events, self._finished(payload)]
        if not worker.alive() or worker.conn.closed:
            if not worker.ready:
                raise worker.start_error()
            return [*events, self._died()]
        return events

    def request_stop(self) -> None:
        """Asks the fold in flight to stop after its next checkpoint.

        A worker still starting has no handler for the signal yet (it would kill
        it): its fold is then not sent, and ends as interrupted when it is ready.
        """
        worker = self.worker
        if self.job is None or worker is None or not worker.alive():
            return
        if worker.ready:
            os.kill(worker.pid, STOP_SIGNAL)
        else:
            self.stopping = True

    def _not_started(self) -> Finished:
        assert self.job is not None
        job, self.job = self.job, None
        outcome = FoldOutcome(
            job.task.task_id,
            OutcomeKind.INTERRUPTED,
            batch_size=job.batch_size,
            accumulation_steps=job.accumulation_steps,
            message="stopped on request before it started",
            device=self.setup.device,
            host=host_name(),
        )
        return Finished(self.index, outcome)

    def sample_memory(self) -> Finished | None:
        """Samples the worker's memory; stops it (an OOM outcome) above ``max_worker_memory``."""
        assert self.worker is not None
        rss = self.worker.rss()
        if rss is None:
            return None
        self.peak = max(self.peak, rss)
        if self.limit is None or (held := self.worker.memory_over(self.limit, rss)) is None:
            return None
        self.worker.process.kill()
        self.worker.process.join()
        why = (
            f"the worker reached {format_bytes(held)}, above max_worker_memory ({format_bytes(self.limit)}); "
            "it was stopped by gridcv's memory guard"
        )
        return self._lost(OutcomeKind.OOM, why)

    def _finished(self, outcome: FoldOutcome) -> Finished:
        assert self.worker is not None
        worker = self.worker
        outcome = replace(outcome, peak_rss=max(outcome.peak_rss or 0, self.peak) or None)
        rss = worker.rss() or 0
        too_big = self.limit is not None and worker.memory_over(self.limit, rss) is not None
        too_old = self.execution.folds_per_worker is not None and worker.folds >= self.execution.folds_per_worker
        if too_big or too_old:
            worker.stop()
            self.worker = None
        self.job = None
        return Finished(self.index, outcome)

    def _died(self) -> Finished:
        assert self.worker is not None
        self.worker.process.join(5)
        return self._lost(OutcomeKind.KILLED, death_of(self.worker))

    def _lost(self, kind: OutcomeKind, why: str) -> Finished:
        assert self.worker is not None and self.job is not None
        worker, job = self.worker, self.job
        code = worker.process.exitcode
        if kind is OutcomeKind.KILLED and code is not None and code != -signal.SIGKILL:
            kind = OutcomeKind.ERROR  # a crash (segfault, abort) is not an OOM
        worker.conn.close()
        self.worker, self.job = None, None
        outcome = FoldOutcome(
            task_id=job.task.task_id,
            kind=kind,
            batch_size=job.batch_size,
            accumulation_steps=job.accumulation_steps,
            message=f"{why}; it had reached {format_bytes(self.peak)} resident",
            peak_rss=self.peak or None,
            worker_id=worker.id,
            worker_folds=worker.folds,
            device=worker.received.get("device", self.setup.device),
            host=host_name(),
        )
        return Finished(self.index, outcome)

    def stop(self) -> None:
        for worker in (self.worker, self.standby):
            if worker is not None:
                worker.stop()
        self.worker = self.standby = self.job = None


class ProcessExecutor:
    """Runs folds in worker processes (forked from the fork server), one per slot, replaced as needed.

    Args:
        execution: The ``execution:`` section.
        deterministic: TensorFlow op determinism in the workers.
        log_dir: Where workers write their logs; None: to this terminal.
        slots: The slots' setups (:func:`~gridcv.execution.placement.plan_slots`),
            or a number of CPU slots.
    """

    def __init__(
        self,
        execution: ExecutionSpec,
        deterministic: bool,
        log_dir: Path | None,
        slots: int | Sequence[WorkerSetup] = 1,
    ) -> None:
        self.execution = execution
        self.deterministic = deterministic
        setups = cpu_slots(slots, deterministic) if isinstance(slots, int) else tuple(slots)
        self._slots = [WorkerSlot(i, self._spawner(s), execution, s) for i, s in enumerate(setups)]
        self._host = host_name()
        self._started = 0
        self.start_method = "forkserver"  # "spawn" once the fork server failed to start
        self._last_sample = 0.0
        # Until the results folder exists (it is not created before the builder is
        # checked), logs go to a temporary folder.
        self._log_dir = log_dir
        if log_dir is not None and not log_dir.is_dir():
            self._log_dir = Path(tempfile.mkdtemp(prefix="gridcv-logs-"))

    @property
    def slots(self) -> int:
        return len(self._slots)

    @property
    def slot_names(self) -> tuple[str, ...]:
        return tuple(s.setup.slot for s in self._slots)

    def placement(self, slot: int) -> Placement:
        setup = self._slots[slot].setup
        return Placement(setup.slot, setup.device, self._host)

    def _log_path(self, worker_id: str) -> Path | None:
        return None if self._log_dir is None else self._log_dir / f"worker-{worker_id}.log"

    def set_log_dir(self, folder: Path) -> None:
        if self._log_dir is None:
            return
        folder.mkdir(parents=True, exist_ok=True)
        self._log_dir = folder
        for slot in self._slots:
            worker = slot.worker
            if worker is not None and worker.alive() and slot.job is None:
                worker.conn.send(("log", str(self._log_path(worker.id))))
                worker.receive(timeout=None)

    def _spawner(self, setup: WorkerSetup) -> Callable[[], WorkerProcess]:
        def spawn() -> WorkerProcess:
            self._started += 1
            worker_id = f"w{self._started}"
            log_path = self._log_path(worker_id)
            try:
                return WorkerProcess(worker_id, self.deterministic, log_path, setup, self.start_method)
            except (OSError, EOFError):
                if self.start_method == "spawn":
                    raise
                # The fork server died (it refused to fork, see gridcv.training.forking, or TensorFlow's
                # import crashed it): workers are spawned, each importing TensorFlow itself.
                self.start_method = "spawn"
                return WorkerProcess(worker_id, self.deterministic, log_path, setup, self.start_method)

        return spawn

    def check(self, job: FoldJob) -> bool:
        worker = self._slots[0].ensure_worker()
        worker.conn.send(("check", job))
        return read_check_reply(*worker.receive(timeout=None))

    def start(self, slot: int, job: FoldJob) -> None:
        busy = self._slots[slot].job
        if busy is not None:
            raise RuntimeError(f"slot {slot} is busy with fold {busy.task.task_id}")
        self._slots[slot].start(job)

    def poll(self, timeout: float) -> list[Event]:
        busy = [s for s in self._slots if s.job is not None and s.worker is not None]
        if not busy:
            return []
        handles: list[Any] = [s.worker.conn for s in busy if s.worker] + [
            s.worker.process.sentinel for s in busy if s.worker
        ]
        wait(handles, timeout=min(timeout, POLL_SECONDS))
        events: list[Event] = []
        for slot in busy:
            events += slot.receive()
        if time.monotonic() - self._last_sample >= POLL_SECONDS:
            self._last_sample = time.monotonic()
            for slot in busy:
                if slot.job is not None and (stopped := slot.sample_memory()) is not None:
                    events.append(stopped)
        return events

    def request_stop(self) -> None:
        for slot in self._slots:
            slot.request_stop()

    def close(self) -> None:
        for slot in self._slots:
            slot.stop()
