"""``gridcv.run(...)``: run or resume an experiment from Python, as ``gridcv run`` does from a shell.

Light on purpose: what a run needs is imported when it is called.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gridcv.config import Experiment
    from gridcv.runner.progress import Reporter
    from gridcv.search import SearchResults

# The keyword arguments of run() other than execution: keys, as the command line names them.
OPTIONS = ("output", "restart", "retry_failed", "debug", "quiet", "reporter")


def run(
    experiment: str | Path | Mapping[str, Any] | Experiment,
    *,
    output: str | Path | None = None,
    restart: bool = False,
    retry_failed: bool = False,
    debug: bool = False,
    quiet: bool = False,
    reporter: Reporter | None = None,
    **execution: Any,
) -> SearchResults:
    """Runs (or resumes) an experiment and returns its results, like ``gridcv run``.

    Args:
        experiment: The experiment file, or the same structure as a dict. A dict's
            relative paths (data, model builder) are taken from the current
            directory, and its results folder gets an ``experiment.yaml`` written from it.
        output: The results folder (``--output``; default: ``output:``, else ``results/<name>``).
        restart: Move existing results that do not match aside and start again (``--restart``).
        retry_failed: Run failed folds again (``--retry-failed``).
        debug: Workers write their logs here instead of ``<results>/logs`` (``--debug``).
        quiet: Show nothing (``--quiet``). Otherwise a live bar on a terminal, and one
            line per fold elsewhere: a notebook, a log file.
        reporter: Receives the run's events instead (a :class:`~gridcv.runner.progress.Reporter`).
        **execution: ``execution:`` keys, which win over the experiment's as command-line
            options do: ``isolation="inline"``, ``max_worker_memory="4GiB"``, ...

    Returns:
        The results folder as a :class:`~gridcv.search.SearchResults`: ``cv_results_``,
        ``best_params_``, ``best_score_``, ``best_estimator_``, ...

    Raises:
        UserError: Bad input (existing results are not touched), as on the command line.
        RunInterrupted: Interrupted (the kernel's stop button, Ctrl-C); run it again to resume.
        RunStopped: ``on_oom: stop`` ended the run, or the refit failed.
        AllFoldsFailed: Every fold failed.
    """
    from gridcv.config import ExecutionSpec, Experiment, experiment_from_dict
    from gridcv.errors import ConfigError, did_you_mean
    from gridcv.runner.progress import make_reporter
    from gridcv.runner.runner import RunOptions, run_experiment
    from gridcv.search import load_search

    unknown = [k for k in execution if k not in ExecutionSpec.model_fields]
    if unknown:
        hint = did_you_mean(unknown[0], [*OPTIONS, *ExecutionSpec.model_fields], aside=True)
        raise ConfigError(
            f"gridcv.run() got an unknown keyword argument {unknown[0]!r}{hint}. "
            f"It takes {', '.join(OPTIONS)} and the execution: keys ({', '.join(ExecutionSpec.model_fields)})."
        )
    if isinstance(experiment, Mapping):
        experiment = experiment_from_dict(experiment, output=output)
    elif not isinstance(experiment, (str, Path, Experiment)):
        raise ConfigError(
            f"gridcv.run() takes an experiment file or a dict, got {type(experiment).__name__}: "
            "give the path of the YAML file, or the same structure as a dict."
        )
    overrides = {k: v for k, v in execution.items() if v is not None}
    options = RunOptions(output=output, restart=restart, retry_failed=retry_failed, execution=overrides, debug=debug)
    summary = run_experiment(experiment, options, reporter or make_reporter(quiet))
    return load_search(summary.folder)
