"""gridcv: crash-safe, memory-safe grid-search cross-validation of Keras models.

Importing gridcv does not import TensorFlow: training happens in worker processes.
"""

from gridcv.config import Experiment, load_experiment
from gridcv.errors import (
    AllFoldsFailed,
    BuilderError,
    ConfigError,
    DataError,
    ExperimentChangedError,
    GridcvError,
    ResultsError,
    ResultsLockedError,
    RunInterrupted,
    RunStopped,
    StoreError,
    UserError,
)
from gridcv.results import load_attempts, load_best_model, load_folds, load_results
from gridcv.run import RunOptions, RunSummary, run_experiment

__version__ = "0.1.0"

__all__ = [
    "AllFoldsFailed",
    "BuilderError",
    "ConfigError",
    "DataError",
    "Experiment",
    "ExperimentChangedError",
    "GridcvError",
    "ResultsError",
    "ResultsLockedError",
    "RunInterrupted",
    "RunOptions",
    "RunStopped",
    "RunSummary",
    "StoreError",
    "UserError",
    "load_attempts",
    "load_best_model",
    "load_experiment",
    "load_folds",
    "load_results",
    "run_experiment",
]
