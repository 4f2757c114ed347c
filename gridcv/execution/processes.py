"""Worker processes: the only module that starts and stops them.

:class:`ProcessExecutor` runs folds in one spawned worker at a time and
replaces it when it dies, after ``folds_per_worker`` folds, or when its
memory after a fold is above ``max_worker_memory``. A hand-written single
worker was chosen over ``concurrent.futures`` (``max_tasks_per_child``) and
loky because gridcv needs what they hide: the worker's pid (to sample and
cap its memory during a fold), the fold that was running when it died and
the signal that killed it, a way to ask it to stop after its next
checkpoint, and replacement decided by memory rather than by count only.
With one model at a time there is no pool to manage, so the plumbing stays
small: a pipe, a process, and a loop that polls both.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import tempfile
from dataclasses import replace
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from gridcv.config.schema import ExecutionSpec
from gridcv.errors import BuilderError, DataError, UserError, WorkerStartError
from gridcv.execution.memory import format_bytes, rss_of
from gridcv.execution.messages import FoldJob, FoldOutcome, OutcomeKind
from gridcv.execution.worker import STOP_SIGNAL

_FATAL_TYPES: dict[str, type[UserError]] = {"BuilderError": BuilderError, "DataError": DataError}
POLL_SECONDS = 0.2


class _Worker:
    """One live worker process and the pipe to it."""

    def __init__(self, worker_id: str, deterministic: bool, log_path: Path | None) -> None:
        from gridcv.execution.worker import worker_main

        ctx = multiprocessing.get_context("spawn")  # fork would copy TF state and threads
        self.id = worker_id
        self.conn, child = ctx.Pipe()
        self.process: BaseProcess = ctx.Process(
            target=worker_main,
            args=(child, os.getpid(), worker_id, deterministic, None if log_path is None else str(log_path)),
            name=f"gridcv-{worker_id}",
            daemon=True,
        )
        self.process.start()
        child.close()
        self.folds = 0
        self.ready = False
        self.log_path = log_path

    def wait_ready(self) -> None:
        """Waits until the worker has imported TensorFlow and asks for work."""
        if self.ready:
            return
        tag, _pid = self.receive(timeout=None)
        if tag != "ready":
            where = f"; see {self.log_path}" if self.log_path else ""
            raise WorkerStartError(
                f"a gridcv worker process could not start (exit code {self.process.exitcode}){where}. Check that "
                "TensorFlow imports in this environment: python -c 'import tensorflow'."
            )
        self.ready = True

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process.is_alive()

    def rss(self) -> int | None:
        return rss_of(self.pid)

    def receive(self, timeout: float | None) -> tuple[str, Any]:
        """The worker's next message; ``("dead", None)`` if it died, ``("timeout", None)`` after ``timeout``."""
        while True:
            if self.conn.poll(POLL_SECONDS if timeout is None else timeout):
                try:
                    message: tuple[str, Any] = self.conn.recv()
                except EOFError:
                    return ("dead", None)
                return message
            if not self.process.is_alive():
                return ("dead", None)
            if timeout is not None:
                return ("timeout", None)

    def stop(self, grace: float = 10.0) -> None:
        if self.process.is_alive():
            try:
                self.conn.send(("stop", None))
            except (OSError, BrokenPipeError):
                pass
            self.process.join(grace)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


class ProcessExecutor:
    """Runs folds in a spawned worker process that it replaces as needed."""

    def __init__(self, execution: ExecutionSpec, deterministic: bool, log_dir: Path | None) -> None:
        self.execution = execution
        self.deterministic = deterministic
        self.max_worker_memory = int(execution.max_worker_memory) if execution.max_worker_memory else None
        self._worker: _Worker | None = None
        self._standby: _Worker | None = None  # warmed up while the current worker runs its last fold
        self._started = 0
        # Until the results folder exists (it is not created before the builder is
        # checked), logs go to a temporary folder.
        self._log_dir = log_dir
        if log_dir is not None and not log_dir.is_dir():
            self._log_dir = Path(tempfile.mkdtemp(prefix="gridcv-logs-"))

    def _log_path(self, worker_id: str) -> Path | None:
        return None if self._log_dir is None else self._log_dir / f"worker-{worker_id}.log"

    def set_log_dir(self, folder: Path) -> None:
        if self._log_dir is None:
            return
        folder.mkdir(parents=True, exist_ok=True)
        self._log_dir = folder
        if self._worker is not None and self._worker.alive():
            path = self._log_path(self._worker.id)
            self._worker.conn.send(("log", str(path)))
            self._worker.receive(timeout=None)

    def _spawn(self) -> _Worker:
        self._started += 1
        worker_id = f"w{self._started}"
        return _Worker(worker_id, self.deterministic, self._log_path(worker_id))

    def _ensure_worker(self) -> _Worker:
        if self._worker is None or not self._worker.alive():
            if self._worker is not None:
                self._worker.stop(grace=0)
            if self._standby is not None and self._standby.alive():
                self._worker, self._standby = self._standby, None
            else:
                self._worker = self._spawn()
        self._worker.wait_ready()
        return self._worker

    def check(self, job: FoldJob) -> None:
        worker = self._ensure_worker()
        worker.conn.send(("check", job))
        tag, payload = worker.receive(timeout=None)
        if tag == "fatal":
            kind, message, _tb = payload
            raise _FATAL_TYPES.get(kind, BuilderError)(message)
        # A worker that died while building proves nothing about the builder (it may
        # have run out of memory); the folds will meet the same fate and record it.

    def run(self, job: FoldJob) -> FoldOutcome:
        worker = self._ensure_worker()
        worker.folds += 1
        if worker.folds == self.execution.folds_per_worker and self._standby is None:
            # This is the worker's last fold: its successor imports TensorFlow meanwhile
            # (seconds of start-up that would otherwise be spent waiting).
            self._standby = self._spawn()
        worker.conn.send(("fold", job))
        peak = 0
        limit = self.max_worker_memory
        while True:
            if worker.conn.poll(POLL_SECONDS):
                try:
                    tag, outcome = worker.conn.recv()
                except EOFError:
                    break
                if tag == "outcome":
                    return self._after_fold(worker, outcome, peak)
                break
            rss = worker.rss()
            if rss is None or not worker.alive():
                break
            peak = max(peak, rss)
            if limit is not None and rss > limit:
                worker.process.kill()
                worker.process.join()
                self._worker = None
                return self._lost(
                    job,
                    worker,
                    OutcomeKind.OOM,
                    peak,
                    f"the worker reached {format_bytes(rss)}, above max_worker_memory "
                    f"({format_bytes(limit)}); it was stopped by gridcv's memory guard",
                )
        worker.process.join(5)
        self._worker = None
        return self._lost(job, worker, OutcomeKind.KILLED, peak, self._death(worker))

    def _after_fold(self, worker: _Worker, outcome: FoldOutcome, sampled_peak: int) -> FoldOutcome:
        peak = max(outcome.peak_rss or 0, sampled_peak) or None
        outcome = replace(outcome, peak_rss=peak)
        rss = worker.rss() or 0
        limit = self.max_worker_memory
        too_big = limit is not None and rss > limit
        too_old = self.execution.folds_per_worker is not None and worker.folds >= self.execution.folds_per_worker
        if too_big or too_old:
            worker.stop()
            self._worker = None
        return outcome

    @staticmethod
    def _death(worker: _Worker) -> str:
        code = worker.process.exitcode
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            why = " (most likely the kernel's out-of-memory killer)" if -code == signal.SIGKILL else ""
            return f"the worker was killed by {name}{why}"
        return f"the worker exited with code {code}"

    def _lost(self, job: FoldJob, worker: _Worker, kind: OutcomeKind, peak: int, why: str) -> FoldOutcome:
        code = worker.process.exitcode
        if kind is OutcomeKind.KILLED and code is not None and code not in (-signal.SIGKILL,):
            kind = OutcomeKind.ERROR  # a crash (segfault, abort) is not an OOM
        worker.conn.close()
        return FoldOutcome(
            task_id=job.task.task_id,
            kind=kind,
            batch_size=job.batch_size,
            accumulation_steps=job.accumulation_steps,
            message=f"{why}; it had reached {format_bytes(peak)} resident",
            peak_rss=peak or None,
            worker_id=worker.id,
            worker_folds=worker.folds,
        )

    def request_stop(self) -> None:
        if self._worker is not None and self._worker.alive():
            os.kill(self._worker.pid, STOP_SIGNAL)

    def close(self) -> None:
        for worker in (self._worker, self._standby):
            if worker is not None:
                worker.stop()
        self._worker = self._standby = None
