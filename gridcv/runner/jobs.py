"""Building the job a worker runs, for a fold of the plan and for the refit alike. No Keras.

What a fold trains on, monitors and is scored on is decided here, in the
parent, from the plan and the folder's :class:`~gridcv.monitoring.Monitoring`:
the worker gets index arrays and trains what it is given. The sample choices
(monitoring split, train-score sample) are pure functions of the fold's
indices and seed, so a resumed fold makes the same choices.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gridcv.config import Experiment, ExperimentSpec
from gridcv.data.cache import cache_stem
from gridcv.errors import ConfigError
from gridcv.execution.messages import DataRef, FoldJob, TrainingOptions
from gridcv.monitoring import Monitored, Monitoring
from gridcv.plan import FoldTask, Plan, fold_batch_size, monitoring_split, train_score_sample


@dataclass(frozen=True)
class Assignment:
    """A task with what it trains on: a fold of the plan, or the refit on every sample.

    Attributes:
        task: The task (its id, candidate, parameters and seed).
        train_idx: The samples of its training split.
        test_idx: The samples it is scored on (none for the refit).
        epochs: Epochs to train.
        save_model_to: Where the trained model is saved (the refit's ``best_model.keras``).
    """

    task: FoldTask
    train_idx: np.ndarray
    test_idx: np.ndarray
    epochs: int
    save_model_to: Path | None = None


def fold_assignment(spec: ExperimentSpec, plan: Plan, task: FoldTask) -> Assignment:
    """The assignment of a fold of the plan: its split, and the candidate's epochs."""
    train_idx, test_idx = plan.splits[task.fold]
    return Assignment(task, train_idx, test_idx, candidate_epochs(spec, task.params))


def candidate_epochs(spec: ExperimentSpec, params: Mapping[str, Any]) -> int:
    """A candidate's epochs: its grid value, else ``fit.epochs``."""
    return int(params.get("epochs", spec.fit.epochs))


def requested_accumulation(spec: ExperimentSpec, params: Mapping[str, Any]) -> int | None:
    """``gradient_accumulation_steps`` from the grid, else from ``compile:``, else None."""
    value = params.get(
        "gradient_accumulation_steps", spec.compile.optimizer_kwargs().get("gradient_accumulation_steps")
    )
    return None if value is None else int(value)


def base_batch(spec: ExperimentSpec, params: Mapping[str, Any]) -> int:
    """The batch size a candidate asks for, before any out-of-memory retry."""
    return fold_batch_size(params, spec.fit.batch_size)


def build_job(
    experiment: Experiment,
    plan: Plan,
    work: Assignment,
    folder: Path,
    batch: int,
    accumulation: int,
    attempt: int,
    monitoring: Monitoring,
) -> FoldJob:
    """The job of one attempt at a task.

    Args:
        experiment: The validated experiment.
        plan: The plan (its labels and groups decide monitoring splits).
        work: The task and the samples it trains and is scored on.
        folder: The results folder (checkpoints, models, logs).
        batch: Batch size of this attempt.
        accumulation: Gradient accumulation steps of this attempt.
        attempt: The attempt's number (1 for the first).
        monitoring: What the folder's folds monitor.
    """
    spec, base = experiment.spec, experiment.base_dir
    task = work.task
    fit_idx, monitor_idx = fit_and_monitor(monitoring, plan, work)
    return FoldJob(
        task=task,
        fit_idx=fit_idx,
        monitor_idx=monitor_idx,
        test_idx=work.test_idx,
        data=DataRef(spec.data, base, experiment.where, cache_stem(spec.data, base, folder), spec.task),
        model=experiment.model,
        base_dir=experiment.base_dir,
        params={"epochs": spec.fit.epochs, "batch_size": spec.fit.batch_size, **task.params},
        epochs=work.epochs,
        batch_size=batch,
        accumulation_steps=accumulation,
        shuffle=spec.fit.shuffle,
        scorers=tuple(spec.scorers()),
        deterministic=spec.deterministic,
        checkpoint_dir=folder / "checkpoints" / task.task_id / f"b{batch}x{accumulation}",
        attempt=attempt,
        training=training_options(experiment, folder, work),
    )


def fit_and_monitor(monitoring: Monitoring, plan: Plan, work: Assignment) -> tuple[np.ndarray, np.ndarray]:
    """Indices to train on and to monitor on (empty when nothing is monitored).

    By default callbacks monitor a part held out of the training split (of every
    sample, for the refit); with ``fit.monitor_test_fold`` the fold's test split
    (nothing, for the refit, which has none).
    """
    if monitoring.monitored is Monitored.TRAIN_SPLIT:
        assert monitoring.fraction is not None
        groups = plan.groups if monitoring.by_group else None
        return monitoring_split(work.train_idx, plan.labels, monitoring.fraction, work.task.seed, groups)
    if monitoring.monitored is Monitored.TEST_FOLD:
        return work.train_idx, work.test_idx
    return work.train_idx, work.test_idx[:0]


def check_monitoring(spec: ExperimentSpec, plan: Plan, monitoring: Monitoring, where: str) -> None:
    """Every fold can hold whole groups out of its training split to monitor, when it must.

    Raises:
        ConfigError: A fold's training split holds a single group.
    """
    if monitoring.monitored is not Monitored.TRAIN_SPLIT or not monitoring.by_group or plan.groups is None:
        return
    for fold, (train_idx, _) in enumerate(plan.splits):
        present = np.unique(plan.groups[train_idx])
        if len(present) < 2:
            only = present[0].item()
            raise ConfigError(
                f"{where}: fold {fold}'s training split holds samples of only one group ({only!r}), so no "
                "group can be held out of it for fit.callbacks to monitor (a part of each training split, kept "
                f"apart by group because cv.splitter {spec.cv.splitter} uses groups). Give the data more groups "
                "or lower cv.n_splits, or remove fit.callbacks."
            )


def monitoring_info(job: FoldJob, monitoring: Monitoring) -> dict[str, Any]:
    """What a fold's row records of its samples: how many it trained on and monitored, and which."""
    monitored = len(job.monitor_idx)
    return {
        "n_fit_samples": len(job.fit_idx),
        "n_monitored_samples": monitored,
        "monitored": monitoring.monitored.value if monitored else None,
    }


def training_options(experiment: Experiment, folder: Path, work: Assignment) -> TrainingOptions:
    """How the task is compiled, called back, run in precision and scored beyond its test samples."""
    spec = experiment.spec
    params = work.task.params
    sample = None
    if spec.return_train_score:
        sample = train_score_sample(work.train_idx, spec.train_score_max_samples, work.task.seed)
    return TrainingOptions(
        compile=spec.compile,
        callbacks=tuple(spec.fit.callbacks),
        precision=str(params.get("precision", spec.fit.precision)),
        accumulation_explicit=requested_accumulation(spec, params) is not None,
        train_score_idx=sample,
        results_dir=folder,
        save_model_to=work.save_model_to,
        checkpoint_every=spec.fit.checkpoint_interval(),
    )
