"""What the fork server imports once, so that every worker forked from it starts warm.

Workers are forked from a server process (``multiprocessing``'s ``forkserver``) that has
imported TensorFlow, Keras and gridcv's training code but never run an operation, so a new
worker is ready in tens of milliseconds instead of the seconds an import takes (a worker is
replaced every ``folds_per_worker`` folds). Why forking it is safe, and what is checked, is in
:mod:`gridcv.training.forking`: the check runs once the imports are done (a hazard makes this
server exit, and the runner spawns workers instead) and again right before every fork, recorded
in :data:`AT_FORK`, which each worker inherits. TensorFlow's start-up notes go nowhere: each
worker sends its own stderr to its log file, and a failed import here is retried, and reported,
by the worker. The server dies with the runner, and exits at once when told to (its workers die with it):
finalizing an interpreter that imported TensorFlow can take seconds.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import sys

from gridcv.faults import crash_point


def _die_with_runner() -> None:
    """The kernel kills this server when the runner (its parent) dies, even in the middle of the
    imports below, which take seconds; a fork clears this for the workers (they set their own)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass
    if os.getppid() == 1:  # the runner died before prctl
        os._exit(1)


_die_with_runner()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_stderr = os.dup(2)
_devnull = os.open(os.devnull, os.O_WRONLY)
os.dup2(_devnull, 2)
try:
    import gridcv.training.checking
    import gridcv.training.fold  # noqa: F401  (TensorFlow, Keras, scikit-learn's scorers)
finally:
    os.dup2(_stderr, 2)
    os.close(_stderr)
    os.close(_devnull)

from gridcv.training.forking import ForkState, blas_pool_threads, fork_state  # noqa: E402

crash_point("fork-server", group=False)
_SERVER = os.getpid()
_BLAS = blas_pool_threads()
AT_FORK: ForkState | None = None  # the server's state right before it forked this process

_hazards = fork_state(_BLAS).hazards()
if _hazards:
    print(f"gridcv: workers are not forked ({'; '.join(_hazards)}); they are spawned instead", file=sys.stderr)
    raise SystemExit(3)  # not an ImportError, which multiprocessing would ignore: the server exits


def _record() -> None:
    global AT_FORK
    if os.getpid() == _SERVER:  # not in workers, which inherit this hook
        AT_FORK = fork_state(_BLAS)


os.register_at_fork(before=_record)
atexit.register(os._exit, 0)  # the server's workers leave through os._exit and never run this
