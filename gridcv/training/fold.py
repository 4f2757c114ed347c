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
from gridcv.training.batches import IndexBatches, training_batches, validation_batches
from gridcv.training.building import build_model, release_memory
from gridcv.training.callbacks import BestModelCheckpoint, make_callbacks, monitor_of, without_state
from gridcv.training.checkpointing import FoldCheckpoints, Restored, restore_training_state
from gridcv.training.compiling import accumulation_of
from gridcv.training.devices import gpu_peak_memory, reset_gpu_peak_memory
from gridcv.training.fitting import Position, train
from gridcv.training.history import history_summary
from gridcv.training.outputs import OutputLayout, output_layout, static_output_shapes
from gridcv.training.saving import save_model_atomic
from gridcv.training.scoring import score_samples
from gridcv.training.timing import Phases
from gridcv.training.user_data import UserPipelines
from gridcv.training.user_feeds import UserFeed, fit_user_feed


@dataclass
class PreparedFold:
    """A fold ready to train: its data, its model (restored from the newest checkpoint), what the
    model's outputs mean, callbacks, and notes for the user (an unusable checkpoint passed over, a
    callback whose state a resume loses). With ``data: kind: python``, ``pipelines`` is the user's
    factory, which makes ``train`` and ``monitor`` and the batches scored."""

    source: Source
    model: keras.Model
    layout: OutputLayout
    train: IndexBatches | UserFeed
    monitor: Any
    callbacks: list[keras.callbacks.Callback]
    restored: Restored
    notes: tuple[str, ...] = ()
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
        should_stop: Polled after each batch; True saves a checkpoint there, stops training
            and returns an INTERRUPTED outcome (the fold resumes from that checkpoint).
        on_epoch: Told of each epoch once its checkpoint is saved.

    Returns:
        A DONE outcome with scores and timings, or INTERRUPTED.

    Raises:
        BuilderError, DataError: User errors that every fold would hit.
        Exception: Whatever training raised; the caller classifies it.
    """
    phases = Phases()
    reset_peak_rss()
    reset_gpu_peak_memory()
    keras.utils.set_random_seed(job.task.seed)
    # Workers run many folds: the policy is set for this fold and reset after it.
    keras.mixed_precision.set_dtype_policy(job.training.precision)
    try:
        outcome = _train_and_score(job, worker_id, worker_folds, should_stop, on_epoch, phases)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
        phases.lap("score" if "fit" in phases.seconds else "prepare")
        release_memory()
        phases.lap("release")
    return replace(outcome, info={**outcome.info, "timings": phases.rounded()})


def _train_and_score(
    job: FoldJob,
    worker_id: str,
    worker_folds: int,
    should_stop: Callable[[], bool],
    on_epoch: Callable[[EpochEnded], None] | None,
    phases: Phases,
) -> FoldOutcome:
    fold = prepare(job, phases)
    final = fit(job, fold, should_stop, on_epoch, phases)
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
        resumed_from_epoch=fold.restored.state.epoch,
        info=fold_info(job, final, fold),
    )
    if final.epoch < job.epochs and not final.extra.get("stopped_early"):
        where = f"after epoch {final.epoch}"
        if final.batch:
            where = f"in epoch {final.epoch + 1} after batch {final.batch}"
        return replace(trained, peak_rss=peak_rss(), message=f"stopped on request {where}")
    return score(job, fold, trained)


def prepare(job: FoldJob, phases: Phases | None = None) -> PreparedFold:
    """Opens the data, builds the model (and works out its output layout, refusing one that cannot be
    scored before training), restores the newest checkpoint, makes the callbacks."""
    phases = phases or Phases()
    phases.lap("start")
    source = open_source(job.data.spec, job.data.base_dir, job.data.where, job.data.task, cache=job.data.cache)
    pipelines = UserPipelines(job, source) if isinstance(source, PythonSource) else None
    if pipelines is not None:
        source = pipelines.source  # knows its input shape now
    phases.lap("data")
    model, culprit = build_model(job, source)
    shapes = static_output_shapes(model, source.input_shape)
    onehot = pipelines is not None and pipelines.onehot
    layout = output_layout(model, source.task, source.n_classes, source.input_shape, shapes, culprit, onehot)
    phases.lap("build")
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
    phases.lap("batches")
    skipped: list[str] = []
    batches = train if isinstance(train, IndexBatches) else None  # a user pipeline resumes at epoch ends only
    restored = restore_training_state(model, job.checkpoint_dir, batches, skipped)
    phases.lap("restore")
    notes = resume_notes(skipped, restored.state.epoch, restored.state.batch, without_state(callbacks))
    return PreparedFold(source, model, layout, train, monitor, callbacks, restored, notes, pipelines)


def resume_notes(skipped: list[str], epoch: int, batch: int, stateless: list[str]) -> tuple[str, ...]:
    """What the user must hear of this attempt: checkpoints passed over (damaged, or refused as written
    inside an epoch a feed cannot enter, or for other metrics), callbacks a resume resets."""
    notes = []
    if skipped:
        within = f", batch {batch}" if batch else ""
        resumed = f"resumed from epoch {epoch}{within}" if epoch or batch else "started again from epoch 0"
        notes.append(f"unusable checkpoint passed over: {'; '.join(skipped)}; {resumed}")
    if stateless:
        notes.append(
            f"callback {', '.join(stateless)} has no get_state()/set_state(): what it keeps between epochs is lost "
            "when a fold resumes from a checkpoint (define both for exact resumes; see the README)"
        )
    return tuple(notes)


def fit(
    job: FoldJob,
    fold: PreparedFold,
    should_stop: Callable[[], bool],
    on_epoch: Callable[[EpochEnded], None] | None = None,
    phases: Phases | None = None,
) -> TrainingState:
    """Trains from the restored position to the last epoch, checkpointing; returns the final state.

    ``phases`` gets ``fit`` (training, as ``fit_time`` counts it), ``checkpoints`` (writing them) and
    ``fit_other`` (the rest: the loop's set-up and end, callbacks' ``on_train_end``)."""
    state = fold.restored.state

    def saved(now: TrainingState, logs: dict[str, float]) -> None:
        if on_epoch is not None:
            on_epoch(EpochEnded(job.task.task_id, now.epoch, job.epochs, logs, state.epoch, fold.notes))

    # gridcv's own batches can be entered inside an epoch; a user's pipeline only at an epoch's start.
    every = job.training.checkpoint_every if isinstance(fold.train, IndexBatches) else None
    checkpoints = FoldCheckpoints(
        fold.model, job.checkpoint_dir, fold.restored, every, should_stop, fold.callbacks, saved
    )
    last = state.epoch if state.extra.get("stopped_early") else job.epochs
    start = Position(state.epoch, state.batch) if state.epoch < last else Position(last)
    # The loop runs even with no epoch left, so that callbacks' on_train_end runs on a
    # finished, resumed fold too (EarlyStopping's restore_best_weights).
    if isinstance(fold.train, UserFeed):
        fit_user_feed(fold.model, fold.train, fold.monitor, fold.callbacks, start.epoch, last, checkpoints)
    else:
        train(fold.model, fold.train, fold.monitor, fold.callbacks, start, last, checkpoints)
    if phases is not None:
        phases.lap("fit_other")
        trained = checkpoints.state.fit_time - state.fit_time
        phases.add("fit_other", -trained - checkpoints.saving_time)
        phases.add("fit", trained)
        phases.add("checkpoints", checkpoints.saving_time)
    return checkpoints.state


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
        "resumed_from_batch": fold.restored.state.batch,
        **history_summary(state.history, monitor, mode),
        **({"notes": list(fold.notes)} if fold.notes else {}),
    }
