"""One run of an experiment, in the parent process: no Keras, no pandas.

The package itself is callable: ``gridcv.run("experiment.yaml", ...)`` is
:func:`gridcv.run.api.run`. (``gridcv.run`` names this package as soon as
any of its modules is imported, so the function is the package's ``__call__``
rather than a second object under the same name.)

- :mod:`~gridcv.run.api`: ``gridcv.run(...)`` for notebooks and scripts.
- :mod:`~gridcv.run.runner`: the loop over tasks (folds, then the refit).
- :mod:`~gridcv.run.jobs`: what each attempt trains on, monitors and is scored on.
- :mod:`~gridcv.run.policy`: the retry and out-of-memory policy (pure).
- :mod:`~gridcv.run.refit`: which candidate to refit, and its ``best_model.json``.
- :mod:`~gridcv.run.checks`: checks before anything is written.
- :mod:`~gridcv.run.status` and :mod:`~gridcv.run.progress`: what a run shows.

Names are imported on first use (PEP 562), so ``gridcv status`` imports
:mod:`~gridcv.run.status` without the runner.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import types
from typing import TYPE_CHECKING, Any

from gridcv.run.api import run

if TYPE_CHECKING:
    from gridcv.run.runner import RunOptions, RunSummary, run_experiment

_LAZY = {"RunOptions": "gridcv.run.runner", "RunSummary": "gridcv.run.runner", "run_experiment": "gridcv.run.runner"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gridcv.run' has no attribute {name!r}")


class _CallablePackage(types.ModuleType):
    """This package's type: calling it calls :func:`~gridcv.run.api.run`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return run(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
__signature__ = inspect.signature(run)  # what help() and notebooks show for gridcv.run(...)

__all__ = ["RunOptions", "RunSummary", "run", "run_experiment"]
