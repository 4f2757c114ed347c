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
- :func:`compare`: which candidates really differ from the best (paired statistics on the folds).
- :func:`load_history`: the per-epoch metrics of every fold.
- :func:`write_report`: the HTML report of a results folder (``gridcv report``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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
from gridcv.lazy import lazy_names

if TYPE_CHECKING:
    from gridcv.best_model import BestModelInfo, load_best_model, load_best_model_info
    from gridcv.config import Experiment, experiment_from_dict, load_experiment
    from gridcv.report import compare, load_history, write_report
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
    "compare": "gridcv.report.tables",
    "load_history": "gridcv.report.tables",
    "write_report": "gridcv.report.build",
}


__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals())


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
    "compare",
    "experiment_from_dict",
    "load_attempts",
    "load_best_model",
    "load_best_model_info",
    "load_experiment",
    "load_folds",
    "load_history",
    "load_results",
    "load_search",
    "run",
    "run_experiment",
    "write_report",
]
