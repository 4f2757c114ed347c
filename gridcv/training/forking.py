"""Whether the fork server may fork: its threads and TensorFlow's runtime, right before a fork.

``fork()`` copies only the calling thread. Had another thread held a lock (the allocator's, a
logging mutex, a thread pool's queue), the child would wait on it forever; had TensorFlow
initialised its runtime (the eager context: thread pools, devices), the child would hold a copy
whose threads are gone. The fork server (:mod:`gridcv.training.preload`) is safe to fork because,
measured right before each fork:

- no Python thread runs but the main one (importing TensorFlow, Keras and scikit-learn starts none);
- TensorFlow's eager context does not exist: importing creates none; the first operation would,
  and the server runs none (each worker creates its own, after ``configure_device``);
- the only other native threads are OpenBLAS's idle pools (numpy's and SciPy's, one thread per
  core beyond the first each), and OpenBLAS's own ``pthread_atfork`` handler stops them before
  the fork (the server has one thread after its first fork: ``tests/test_fork_server.py``).

Anything else found (a thread a future TensorFlow starts at import, say) makes the server refuse
to serve, and workers are spawned instead (:mod:`gridcv.execution.processes`).
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class ForkState:
    """A process's threads and TensorFlow runtime at one moment.

    Attributes:
        python_threads: Names of the Python threads other than the main one.
        native_threads: Threads other than the main one, Python's included (``/proc/self/task``).
        blas_threads: Threads of OpenBLAS's pools, which OpenBLAS stops itself before a fork.
        tensorflow_runtime: Whether TensorFlow's eager context exists.
    """

    python_threads: tuple[str, ...]
    native_threads: int
    blas_threads: int
    tensorflow_runtime: bool

    def hazards(self) -> list[str]:
        """What would make a fork of this process unsafe; empty when it is safe."""
        found = []
        if self.python_threads:
            found.append(f"Python threads run ({', '.join(self.python_threads)})")
        unknown = self.native_threads - len(self.python_threads) - self.blas_threads
        if unknown > 0:
            found.append(f"{unknown} native thread(s) run besides OpenBLAS's pools")
        if self.tensorflow_runtime:
            found.append("TensorFlow's runtime (the eager context) is initialised")
        return found


def blas_pool_threads() -> int:
    """Threads OpenBLAS's pools hold in this process (each has ``num_threads - 1``)."""
    from threadpoolctl import threadpool_info

    return sum(max(0, info["num_threads"] - 1) for info in threadpool_info() if info["internal_api"] == "openblas")


def fork_state(blas_threads: int) -> ForkState:
    """This process's threads and TensorFlow runtime now (``blas_threads``: see :func:`blas_pool_threads`)."""
    main = threading.main_thread()
    python = tuple(t.name for t in threading.enumerate() if t is not main)
    try:
        native = len(os.listdir("/proc/self/task")) - 1
    except OSError:  # no /proc: Python's threads are all that can be counted
        native = len(python)
    context = sys.modules.get("tensorflow.python.eager.context")
    current = None if context is None else context.context_safe()
    runtime = current is not None and getattr(current, "_context_handle", None) is not None
    return ForkState(python, native, blas_threads, runtime)
