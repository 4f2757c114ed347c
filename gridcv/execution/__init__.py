"""Where folds run: executors, worker processes and their devices, the Dask backend, memory
sampling, and the messages that cross.

The parent side of the process boundary. :mod:`gridcv.execution.worker` is
the worker's entry point; it reaches :mod:`gridcv.training` only inside its
functions, so importing this package imports no Keras (nor Dask, which only
the ``backend: dask`` executor imports).
"""

from gridcv.execution.executor import Executor, InlineExecutor, make_executor
from gridcv.execution.messages import DataRef, FoldJob, FoldOutcome, OutcomeKind, TrainingOptions

__all__ = [
    "DataRef",
    "Executor",
    "FoldJob",
    "FoldOutcome",
    "InlineExecutor",
    "OutcomeKind",
    "TrainingOptions",
    "make_executor",
]
