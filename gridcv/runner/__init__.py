"""One run of an experiment, in the parent process: no Keras, no pandas.

- :mod:`~gridcv.runner.api`: ``gridcv.run(...)`` for notebooks and scripts.
- :mod:`~gridcv.runner.runner`: a run from start to end: checks, the store, the folds, the refit.
- :mod:`~gridcv.runner.loop`: the executor's slots driven from one loop; the parent alone writes the store.
- :mod:`~gridcv.runner.jobs`: what each attempt trains on, monitors and is scored on.
- :mod:`~gridcv.runner.policy`: the retry and out-of-memory policy (pure).
- :mod:`~gridcv.runner.refit`: which candidate to refit, and its ``best_model.json``.
- :mod:`~gridcv.runner.checks` and :mod:`~gridcv.runner.changes`: checks before anything is
  written, and what a folder makes of a changed experiment.
- :mod:`~gridcv.runner.status` and :mod:`~gridcv.runner.progress`: what a run shows.

Names are imported on first use (PEP 562), so ``gridcv status`` imports
:mod:`~gridcv.runner.status` without the runner.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gridcv.lazy import lazy_names

if TYPE_CHECKING:
    from gridcv.runner.api import run
    from gridcv.runner.runner import RunOptions, RunSummary, run_experiment

_LAZY = {
    "RunOptions": "gridcv.runner.runner",
    "RunSummary": "gridcv.runner.runner",
    "run_experiment": "gridcv.runner.runner",
    "run": "gridcv.runner.api",
}


__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals())


__all__ = ["RunOptions", "RunSummary", "run", "run_experiment"]
