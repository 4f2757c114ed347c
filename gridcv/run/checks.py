"""Checks made before a run writes anything, so bad input never touches existing results."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gridcv.config import ExecutionSpec, Experiment
from gridcv.config.experiment import fit_fingerprint
from gridcv.errors import ConfigError, ExperimentChangedError
from gridcv.monitoring import META_KEY, Monitoring
from gridcv.store import ResultStore, RunLock
from gridcv.store.database import holds_results


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


def check_folder(folder: Path, experiment: Experiment, restart: bool, grouped: bool) -> Monitoring:
    """Refuses early, without writing, if the folder is busy or holds other results.

    Returns:
        What the folder's folds monitor (see :func:`check_compatible`).
    """
    RunLock(folder).refuse_if_held()
    if holds_results(folder) and not restart:
        # No run holds the folder: read it without creating SQLite's side files, so a
        # refused run leaves the folder exactly as it was (the check is redone under the lock).
        with ResultStore.open(folder, untouched=True) as store:
            return check_compatible(store, experiment, folder, grouped)
    return Monitoring.of(experiment.spec, grouped)


def check_compatible(store: ResultStore, experiment: Experiment, folder: Path, grouped: bool) -> Monitoring:
    """The folder's finished folds were computed with the same settings as this experiment.

    A folder keeps what its folds monitor (its record, or as it was started
    before records); writing that choice out in the file (``monitor_test_fold:
    true`` in a folder that monitors the test fold) is no change.

    Args:
        store: The folder's store.
        experiment: The experiment to run in it.
        folder: The results folder (for messages).
        grouped: Whether the splitter uses groups.

    Returns:
        What the folder's folds monitor.

    Raises:
        ExperimentChangedError: A section that changes results differs.
    """
    old = store.get_meta("fingerprint")
    monitoring = Monitoring.of_folder(store.get_meta(META_KEY), old is not None, experiment.spec, grouped)
    if old is None:
        return monitoring
    new = experiment.fingerprint()
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if changed == ["fit"] and _monitoring_spelled_out(old["fit"], experiment, monitoring, grouped):
        changed = []
    if changed:
        raise ExperimentChangedError(
            f"{experiment.where}: the experiment changed since {folder} was started: {', '.join(changed)} "
            "differ (only adding grid values is compatible). The finished folds were computed "
            "with the old settings, so they are not mixed with new ones. Pass --restart to move "
            "the old results aside (they are kept) and start again, or --output DIR to write to "
            "another folder."
        )
    return monitoring


def _monitoring_spelled_out(old_fit: str, experiment: Experiment, monitoring: Monitoring, grouped: bool) -> bool:
    """Whether ``fit:`` differs only in how it names the samples the folder monitors anyway."""
    if not Monitoring.of(experiment.spec, grouped).same_samples(monitoring):
        return False
    fit = experiment.spec.fit
    spellings = [{}, {"validation_split_from_train": monitoring.fraction}]
    return any(
        fit_fingerprint(fit.model_copy(update={"validation_split_from_train": None, "monitor_test_fold": False, **s}))
        == old_fit
        for s in spellings
    )


def move_aside(folder: Path) -> Path | None:
    """Renames a results folder to ``<name>.old-<time>`` (``--restart``); returns the new name."""
    if not folder.exists():
        return None
    RunLock(folder).refuse_if_held()
    aside = folder.with_name(f"{folder.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
    folder.rename(aside)
    return aside
