"""Values that cross the process boundary between the runner and a worker.

Frozen values of plain data and validated config sections: a
:class:`FoldJob` goes to a worker, a :class:`FoldOutcome` comes back,
whatever happened (a worker always reports back; a worker that cannot,
because it died, is reported for by the parent).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gridcv.config.data import DataSpec
from gridcv.config.training import CallbackSpec, CheckpointInterval, CompileSpec
from gridcv.plan import FoldTask
from gridcv.refs import Ref


class OutcomeKind(enum.StrEnum):
    """How one attempt at a fold ended."""

    DONE = "done"  # trained and scored
    ERROR = "error"  # the fold raised: a failure of this fold only
    OOM = "oom"  # out of memory: ResourceExhaustedError, MemoryError or the memory guard
    KILLED = "killed"  # the worker died by a signal (the kernel's OOM killer, most likely)
    INTERRUPTED = "interrupted"  # stopped by the user after a checkpoint; to be resumed
    FATAL = "fatal"  # a user error (bad builder, bad data, a full disk) that every fold would hit
    ABANDONED = "abandoned"  # never reported: the run ended while the attempt was training (set by the store)
    LOST = "lost"  # the Dask worker running it was lost (KilledWorker, a closed connection): sent again

    def is_out_of_memory(self) -> bool:
        """Whether the attempt ran out of memory (a death by SIGKILL counts: the OOM killer's signal)."""
        return self in (OutcomeKind.OOM, OutcomeKind.KILLED)


@dataclass(frozen=True)
class DataRef:
    """Where a worker finds the data: the validated ``data:`` section and its folder.

    ``where`` names the experiment file in error messages; ``task`` is the task the
    parent declared or inferred (None: infer it again from the data); ``cache`` is the
    decoded-image cache (``data.cache``), read once the runner has built it.
    """

    spec: DataSpec
    base_dir: Path
    where: str = "experiment file"
    cache: Path | None = None
    task: str | None = None


@dataclass(frozen=True)
class TrainingOptions:
    """How a fold is trained beyond the plan: compiling, callbacks, precision, extra scoring.

    Attributes:
        compile: The ``compile:`` section (used when the builder returns an
            uncompiled model); grid keys with the same names override it.
        callbacks: ``fit.callbacks`` entries, validated.
        precision: Keras dtype policy of the fold (``float32``, ``mixed_float16``, ...).
        accumulation_explicit: Whether the grid or ``compile:`` set
            ``gradient_accumulation_steps`` (then the job's value replaces the
            builder's own; otherwise it multiplies it).
        train_score_idx: Training samples to score (``return_train_score``); None not to.
        results_dir: The results folder (fold models and TensorBoard logs go there).
        save_model_to: Save the trained model here (refit); None for folds.
        checkpoint_every: Checkpoints within an epoch (``fit.checkpoint_every``); None: at
            epoch ends only.
    """

    compile: CompileSpec = field(default_factory=CompileSpec)
    callbacks: tuple[CallbackSpec, ...] = ()
    precision: str = "float32"
    accumulation_explicit: bool = False
    train_score_idx: np.ndarray | None = None
    results_dir: Path | None = None
    save_model_to: Path | None = None
    checkpoint_every: CheckpointInterval | None = None


@dataclass(frozen=True)
class FoldJob:
    """Everything a worker needs to train and score one fold.

    Attributes:
        task: The fold task from the plan.
        fit_idx: Indices of the samples ``fit`` trains on.
        monitor_idx: Indices of the samples callbacks monitor (``validation_data``);
            empty when nothing is monitored.
        test_idx: Indices of the samples the fold is scored on (empty for the refit).
        data: Where the data lives.
        model: The builder's reference.
        base_dir: Folder of the experiment file (for relative builder paths).
        params: The full parameter combination handed to the builder (fit defaults
            overridden by grid keys).
        epochs: Epochs to train.
        batch_size: Batch size of this attempt (halved on OOM retries).
        accumulation_steps: Gradient accumulation steps of this attempt (doubled on
            OOM retries so the effective batch size stays the same).
        shuffle: Shuffle training batches every epoch.
        scorers: scikit-learn scorer names.
        deterministic: Enable TensorFlow op determinism.
        checkpoint_dir: Folder for this fold's epoch checkpoints.
        attempt: 1 for the first attempt.
        training: Compile, callback, precision and scoring options.
    """

    task: FoldTask
    fit_idx: np.ndarray
    monitor_idx: np.ndarray
    test_idx: np.ndarray
    data: DataRef
    model: Ref
    base_dir: Path
    params: dict[str, Any]
    epochs: int
    batch_size: int
    accumulation_steps: int
    shuffle: bool
    scorers: tuple[str, ...]
    deterministic: bool
    checkpoint_dir: Path
    attempt: int = 1
    training: TrainingOptions = field(default_factory=TrainingOptions)


@dataclass(frozen=True)
class FoldOutcome:
    """The result of one attempt at a fold, successful or not.

    Attributes:
        task_id: The fold task.
        kind: How the attempt ended.
        scores: Scorer name -> validation score (empty unless ``kind`` is DONE).
        fit_time: Seconds spent in ``fit``.
        score_time: Seconds spent predicting and scoring the validation fold.
        epochs_run: Epochs completed (including ones restored from a checkpoint).
        batch_size: Batch size this attempt ran with.
        accumulation_steps: Gradient accumulation steps this attempt ran with.
        history: Keras history, metric -> per-epoch values.
        message: One line saying what went wrong, for tables.
        error: Full traceback text, when there is one.
        peak_rss: Peak resident memory of the process that ran the fold, in bytes.
        worker_id: Which worker ran it (``inline`` without worker processes).
        worker_folds: How many folds that worker had run, this one included.
        resumed_from_epoch: Epochs restored from a checkpoint instead of trained.
        device: What it trained on, as the worker saw it (``cpu``, ``GPU 0``).
        host: The machine it ran on.
        info: What else the fold reports: ``precision``, ``effective_batch_size``,
            ``best_epoch`` and ``stopped_epoch`` (1-based), ``monitor``,
            ``history_best`` (best value of each Keras metric), ``train_scores``,
            ``model_path``, ``notes`` (as :attr:`EpochEnded.notes`); the runner adds
            ``n_fit_samples``, ``n_monitored_samples`` and ``monitored`` (see
            :func:`gridcv.runner.jobs.monitoring_info`) and ``batch_lowered_by`` (see
            :meth:`gridcv.runner.policy.Shape.info`).
    """

    task_id: str
    kind: OutcomeKind
    scores: dict[str, float] = field(default_factory=dict)
    fit_time: float | None = None
    score_time: float | None = None
    epochs_run: int | None = None
    batch_size: int | None = None
    accumulation_steps: int | None = None
    history: dict[str, list[float]] = field(default_factory=dict)
    message: str | None = None
    error: str | None = None
    peak_rss: int | None = None
    worker_id: str | None = None
    worker_folds: int | None = None
    resumed_from_epoch: int = 0
    info: dict[str, Any] = field(default_factory=dict)
    device: str | None = None
    host: str | None = None


@dataclass(frozen=True)
class Placement:
    """Where an attempt started on a slot runs, as far as the executor knows before it reports.

    Attributes:
        slot: The slot's name (``GPU 0``, ``cpu 1/2``, ``dask tcp://10.0.0.5:40123``).
        device: ``cpu`` or ``GPU <entry>``; None until the worker says (Dask).
        host: The machine; None until the worker says (Dask).
    """

    slot: str
    device: str | None = None
    host: str | None = None


@dataclass(frozen=True)
class EpochEnded:
    """A fold finished an epoch and its checkpoint is on disk (sent by the worker as it trains).

    Attributes:
        task_id: The fold task.
        epoch: Epochs completed, this one included (1-based).
        epochs: Epochs the fold trains for.
        logs: Keras's logs of the epoch (loss, metrics, ``val_`` metrics).
        resumed_from: Epochs restored from a checkpoint when this attempt started.
        notes: What the user must hear of this attempt, once (an unusable checkpoint
            passed over, a callback whose state a resume loses).
    """

    task_id: str
    epoch: int
    epochs: int
    logs: dict[str, float] = field(default_factory=dict)
    resumed_from: int = 0
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Progress:
    """An executor's event: the fold on ``slot`` finished an epoch."""

    slot: int
    epoch: EpochEnded


@dataclass(frozen=True)
class Finished:
    """An executor's event: the attempt on ``slot`` ended, whatever happened; the slot is free again."""

    slot: int
    outcome: FoldOutcome


Event = Progress | Finished
