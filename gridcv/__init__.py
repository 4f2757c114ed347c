"""gridcv: crash-safe, memory-safe grid-search cross-validation of Keras models.

Importing gridcv imports neither TensorFlow (training happens in worker
processes) nor pandas, scikit-learn or SciPy: each public name is imported
when it is first used (PEP 562), so ``gridcv status`` and ``gridcv results``
start in a fraction of a second.

- :func:`run` (``gridcv.run(...)``): run or resume an experiment from a file or a dict; returns
  a :class:`SearchResults`.
- :func:`load_search`: a results folder as a :class:`SearchResults` (``cv_results_``,
  ``best_params_``, ``best_estimator_``, ... as scikit-learn names them).
- :func:`load_results`, :func:`load_folds`, :func:`load_attempts`: pandas DataFrames.
- :func:`load_best_model`, :func:`load_best_model_info`: the refit model and what it expects.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gridcv.errors import (
    AllFoldsFailed,
    BuilderError,
    ConfigError,
    DataError,
    ExperimentChangedError,
    GridcvError,
    NotAvailableError,
    ResultsError,
    ResultsLockedError,
    RunInterrupted,
    RunStopped,
    StoreError,
    UserError,
)

if TYPE_CHECKING:
    from gridcv.best_model import BestModelInfo, load_best_model, load_best_model_info
    from gridcv.config import Experiment, experiment_from_dict, load_experiment
    from gridcv.results import load_attempts, load_folds, load_results
    from gridcv.runner import RunOptions, RunSummary, run_experiment
    from gridcv.runner.api import run
    from gridcv.search import SearchResults, load_search

__version__ = "0.1.0"

# Public name -> the module that defines it, imported on first use.
_LAZY = {
    "Experiment": "gridcv.config",
    "experiment_from_dict": "gridcv.config",
    "load_experiment": "gridcv.config",
    "load_attempts": "gridcv.results",
    "load_folds": "gridcv.results",
    "load_results": "gridcv.results",
    "RunOptions": "gridcv.runner",
    "RunSummary": "gridcv.runner",
    "run_experiment": "gridcv.runner",
    "run": "gridcv.runner.api",
    "BestModelInfo": "gridcv.best_model",
    "load_best_model": "gridcv.best_model",
    "load_best_model_info": "gridcv.best_model",
    "SearchResults": "gridcv.search",
    "load_search": "gridcv.search",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'gridcv' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "AllFoldsFailed",
    "BestModelInfo",
    "BuilderError",
    "ConfigError",
    "DataError",
    "Experiment",
    "ExperimentChangedError",
    "GridcvError",
    "NotAvailableError",
    "ResultsError",
    "ResultsLockedError",
    "RunInterrupted",
    "RunOptions",
    "RunStopped",
    "RunSummary",
    "SearchResults",
    "StoreError",
    "UserError",
    "experiment_from_dict",
    "load_attempts",
    "load_best_model",
    "load_best_model_info",
    "load_experiment",
    "load_folds",
    "load_results",
    "load_search",
    "run",
    "run_experiment",
]
