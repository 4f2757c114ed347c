"""One run of an experiment, in the parent process: no Keras, no pandas.

- :mod:`~gridcv.run.runner`: the loop over tasks (folds, then the refit).
- :mod:`~gridcv.run.jobs`: what each attempt trains on, monitors and is scored on.
- :mod:`~gridcv.run.policy`: the retry and out-of-memory policy (pure).
- :mod:`~gridcv.run.refit`: which candidate to refit, and its ``best_model.json``.
- :mod:`~gridcv.run.checks`: checks before anything is written.
- :mod:`~gridcv.run.status` and :mod:`~gridcv.run.progress`: what a run shows.
"""

from gridcv.run.runner import RunOptions, RunSummary, run_experiment

__all__ = ["RunOptions", "RunSummary", "run_experiment"]
