"""Training and scoring one fold: the only module that imports Keras.

It runs inside a worker process (or inline, for debugging). It raises on
failure; the caller (``gridcv.worker``) turns exceptions into outcomes.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import keras
import numpy as np

from gridcv.callbacks import (
    BestModelCheckpoint,
    make_callbacks,
    monitor_of,
    restore_states,
    save_model_atomic,
    states_of,
)
from gridcv.checkpoint import TrainingState, newest_usable, save_checkpoint
from gridcv.compiling import accumulation_of, compile_from_spec, set_gradient_accumulation
from gridcv.data.batches import EpochCursor, IndexBatches, fold_batches
from gridcv.data.sources import Source, import_function, open_source
from gridcv.errors import BuilderError, DataError
from gridcv.jobs import FoldJob, FoldOutcome, OutcomeKind
from gridcv.memory import peak_rss, reset_peak_rss
from gridcv.options import history_summary, monitoring_split, train_score_sample
from gridcv.scoring import as_class_probabilities, confusion_matrix, score_fold, segmentation_scores

_builders: dict[tuple[Any, ...], Any] = {}


def load_builder(model_ref: str, base_dir: Path, where: str) -> Any:
    """Imports the model builder once per process, again if its file changed (notebooks, inline runs)."""
    file = base_dir / model_ref.partition(":")[0]
    stat = file.stat() if file.suffix == ".py" and file.is_file() else None
    key = (model_ref, base_dir, stat and stat.st_mtime_ns, stat and stat.st_size)
    if key not in _builders:
        try:
            _builders[key] = import_function(model_ref, base_dir, "model", where)
        except DataError as exc:
            raise BuilderError(str(exc)) from None
    return _builders[key]


def build_model(job: FoldJob, source: Source) -> keras.Model:
    """Calls the user's builder and makes sure the model is compiled as the job asks.

    An uncompiled model is compiled from ``compile:`` (and the candidate's grid
    keys); a compiled one keeps its optimizer, with the job's gradient
    accumulation applied.

    Raises:
        BuilderError: The builder is missing or returned something unusable.
    """
    where = job.data.where
    builder = load_builder(job.model_ref, job.base_dir, where)
    model = builder(dict(job.params), source.input_shape, source.n_classes)
    if not isinstance(model, keras.Model):
        raise BuilderError(
            f"{where}: key 'model': {job.model_ref} returned {type(model).__name__}, not a keras.Model. "
            "The builder must return a model: build(params, input_shape, n_classes)."
        )
    if not getattr(model, "compiled", False) or model.optimizer is None:
        compile_from_spec(model, job)
        return model
    own = accumulation_of(model)
    steps = job.accumulation_steps if job.training.accumulation_explicit else own * job.accumulation_steps
    if steps != own:
        set_gradient_accumulation(model, steps)
    return model


def run_fold(
    job: FoldJob,
    worker_id: str = "inline",
    worker_folds: int = 1,
    should_stop: Callable[[], bool] = lambda: False,
) -> FoldOutcome:
    """Trains and scores one fold, resuming from its last checkpoint if it has one.

    Args:
        job: The fold to run.
        worker_id: Id of the worker running it, recorded with the outcome.
        worker_folds: How many folds this worker has run, this one included.
        should_stop: Polled after each epoch's checkpoint; True stops training and
            returns an INTERRUPTED outcome (the fold resumes from that checkpoint).

    Returns:
        A DONE outcome with scores and timings, or INTERRUPTED.

    Raises:
        BuilderError, DataError: User errors that every fold would hit.
        Exception: Whatever training raised; the caller classifies it.
    """
    reset_peak_rss()
    reset_gpu_peak_memory()
    keras.utils.set_random_seed(job.task.seed)
    opts = job.training
    # Workers run many folds: the policy is set for this fold and reset after it.
    keras.mixed_precision.set_dtype_policy(opts.precision)
    try:
        source = open_source(job.data.spec, job.data.base_dir, job.data.where)
        model = build_model(job, source)
        fit_idx, monitor_idx = fit_and_monitor_indices(job, source.labels())
        train, val = fold_batches(
            source, job.data.spec, job.params, fit_idx, job.test_idx, job.batch_size, job.task.seed, job.shuffle
        )
        monitor = None  # what callbacks monitor: the fold's validation split, or a held-out part
        if len(monitor_idx):
            monitor = (
                val
                if opts.validation_split_from_train is None
                else fold_batches(
                    source, job.data.spec, job.params, fit_idx, monitor_idx, job.batch_size, job.task.seed, False
                )[1]
            )
        callbacks = make_callbacks(job, monitored=monitor is not None)
        state = restore_training_state(model, job.checkpoint_dir)
        checkpoint = EpochCheckpoint(job.checkpoint_dir, state, should_stop, callbacks)
        last = state.epoch if state.extra.get("stopped_early") else job.epochs
        first = min(state.epoch, last)
        # fit runs even with no epoch left, so that callbacks' on_train_end runs on a
        # finished, resumed fold too (EarlyStopping's restore_best_weights).
        model.fit(
            train.feed(first, last),
            steps_per_epoch=len(train),
            epochs=last,
            initial_epoch=first,
            validation_data=monitor,
            verbose=0,
            # The generator orders its own batches from (seed, epoch); fit's own shuffle
            # would use Python's global random, whose state no checkpoint can see.
            shuffle=False,
            # EpochCheckpoint comes last: it saves the state the others left after each epoch.
            callbacks=[EpochCursor(train), *callbacks, checkpoint],
        )
        final = checkpoint.state
        accumulation = accumulation_of(model)
        info = fold_info(job, final, callbacks, accumulation)
        trained = FoldOutcome(
            task_id=job.task.task_id,
            kind=OutcomeKind.INTERRUPTED,
            fit_time=final.fit_time,
            epochs_run=final.epoch,
            batch_size=job.batch_size,
            accumulation_steps=accumulation,
            history=final.history,
            worker_id=worker_id,
            worker_folds=worker_folds,
            resumed_from_epoch=state.epoch,
            info=info,
        )
        if final.epoch < job.epochs and not final.extra.get("stopped_early"):
            return replace(trained, peak_rss=peak_rss(), message=f"stopped on request after epoch {final.epoch}")
        if opts.save_model_to is not None:
            save_model_atomic(model, opts.save_model_to)
        start = time.perf_counter()
        scores: dict[str, float] = {}
        if len(job.test_idx) and source.task == "segmentation":
            scores = segmentation_scores(job.scorers, pixel_confusion(model, val, source.n_classes))
        elif len(job.test_idx):
            raw = model.predict(val.feed(), verbose=0)
            probabilities = as_class_probabilities(raw, source.n_classes)
            scores = score_fold(job.scorers, source.labels()[job.test_idx], probabilities, source.n_classes)
        if opts.return_train_score:
            sample = train_score_sample(job.train_idx, opts.train_score_max_samples, job.task.seed)
            info["train_scores"] = score_indices(model, source, sample, job)
        info["gpu_peak_memory"] = gpu_peak_memory()
        score_time = time.perf_counter() - start
        return replace(trained, kind=OutcomeKind.DONE, scores=scores, score_time=score_time, peak_rss=peak_rss())
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
        release_memory()


def pixel_confusion(model: keras.Model, batches: IndexBatches, n_classes: int) -> np.ndarray:
    """Accumulates a per-pixel confusion matrix batch by batch (O(batch) memory)."""
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    for index in range(len(batches)):
        x, masks = batches.load(0, index)[:2]
        predicted = np.asarray(model.predict_on_batch(x)).argmax(axis=-1)
        confusion += confusion_matrix(masks, predicted, n_classes)
    return confusion


def fit_and_monitor_indices(job: FoldJob, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices to train on and to monitor on (empty when nothing is monitored).

    Callbacks monitor the fold's validation split, or a part of the training
    split held out when ``validation_split_from_train`` is set.
    """
    opts = job.training
    if opts.validation_split_from_train is not None:
        return monitoring_split(job.train_idx, labels, opts.validation_split_from_train, job.task.seed)
    return job.train_idx, (job.test_idx if opts.validate else job.test_idx[:0])


def score_indices(model: keras.Model, source: Source, indices: np.ndarray, job: FoldJob) -> dict[str, float]:
    """Scores the model with the job's scorers on the samples at ``indices`` (train scores)."""
    if source.task == "segmentation":
        confusion = pixel_confusion(model, IndexBatches(source, indices, job.batch_size), source.n_classes)
        return segmentation_scores(job.scorers, confusion)
    batches = IndexBatches(source, indices, job.batch_size, labels=False)
    probabilities = as_class_probabilities(model.predict(batches.feed(), verbose=0), source.n_classes)
    return score_fold(job.scorers, source.labels()[indices], probabilities, source.n_classes)


def fold_info(
    job: FoldJob, state: TrainingState, callbacks: list[keras.callbacks.Callback], accumulation: int
) -> dict[str, Any]:
    """What the fold reports besides scores: precision, effective batch, best and stopped epochs."""
    monitor, mode = monitor_of(callbacks)
    stopped = state.epoch if state.extra.get("stopped_early") and state.epoch < job.epochs else None
    model_paths = [cb.path for cb in callbacks if isinstance(cb, BestModelCheckpoint) and cb.path]
    return {
        "precision": keras.mixed_precision.dtype_policy().name,
        "effective_batch_size": job.batch_size * accumulation,
        "stopped_epoch": stopped,
        "model_path": str(model_paths[0]) if model_paths else None,
        **history_summary(state.history, monitor, mode),
    }


def training_variables(model: keras.Model) -> list[Any]:
    """Every variable whose value training depends on, in a stable order.

    ``model.variables`` includes non-trainable state such as the seed
    generators of dropout layers; the optimizer's include its iteration count.
    """
    return [*model.variables, *model.optimizer.variables]


def variables_signature(variables: list[Any]) -> list[Any]:
    """Shapes and dtypes, by position: what a checkpoint must match to be restored.

    Not names: Keras derives them from process-wide counters, so the same
    model gets other names in a worker that built models before.
    """
    return [[list(v.shape), str(v.dtype)] for v in variables]


def restore_training_state(model: keras.Model, folder: Path) -> TrainingState:
    """Loads the newest usable checkpoint into ``model``; a fresh state if there is none."""
    model.optimizer.build(model.trainable_variables)  # creates the variables to assign
    variables = training_variables(model)
    found = newest_usable(folder, variables_signature(variables))
    if found is None:
        return TrainingState()
    state, arrays = found
    for variable, value in zip(variables, arrays, strict=True):
        variable.assign(value)
    return state


class EpochCheckpoint(keras.callbacks.Callback):
    """Records history and saves the whole training state at the end of every epoch.

    It must be the last callback: its ``on_train_begin`` restores the other
    callbacks' state after theirs reset it, and its ``on_epoch_end`` saves
    their state after they updated it.
    """

    def __init__(
        self,
        folder: Path,
        state: TrainingState,
        should_stop: Callable[[], bool],
        callbacks: list[keras.callbacks.Callback] | None = None,
    ) -> None:
        super().__init__()
        self.folder = folder
        self.state = TrainingState(
            state.epoch,
            {k: list(v) for k, v in state.history.items()},
            state.fit_time,
            dict(state.extra),
            dict(state.arrays),
        )
        self.should_stop = should_stop
        self.callbacks = list(callbacks or [])
        self._epoch_start = 0.0

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        restore_states(self.callbacks, self.state.extra.get("callbacks", {}), self.state.arrays)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        for key, value in (logs or {}).items():
            self.state.history.setdefault(key, []).append(float(value))
        self.state.epoch = epoch + 1
        self.state.fit_time += time.perf_counter() - self._epoch_start
        if self.model.stop_training:  # set by an earlier callback (EarlyStopping): training is over
            self.state.extra["stopped_early"] = True
        self.state.extra["callbacks"], self.state.arrays = states_of(self.callbacks)
        variables = training_variables(self.model)
        arrays = [np.asarray(keras.ops.convert_to_numpy(v)) for v in variables]
        save_checkpoint(self.folder, self.state, arrays, variables_signature(variables))
        if self.should_stop():
            self.model.stop_training = True


def release_memory() -> None:
    """What can be freed in-process between folds: Keras's graph and Python garbage."""
    keras.backend.clear_session()
    gc.collect()


def check_builder(job: FoldJob) -> None:
    """Builds the first candidate's model once, so a broken builder fails before any fold.

    Only what would break every fold is an error here: a builder that cannot
    be imported or returns something other than a model, or a ``compile:``
    section with a name Keras does not know. A
    builder that raises for these parameters is left to the fold, which
    records the failure (as scikit-learn does with ``error_score``).

    Raises:
        BuilderError: The builder cannot be imported or returns an unusable model.
        DataError: The data cannot be opened.
    """
    keras.mixed_precision.set_dtype_policy(job.training.precision)
    try:
        source = open_source(job.data.spec, job.data.base_dir, job.data.where)
        build_model(job, source)
        make_callbacks(job, monitored=True)
    except (BuilderError, DataError):
        raise
    except Exception:
        pass
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
        release_memory()


def _gpus() -> list[str]:
    import tensorflow as tf

    return [f"GPU:{i}" for i in range(len(tf.config.list_logical_devices("GPU")))]


def reset_gpu_peak_memory() -> None:
    """Starts a fold's GPU peak-memory count (nothing to do without a GPU)."""
    import tensorflow as tf

    for name in _gpus():
        tf.config.experimental.reset_memory_stats(name)


def gpu_peak_memory() -> int | None:
    """Peak GPU memory of this fold in bytes (the largest over the GPUs), or None without a GPU."""
    import tensorflow as tf

    names = _gpus()
    return max(int(tf.config.experimental.get_memory_info(n)["peak"]) for n in names) if names else None


def configure_device() -> None:
    """Per-worker TensorFlow set-up: GPU memory growth, so one worker does not take the card."""
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised
            pass


def enable_determinism(enabled: bool) -> None:
    """TensorFlow op determinism, for bit-exact resumes (``deterministic: true``)."""
    if enabled:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
