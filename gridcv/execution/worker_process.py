"""One worker process: started (forked from the fork server, or spawned), the pipe to it, its
memory, its end.

:class:`~gridcv.execution.processes.WorkerSlot` owns one at a time and replaces it; a Dask task
starts its own with :func:`start_worker`. The process runs
:func:`gridcv.execution.worker.worker_main`.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from gridcv.errors import WorkerStartError
from gridcv.execution.memory import memory_over, rss_of
from gridcv.execution.placement import WorkerSetup
from gridcv.execution.worker import PRELOAD

POLL_SECONDS = 0.2


def worker_context(method: str = "forkserver") -> Any:
    """How workers are started: by default forked from a server that imported TensorFlow once (see
    :mod:`gridcv.training.preload`, and :mod:`gridcv.training.forking` for why that fork is safe), so
    replacing a worker costs a fork, not an import; ``"spawn"`` when that server cannot start.

    Not forked from the runner: it holds threads and, after a worker died, would copy nothing
    useful; not spawned by default: each would import TensorFlow again (seconds of CPU taken from
    training).
    """
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload(list(PRELOAD))
    return ctx


class WorkerProcess:
    """One live worker process and the pipe to it."""

    def __init__(
        self, worker_id: str, deterministic: bool, log_path: Path | None, setup: WorkerSetup, method: str
    ) -> None:
        """Starts the worker (``method``: see :func:`worker_context`) set up by ``setup``.

        Raises:
            OSError, EOFError: The fork server died before it forked the worker.
        """
        from gridcv.execution.worker import worker_main

        ctx = worker_context(method)
        self.id = worker_id
        self.conn, child = ctx.Pipe()
        log = None if log_path is None else str(log_path)
        self.process: BaseProcess = ctx.Process(
            target=worker_main,
            args=(child, os.getpid(), worker_id, deterministic, log, setup, dict(os.environ)),
            name=f"gridcv-{worker_id}",
            daemon=True,
        )
        try:
            self.process.start()
        finally:
            child.close()
        self.folds = 0
        self.ready = False
        self.received: dict[str, Any] = {}  # what the worker says it was set up with (device, environment)
        self.log_path = log_path

    def wait_ready(self) -> None:
        """Waits until the worker has imported TensorFlow and asks for work."""
        if self.ready:
            return
        tag, received = self.receive(timeout=None)
        if tag != "ready":
            raise self.start_error()
        self.ready, self.received = True, received

    def start_error(self) -> WorkerStartError:
        """The error of a worker that died before it was ready."""
        where = f"; see {self.log_path}" if self.log_path else ""
        return WorkerStartError(
            f"a gridcv worker process could not start (exit code {self.process.exitcode}){where}. Check that "
            "TensorFlow imports in this environment: python -c 'import tensorflow'."
        )

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process.is_alive()

    def rss(self) -> int | None:
        return rss_of(self.pid)

    def memory_over(self, limit: int, rss: int) -> int | None:
        """What the worker holds when above ``limit``, given its resident total ``rss`` just read (see
        :func:`gridcv.execution.memory.memory_over`)."""
        return memory_over(self.pid, limit, rss)

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


def start_worker(worker_id: str, deterministic: bool, log_path: Path | None, setup: WorkerSetup) -> WorkerProcess:
    """Starts a spawned worker process set up by ``setup`` (its device, its threads).

    For a Dask task: spawned, not forked from a fork server, which would be one more process per
    Dask worker that Dask's nanny does not know of and does not stop.
    """
    return WorkerProcess(worker_id, deterministic, log_path, setup, "spawn")


def death_of(worker: WorkerProcess) -> str:
    """Why a worker ended: the signal that killed it (SIGKILL: most likely the OOM killer), or its exit code."""
    code = worker.process.exitcode
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        why = " (most likely the kernel's out-of-memory killer)" if -code == signal.SIGKILL else ""
        return f"the worker was killed by {name}{why}"
    return f"the worker exited with code {code}"
