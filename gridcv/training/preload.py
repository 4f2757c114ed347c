"""What the fork server imports once, so that every worker forked from it starts warm.

Workers are forked from a server process (``multiprocessing``'s ``forkserver``) that has
imported TensorFlow, Keras and gridcv's training code but never run an operation: importing
creates no TensorFlow thread, so forking then is safe, and a new worker is ready in tens of
milliseconds instead of the seconds an import takes (a worker is replaced every
``folds_per_worker`` folds). TensorFlow's start-up notes go nowhere: each worker sends its own
stderr to its log file, and a failed import here is retried, and reported, by the worker.
The server exits at once when the runner does (its workers die with it): finalizing an
interpreter that imported TensorFlow can take seconds.
"""

from __future__ import annotations

import atexit
import os

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

atexit.register(os._exit, 0)  # the server's workers leave through os._exit and never run this
