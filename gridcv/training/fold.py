"""Training and scoring one fold (or the refit): prepare, fit, score.

Runs inside a worker process (or inline, for debugging). It raises on
failure; the caller (:mod:`gridcv.execution.worker`) turns exceptions into
outcomes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import keras
import numpy as np

from gridcv.data.python import PythonSource
from gridcv.data.sources import Source, open_source
from gridcv.execution.memory import peak_rss, reset_peak_rss
from gridcv.execution.messages import EpochEnded, FoldJob, FoldOutcome, OutcomeKind
from gridcv.store.checkpoints import TrainingState
from gridcv.training.batches import EpochCursor, IndexBatches, training_batches, validation_batches
from gridcv.training.building import build_model, release_memory
from gridcv.training.callbacks import BestModelCheckpoint, make_callbacks, monitor_of
from gridcv.training.checkpointing import EpochCheckpoint, restore_training_state
from gridcv.training.compiling import accumulation_of
from gridcv.training.devices import gpu_peak_memory, reset_gpu_peak_memory
from gridcv.training.history import history_summary
from gridcv.training.outputs import OutputLayout, output_layout, static_output_shapes
from gridcv.training.saving import save_model_atomic
from gridcv.training.scoring import score_samples
from gridcv.training.user_data import FeedCursor, UserFeed, UserPipelines, steps_of


@dataclass
class PreparedFold:
    """A fold ready to train: its data, its model (restored from the newest checkpoint), what the
    model's outputs mean, and callbacks. With ``data: kind: python``, ``pipelines`` is the user's
    factory, which makes ``train`` and ``monitor`` and the batches scored."""

    source: Source
    model: keras.Model
    layout: OutputLayout
    train: IndexBatches | UserFeed
    monitor: Any
    callbacks: list[keras.callbacks.Callback]
    restored: TrainingState
    pipelines: UserPipelines | None = None


def run_fold(
    job: FoldJob,
    worker_id: str = "inline",
    worker_folds: int = 1,
    should_stop: Callable[[], bool] = lambda: False,
    on_epoch: Callable[[EpochEnded], None] | None = None,
) -> FoldOutcome:
    """Trains and scores one fold, resuming from its last checkpoint if it has one.

    Args:
        job: The fold to run.
        worker_id: Id of the worker running it, recorded with the outcome.
        worker_folds: How many folds this worker has run, this one included.
        should_stop: Polled after each epoch's checkpoint; True stops training and
            returns an INTERRUPTED outcome (the fold resumes from that checkpoint).
        on_epoch: Told of each epoch once its checkpoint is saved.

    Returns:
        A DONE outcome with scores and timings, or INTERRUPTED.

    Raises:
        BuilderError, DataError: User errors that every fold would hit.
        Exception: Whatever training raised; the caller classifies it.
    """
    reset_peak_rss()
    reset_gpu_peak_memory()
    keras.utils.set_random_seed(job.task.seed)
    # Workers run many folds: the policy is set for this fold and reset after it.
    keras.mixed_precision.set_dtype_policy(job.training.precision)
    try:
        fold = prepare(job)
        final = fit(job, fold, should_stop, on_epoch)
        trained = FoldOutcome(
            task_id=job.task.task_id,
            kind=OutcomeKind.INTERRUPTED,
            fit_time=final.fit_time,
            epochs_run=final.epoch,
            batch_size=job.batch_size,
            accumulation_steps=accumulation_of(fold.model),
            history=final.history,
            worker_id=worker_id,
            worker_folds=worker_folds,
            resumed_from_epoch=fold.restored.epoch,
            info=fold_info(job, final, fold),
        )
        if final.epoch < job.epochs and not final.extra.get("stopped_early"):
            return replace(trained, peak_rss=peak_rss(), message=f"stopped on request after epoch {final.epoch}")
        return score(job, fold, trained)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
        release_memory()


def prepare(job: FoldJob) -> PreparedFold:
    """Opens the data, builds the model (and works out its output layout, refusing one that cannot be
    scored before training), restores the newest checkpoint, makes the callbacks."""
    source = open_source(job.data.spec, job.data.base_dir, job.data.where, job.data.task)
    pipelines = UserPipelines(job, source) if isinstance(source, PythonSource) else None
    if pipelines is not None:
        source = pipelines.source  # knows its input shape now
    model, culprit = build_model(job, source)
    shapes = static_output_shapes(model, source.input_shape)
    onehot = pipelines is not None and pipelines.onehot
    layout = output_layout(model, source.task, source.n_classes, source.input_shape, shapes, culprit, onehot)
    # What callbacks monitor: the indices the parent chose (see gridcv.runner.jobs).
    train: IndexBatches | UserFeed
    if pipelines is not None:
        train = pipelines.training_feed()
        monitor = pipelines.validation(job.monitor_idx) if len(job.monitor_idx) else None
    else:
        data = job.data.spec
        train = training_batches(source, data, job.params, job.fit_idx, job.batch_size, job.task.seed, job.shuffle)
        monitor = validation_batches(source, data, job.monitor_idx, job.batch_size) if len(job.monitor_idx) else None
    callbacks = make_callbacks(job, monitored=monitor is not None)
    restored = restore_training_state(model, job.checkpoint_dir)
    return PreparedFold(source, model, layout, train, monitor, callbacks, restored, pipelines)


def fit(
    job: FoldJob,
    fold: PreparedFold,
    should_stop: Callable[[], bool],
    on_epoch: Callable[[EpochEnded], None] | None = None,
) -> TrainingState:
    """Trains from the restored epoch to the last, checkpointing every epoch; returns the final state."""
    state = fold.restored

    def saved(now: TrainingState, logs: dict[str, float]) -> None:
        if on_epoch is not None:
            on_epoch(EpochEnded(job.task.task_id, now.epoch, job.epochs, logs, state.epoch))

    checkpoint = EpochCheckpoint(job.checkpoint_dir, state, should_stop, fold.callbacks, saved)
    last = state.epoch if state.extra.get("stopped_early") else job.epochs
    first = min(state.epoch, last)
    cursor = FeedCursor(fold.train) if isinstance(fold.train, UserFeed) else EpochCursor(fold.train)
    # fit runs even with no epoch left, so that callbacks' on_train_end runs on a
    # finished, resumed fold too (EarlyStopping's restore_best_weights).
    fold.model.fit(
        fold.train.feed(first, last),
        steps_per_epoch=steps_of(fold.train),
        epochs=last,
        initial_epoch=first,
        validation_data=fold.monitor,
        verbose=0,
        # The generator orders its own batches from (seed, epoch); fit's own shuffle
        # would use Python's global random, whose state no checkpoint can see.
        shuffle=False,
        # EpochCheckpoint comes last: it saves the state the others left after each epoch.
        callbacks=[cursor, *fold.callbacks, checkpoint],
    )
    return checkpoint.state


def score(job: FoldJob, fold: PreparedFold, trained: FoldOutcome) -> FoldOutcome:
    """Saves the model if asked (refit), scores the test samples and the train-score sample."""
    opts = job.training
    if opts.save_model_to is not None:
        save_model_atomic(fold.model, opts.save_model_to)
    start = time.perf_counter()
    scores: dict[str, float] = {}

    def scores_of(indices: np.ndarray) -> dict[str, float]:
        if fold.pipelines is not None:
            return fold.pipelines.score(fold.model, indices, job.scorers, fold.layout)
        return score_samples(fold.model, fold.source, indices, job.scorers, job.batch_size, fold.layout)

    if len(job.test_idx):
        scores = scores_of(job.test_idx)
    info = dict(trained.info)
    if opts.train_score_idx is not None:
        info["train_scores"] = scores_of(opts.train_score_idx)
    info["gpu_peak_memory"] = gpu_peak_memory()
    score_time = time.perf_counter() - start
    return replace(trained, kind=OutcomeKind.DONE, scores=scores, score_time=score_time, peak_rss=peak_rss(), info=info)


def fold_info(job: FoldJob, state: TrainingState, fold: PreparedFold) -> dict[str, Any]:
    """What the fold reports besides scores: precision, effective batch, best and stopped epochs."""
    monitor, mode = monitor_of(fold.callbacks)
    stopped = state.epoch if state.extra.get("stopped_early") and state.epoch < job.epochs else None
    model_paths = [cb.path for cb in fold.callbacks if isinstance(cb, BestModelCheckpoint) and cb.path]
    return {
        "precision": keras.mixed_precision.dtype_policy().name,
        "effective_batch_size": job.batch_size * accumulation_of(fold.model),
        "stopped_epoch": stopped,
        "model_path": str(model_paths[0]) if model_paths else None,
        **history_summary(state.history, monitor, mode),
    }
