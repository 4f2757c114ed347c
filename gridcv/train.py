"""Training and scoring one fold: the only module that imports Keras.

It runs inside a worker process (or inline, for debugging). It raises on
failure; the caller (``gridcv.worker``) turns exceptions into outcomes.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from gridcv.checkpoint import TrainingState, newest_usable, save_checkpoint
from gridcv.data.batches import EpochCursor, IndexBatches, fold_batches
from gridcv.data.sources import Source, import_function, open_source
from gridcv.errors import BuilderError, DataError
from gridcv.jobs import FoldJob, FoldOutcome, OutcomeKind
from gridcv.memory import peak_rss, reset_peak_rss
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
    """Calls the user's builder and checks it returned a compiled Keras model.

    Raises:
        BuilderError: The builder is missing or returned something unusable.
    """
    where = job.data.where
    builder = load_builder(job.model_ref, job.base_dir, where)
    model = builder(dict(job.params), source.input_shape, source.n_classes)
    if not isinstance(model, keras.Model):
        raise BuilderError(
            f"{where}: key 'model': {job.model_ref} returned {type(model).__name__}, not a keras.Model. "
            "The builder must return a compiled model: build(params, input_shape, n_classes)."
        )
    if not getattr(model, "compiled", False) or model.optimizer is None:
        raise BuilderError(
            f"{where}: key 'model': {job.model_ref} returned a model that is not compiled. Call "
            "model.compile(optimizer=..., loss=...) in the builder before returning it."
        )
    if job.accumulation_steps > 1:
        _set_gradient_accumulation(model, job.accumulation_steps)
    return model


def _set_gradient_accumulation(model: keras.Model, steps: int) -> None:
    """Recompiles with an optimizer that accumulates gradients over ``steps`` batches.

    Used by OOM retries: half the batch, twice the accumulation, same effective
    batch size.
    """
    config = model.optimizer.get_config()
    config["gradient_accumulation_steps"] = steps
    optimizer = model.optimizer.__class__.from_config(config)
    model.compile(
        optimizer=optimizer,
        loss=model.loss,
        metrics=_compiled_metrics(model),
        jit_compile=False,
    )


def _compiled_metrics(model: keras.Model) -> Any:
    compile_config = model.get_compile_config() or {}
    return compile_config.get("metrics")


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
    keras.utils.set_random_seed(job.task.seed)
    try:
        source = open_source(job.data.spec, job.data.base_dir, job.data.where)
        model = build_model(job, source)
        train, val = fold_batches(
            source, job.data.spec, job.params, job.train_idx, job.test_idx, job.batch_size, job.task.seed, job.shuffle
        )
        state = restore_training_state(model, job.checkpoint_dir)
        checkpoint = EpochCheckpoint(job.checkpoint_dir, state, should_stop)
        if state.epoch < job.epochs:
            model.fit(
                train.feed(state.epoch, job.epochs),
                steps_per_epoch=len(train),
                epochs=job.epochs,
                initial_epoch=state.epoch,
                verbose=0,
                # The generator orders its own batches from (seed, epoch); fit's own shuffle
                # would use Python's global random, whose state no checkpoint can see.
                shuffle=False,
                callbacks=[EpochCursor(train), checkpoint],
            )
        base = {
            "task_id": job.task.task_id,
            "fit_time": checkpoint.state.fit_time,
            "epochs_run": checkpoint.state.epoch,
            "batch_size": job.batch_size,
            "accumulation_steps": job.accumulation_steps,
            "history": checkpoint.state.history,
            "worker_id": worker_id,
            "worker_folds": worker_folds,
            "resumed_from_epoch": state.epoch,
        }
        if checkpoint.state.epoch < job.epochs:
            return FoldOutcome(
                kind=OutcomeKind.INTERRUPTED,
                peak_rss=peak_rss(),
                message=f"stopped on request after epoch {checkpoint.state.epoch}",
                **base,
            )
        start = time.perf_counter()
        if source.task == "segmentation":
            scores = segmentation_scores(job.scorers, pixel_confusion(model, val, source.n_classes))
        else:
            raw = model.predict(val.feed(), verbose=0)
            probabilities = as_class_probabilities(raw, source.n_classes)
            scores = score_fold(job.scorers, source.labels()[job.test_idx], probabilities, source.n_classes)
        score_time = time.perf_counter() - start
        return FoldOutcome(kind=OutcomeKind.DONE, scores=scores, score_time=score_time, peak_rss=peak_rss(), **base)
    finally:
        release_memory()


def pixel_confusion(model: keras.Model, batches: IndexBatches, n_classes: int) -> np.ndarray:
    """Accumulates a per-pixel confusion matrix batch by batch (O(batch) memory)."""
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    for index in range(len(batches)):
        x, masks = batches.load(0, index)[:2]
        predicted = np.asarray(model.predict_on_batch(x)).argmax(axis=-1)
        confusion += confusion_matrix(masks, predicted, n_classes)
    return confusion


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
    """Records history and saves the whole training state at the end of every epoch."""

    def __init__(self, folder: Path, state: TrainingState, should_stop: Callable[[], bool]) -> None:
        super().__init__()
        self.folder = folder
        self.state = TrainingState(
            state.epoch, {k: list(v) for k, v in state.history.items()}, state.fit_time, dict(state.extra)
        )
        self.should_stop = should_stop
        self._epoch_start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        for key, value in (logs or {}).items():
            self.state.history.setdefault(key, []).append(float(value))
        self.state.epoch = epoch + 1
        self.state.fit_time += time.perf_counter() - self._epoch_start
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
    be imported, or that returns something other than a compiled model. A
    builder that raises for these parameters is left to the fold, which
    records the failure (as scikit-learn does with ``error_score``).

    Raises:
        BuilderError: The builder cannot be imported or returns an unusable model.
        DataError: The data cannot be opened.
    """
    try:
        source = open_source(job.data.spec, job.data.base_dir, job.data.where)
        build_model(job, source)
    except (BuilderError, DataError):
        raise
    except Exception:
        pass
    finally:
        release_memory()


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
