"""The worker's side of the pipe: the entry point of a worker process.

Runs in the worker (and, for ``isolation: inline``, in-process). This is the
one place outside :mod:`gridcv.training` that reaches training code, and it
does so inside functions: importing this module imports no Keras.

A worker imports TensorFlow once, then runs fold after fold sent by the
parent through a pipe, and always answers with a :class:`FoldOutcome`:
exceptions are caught and classified here, so only death needs the parent's
diagnosis. It dies with its parent (``PR_SET_PDEATHSIG``), ignores Ctrl-C
(the parent decides), and stops after the current batch, with a checkpoint
there, when the parent sends SIGUSR1.
"""

from __future__ import annotations

import ctypes
import gc
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import Any

from gridcv.errors import BuilderError, DataError, UserError
from gridcv.execution.messages import EpochEnded, FoldJob, FoldOutcome, OutcomeKind
from gridcv.execution.placement import WorkerSetup, device_of, host_name
from gridcv.store.failures import explain, os_problem

STOP_SIGNAL = signal.SIGUSR1
# Modules the fork server imports once for every worker it forks (see gridcv.training.preload).
PRELOAD = ("gridcv.training.preload",)
_FATAL_TYPES: dict[str, type[UserError]] = {"BuilderError": BuilderError, "DataError": DataError}
_stop_requested = threading.Event()


def stop_requested() -> bool:
    """Whether the parent asked this worker to stop after the current batch (with a checkpoint)."""
    return _stop_requested.is_set()


def request_stop() -> None:
    """Asks the fold in flight in this process to stop after its next checkpoint."""
    _stop_requested.set()


def clear_stop_request() -> None:
    """Forgets an earlier stop request (an inline run starting in the same process)."""
    _stop_requested.clear()


def is_out_of_memory(exc: BaseException) -> bool:
    """MemoryError or TensorFlow's ResourceExhaustedError (matched by name: no TF import)."""
    return any(cls.__name__ in {"MemoryError", "ResourceExhaustedError"} for cls in type(exc).__mro__)


def disk_problem(exc: BaseException, job: FoldJob) -> str | None:
    """The message for a full, read-only or failing disk (every fold would hit it), or None."""
    problem = os_problem(exc)
    if problem is None:
        return None
    assert isinstance(exc, OSError)
    folder = job.training.results_dir or job.checkpoint_dir
    detail = f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return explain(problem, folder, f"fold {job.task.task_id} saved its checkpoint or model", detail)


def attempt_fold(
    job: FoldJob, worker_id: str, worker_folds: int, on_epoch: Callable[[EpochEnded], None] | None = None
) -> FoldOutcome:
    """Runs one fold and turns whatever happens into an outcome; never raises.

    ``on_epoch`` is called after each epoch's checkpoint (the worker sends it to the parent).
    """
    from gridcv.training.fold import run_fold

    failed = FoldOutcome(
        task_id=job.task.task_id,
        kind=OutcomeKind.ERROR,
        batch_size=job.batch_size,
        accumulation_steps=job.accumulation_steps,
        worker_id=worker_id,
        worker_folds=worker_folds,
    )
    try:
        return run_fold(job, worker_id, worker_folds, should_stop=stop_requested, on_epoch=on_epoch)
    except (BuilderError, DataError) as exc:
        return replace(failed, kind=OutcomeKind.FATAL, message=str(exc), error=traceback.format_exc())
    except BaseException as exc:
        if isinstance(exc, (KeyboardInterrupt, SystemExit)) and not stop_requested():
            raise
        disk = disk_problem(exc, job)
        if disk is not None:
            return replace(failed, kind=OutcomeKind.FATAL, message=disk, error=traceback.format_exc())
        kind = OutcomeKind.OOM if is_out_of_memory(exc) else OutcomeKind.ERROR
        return replace(failed, kind=kind, message=one_line(exc), error=traceback.format_exc())


def one_line(exc: BaseException) -> str:
    """``Type: first line`` of an exception, for tables. TensorFlow's graph errors start with
    ``Graph execution error:``; for an allocation that failed, the line that says so is taken instead."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    oom = [line for line in lines if line.startswith("OOM when allocating")]
    return f"{type(exc).__name__}: {(oom or lines or [''])[0]}".strip()[:500]


def attempt_check(job: FoldJob) -> tuple[str, Any]:
    """Runs the up-front check of one candidate; the reply the parent reads with :func:`read_check_reply`.

    ``("checked", None)``: the model checks out; ``("checked", why)``: the builder
    raised for these parameters (left to the folds); ``("fatal", (type, message,
    traceback))``: a mistake every fold would hit.
    """
    from gridcv.training.checking import check_builder

    try:
        return ("checked", check_builder(job))
    except (BuilderError, DataError) as exc:
        return ("fatal", (type(exc).__name__, str(exc), traceback.format_exc()))


def read_check_reply(tag: str, payload: Any) -> bool:
    """Whether a candidate's model checked out (False: its builder raised for its parameters).

    A worker that died while building proves nothing about the builder (it may
    have run out of memory); the folds will meet the same fate and record it.

    Raises:
        BuilderError, DataError: The check found a mistake every fold would hit.
    """
    if tag == "fatal":
        kind, message, _tb = payload
        raise _FATAL_TYPES.get(kind, BuilderError)(message)
    return not (tag == "checked" and payload is not None)


def die_with_parent(runner_pid: int) -> None:
    """Makes sure this process does not outlive the runner.

    On Linux the kernel sends SIGKILL when the parent dies (``prctl``): the runner, or the fork
    server that forked this worker for it, which exits with the runner. A watchdog thread covers
    other systems and the race where either died before the ``prctl`` call.
    """
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        except OSError:
            pass

    def orphaned() -> bool:
        if os.getppid() != parent:
            return True
        try:
            os.kill(runner_pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
        return False

    def watch() -> None:
        while True:
            if orphaned():
                os._exit(1)
            time.sleep(1.0)

    if orphaned():
        os._exit(1)
    threading.Thread(target=watch, daemon=True, name="gridcv-parent-watch").start()


def prefer_me_when_out_of_memory() -> None:
    """Asks the kernel's OOM killer to pick this worker, not the runner, if memory runs out."""
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
    except OSError:
        pass


def redirect_stderr(path: str | None) -> None:
    """Sends this process's stderr (TensorFlow's C++ logs, crash reports) to a log file."""
    if path is None:
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 2)
    os.close(fd)


def worker_main(
    conn: Connection,
    parent_pid: int,
    worker_id: str,
    deterministic: bool,
    log_path: str | None,
    setup: WorkerSetup | None = None,
    environment: dict[str, str] | None = None,
) -> None:
    """Entry point of a worker process: set up, then serve fold jobs until told to stop.

    ``environment`` is the runner's when it started this worker (a forked worker would otherwise
    have the fork server's, from when that started). ``setup`` says its device
    (``CUDA_VISIBLE_DEVICES``, put in its environment before TensorFlow initialises CUDA, which
    reads it once: the fork server imports TensorFlow but never starts its runtime), its threads
    and its GPU memory cap. Its "ready" message says what it received.
    """
    setup = setup or WorkerSetup()
    redirect_stderr(log_path)
    die_with_parent(parent_pid)
    if environment is not None:
        os.environ.clear()
        os.environ.update(environment)
    os.environ.update(dict(setup.environ))
    prefer_me_when_out_of_memory()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(STOP_SIGNAL, lambda *_: request_stop())
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from gridcv.training.devices import configure_device, configure_threads, enable_determinism, op_threads

    configure_threads(setup.threads)
    configure_device(setup.gpu_memory_limit)
    enable_determinism(deterministic)
    device, host = device_of(os.environ, setup.device), host_name()
    received = {k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER")}
    ready = {"pid": os.getpid(), "device": device, "host": host, "threads": op_threads(), **received}
    # TensorFlow's import leaves ~350,000 objects that live as long as the worker; a full
    # collection after every fold would walk them all (0.2 s a fold). Frozen, they are skipped,
    # and so is what each fold leaves alive (frozen after the fold's own collection).
    gc.collect()
    gc.freeze()
    conn.send(("ready", ready))
    folds = 0
    while True:
        try:
            kind, payload = conn.recv()
        except EOFError:
            return
        reply: Any
        if kind == "stop":
            return
        if kind == "log":
            redirect_stderr(payload)
            conn.send(("logging", payload))
            continue
        if kind == "check":
            reply = attempt_check(payload)
        elif kind == "fold":
            folds += 1
            outcome = attempt_fold(payload, worker_id, folds, lambda e: conn.send(("epoch", e)))
            clear_stop_request()  # it stopped this fold; a worker kept warm for a Dask task serves the next run
            reply = ("outcome", replace(outcome, device=device, host=host))
            gc.freeze()
        else:
            reply = ("error", f"unknown message {kind!r}")
        conn.send(reply)
