"""Checks made before a run writes anything, so bad input never touches existing results."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from gridcv.config import ExecutionSpec, Experiment, ExperimentSpec
from gridcv.config.tasks import DECLARED, check_task, stratifies
from gridcv.data import Source
from gridcv.errors import ConfigError
from gridcv.monitoring import Monitoring
from gridcv.runner.changes import check_compatible
from gridcv.store import ResultStore, RunLock
from gridcv.store.sqlite import holds_results


def execution_spec(experiment: Experiment, overrides: dict[str, Any]) -> ExecutionSpec:
    """The ``execution:`` section with command-line values applied (command line wins)."""
    merged = {**experiment.spec.execution.model_dump(exclude_none=True), **overrides}
    try:
        return ExecutionSpec.model_validate(merged)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        raise ConfigError(
            f"{experiment.where}: execution.{key} (from the file or the command line) is {err['input']!r}: "
            f"{err['msg']}. Fix the value, e.g. --max-worker-memory 4GiB."
        ) from None


def resolve_task(experiment: Experiment, source: Source) -> Experiment:
    """The experiment with its task known: declared, or inferred from the data and checked.

    A declared task was checked when the file was loaded; an inferred one is checked
    here (scorers, splitter, balancing), before anything is written. Every later step
    (jobs, fingerprint) reads the task from the returned experiment's spec.

    Raises:
        ConfigError: A scorer, the splitter or ``balance`` does not fit the inferred task.
    """
    spec = experiment.spec
    if spec.task is None and source.task != "segmentation":
        check_task(experiment.where, spec, source.task, getattr(source, "task_origin", DECLARED), source.n_classes)
    elif spec.task == "regression" and source.n_classes > 1:  # single-target scorers, now that targets are known
        check_task(experiment.where, spec, source.task, DECLARED, source.n_classes)
    return replace(experiment, spec=spec.model_copy(update={"task": source.task}))


def labels_to_split(spec: ExperimentSpec, source: Source) -> np.ndarray:
    """The labels the plan splits by (see :func:`gridcv.plan.split_labels`).

    A segmentation source's per-image labels (each mask's dominant class, unless a CSV
    label column gives them) cost a read of every mask, so they are read only for a
    stratified splitter; otherwise every image gets label 0, as before they existed.
    """
    if source.task == "segmentation" and not stratifies(spec):
        return np.zeros(source.n_samples, dtype=np.int64)
    return source.labels()


def check_folder(folder: Path, experiment: Experiment, restart: bool, grouped: bool) -> Monitoring:
    """Refuses early, without writing, if the folder is busy or holds other results.

    Returns:
        What the folder's folds monitor (see :func:`~gridcv.runner.changes.check_compatible`).
    """
    RunLock(folder).refuse_if_held()
    if holds_results(folder) and not restart:
        # No run holds the folder: read it without creating SQLite's side files, so a
        # refused run leaves the folder exactly as it was (the check is redone under the lock).
        with ResultStore.open(folder, untouched=True) as store:
            return check_compatible(store, experiment, folder, grouped).monitoring
    return Monitoring.of(experiment.spec, grouped)


def move_aside(folder: Path) -> Path | None:
    """Renames a results folder to ``<name>.old-<time>`` (``--restart``); returns the new name."""
    if not folder.exists():
        return None
    RunLock(folder).refuse_if_held()
    aside = folder.with_name(f"{folder.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
    folder.rename(aside)
    return aside
