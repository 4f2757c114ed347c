"""The up-front check: the first candidate's model on one real batch, before any fold trains.

A mistake that every fold would hit (a builder written for other arguments,
an output that does not fit the task, a loss that does not fit the labels, a
``compile:`` section or a callback Keras refuses) is a :class:`BuilderError`
here, so the run stops before anything is written. A builder that raises for
one candidate's parameters is not such a mistake: as scikit-learn's
``error_score``, it is left to that candidate's folds, and the next
candidate is checked instead.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import keras
import numpy as np

from gridcv.data.python import FACTORY_CALL, PythonSource
from gridcv.data.sources import Source, open_source
from gridcv.errors import BuilderError, DataError, UserError
from gridcv.execution.messages import FoldJob
from gridcv.execution.worker import is_out_of_memory
from gridcv.training.batches import training_batches
from gridcv.training.building import call_builder, compile_as_asked, release_memory
from gridcv.training.callbacks import make_callbacks
from gridcv.training.compiling import first_sentence
from gridcv.training.outputs import Culprit, loss_info, output_layout, shape_text
from gridcv.training.user_data import UserPipelines, first_batch

# Samples of the first fold's training split the check runs the model on.
CHECK_SAMPLES = 4
_T = TypeVar("_T")


def check_builder(job: FoldJob) -> str | None:
    """Builds the job's model and runs it on one real batch: forward pass, output layout, loss, metrics.

    Nothing is trained: the forward pass runs in inference mode and the loss
    and metrics are computed, not minimised, on a model that is then dropped.

    Args:
        job: The first fold of a candidate.

    Returns:
        None when the model checks out (or the check proves nothing: out of
        memory); otherwise why the builder failed for these parameters, which
        is left to the candidate's folds.

    Raises:
        BuilderError: A mistake every fold would hit, in one paragraph.
        DataError: The data cannot be opened or read.
    """
    keras.mixed_precision.set_dtype_policy(job.training.precision)
    try:
        source = open_source(job.data.spec, job.data.base_dir, job.data.where, job.data.task, cache=job.data.cache)
        pipelines = _user_pipelines(job, source)
        if pipelines is not None:
            source = pipelines.source
        try:
            model = call_builder(job, source)
        except UserError:
            raise
        except Exception as exc:
            return None if is_out_of_memory(exc) else f"{type(exc).__name__}: {first_sentence(exc)}"
        culprit = compile_as_asked(model, job)
        make_callbacks(job, monitored=True)
        check_on_batch(job, source, model, culprit, pipelines)
        if pipelines is not None and len(job.test_idx):
            _factory_step(pipelines.who, "validation", lambda: pipelines.check_validation(job.test_idx[:CHECK_SAMPLES]))
        return None
    except Exception as exc:
        if is_out_of_memory(exc):
            return None  # proves nothing about the model or the data: the folds retry with smaller batches
        raise
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
        release_memory()


def _user_pipelines(job: FoldJob, source: Source) -> UserPipelines | None:
    """The user's factory (``data: kind: python``), checked: its signature, what it returns; else None."""
    if not isinstance(source, PythonSource):
        return None
    who = f"{job.data.where}: key 'data.factory': {source.spec.factory}"
    return _factory_step(who, "training", lambda: UserPipelines(job, source))


def _factory_step(who: str, part: str, step: Callable[[], _T]) -> _T:
    """Runs a step that calls the user's factory; what it raises (but gridcv's own errors) is a DataError."""
    try:
        return step()
    except UserError:
        raise
    except Exception as exc:
        if is_out_of_memory(exc):
            raise
        raise DataError(
            f"{who} raised {type(exc).__name__} while making {part} batches: {first_sentence(exc)} gridcv calls it "
            f"as {FACTORY_CALL} and trains on what it returns."
        ) from None


def check_on_batch(
    job: FoldJob, source: Source, model: keras.Model, culprit: Culprit, pipelines: UserPipelines | None = None
) -> None:
    """One forward pass, the output layout, the loss and the metrics on a few training samples.

    Raises:
        BuilderError: The model cannot run on the data, its output cannot be scored, or its
            loss or metrics cannot be computed on the labels.
        DataError: The batch cannot be read.
    """
    if pipelines is None:
        x, y, weights = _first_batch(job, source)
    else:
        x, y, weights = first_batch(pipelines, job.fit_idx[: max(1, min(CHECK_SAMPLES, len(job.fit_idx)))])
    try:
        y_pred = model(x, training=False)
    except Exception as exc:
        if is_out_of_memory(exc):
            return  # proves nothing about the model: the folds retry with smaller batches
        raise BuilderError(
            f"{culprit.who} returned a model that cannot run on a batch of the data ({shape_text(x.shape[1:])} per "
            f"sample): {type(exc).__name__}: {first_sentence(exc)} Build it for the input_shape gridcv passes."
        ) from None
    shapes = [tuple(t.shape) for t in keras.tree.flatten(y_pred)]
    onehot = pipelines is not None and pipelines.onehot
    output_layout(model, source.task, source.n_classes, source.input_shape, shapes, culprit, onehot)
    loss = loss_info(model.loss)
    try:
        _compute_loss(model, x, y, y_pred, weights)
    except Exception as exc:
        raise BuilderError(
            f"{culprit.who} returned a model whose output is {shape_text(shapes[0][1:])} per sample, and "
            f"{culprit.loss(loss.name)} cannot be computed on it and the labels: {type(exc).__name__}: "
            f"{first_sentence(exc)} {_labels(source, y)} {_LOSSES.get(source.task, _LOSSES['classification'])}"
        ) from None
    try:
        model.compute_metrics(x, y, y_pred, sample_weight=weights)
    except Exception as exc:
        key = " (key 'compile.metrics')" if culprit.loss_key else ""
        raise BuilderError(
            f"{culprit.who} returned a model whose metrics ({_metric_names(model)}){key} cannot be computed on its "
            "output and the "
            f"labels: {type(exc).__name__}: {first_sentence(exc)} {_labels(source, y)} Use metrics for "
            f"{_METRICS.get(source.task, _METRICS['classification'])}, or none: gridcv's scoring does not need them."
        ) from None


def _first_batch(job: FoldJob, source: Source) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """A few samples of the fold's training split, read (and augmented, weighted) as training reads them."""
    n = max(1, min(CHECK_SAMPLES, len(job.fit_idx)))
    batches = training_batches(source, job.data.spec, job.params, job.fit_idx[:n], n, job.task.seed, shuffle=False)
    try:
        x, y, *weights = batches.load(0, 0)
    except UserError:
        raise
    except Exception as exc:
        raise DataError(
            f"{job.data.where}: key 'data': the first training samples cannot be read: {type(exc).__name__}: "
            f"{first_sentence(exc)} Check the data files and the 'data' section."
        ) from None
    return x, y, weights[0] if weights else None


def _compute_loss(model: keras.Model, x: Any, y: Any, y_pred: Any, weights: Any) -> None:
    # As Keras's train step does: models that override compute_loss may not take `training`.
    kwargs: dict[str, Any] = {"x": x, "y": y, "y_pred": y_pred, "sample_weight": weights}
    if "training" in inspect.signature(model.compute_loss).parameters:
        kwargs["training"] = False
    model.compute_loss(**kwargs)


def _metric_names(model: keras.Model) -> str:
    metrics = (model.get_compile_config() or {}).get("metrics") or []
    names = [m if isinstance(m, str) else getattr(m, "name", None) or str(m) for m in keras.tree.flatten(metrics)]
    return ", ".join(names)


_LOSSES = {
    "classification": "Use sparse_categorical_crossentropy (one output per class), or binary_crossentropy (one "
    "sigmoid output for two classes).",
    "regression": "Use mean_squared_error, mean_absolute_error or huber, with one linear output per target.",
    "multilabel": "Use binary_crossentropy, with one sigmoid output per label.",
}
_METRICS = {
    "classification": "integer labels (accuracy, sparse_categorical_accuracy)",
    "regression": "numeric targets (mean_absolute_error, root_mean_squared_error)",
    "multilabel": "0/1 labels (binary_accuracy, auc)",
}


def _labels(source: Source, y: np.ndarray) -> str:
    if source.task == "regression":
        return f"gridcv feeds {source.n_classes} numeric target(s) per sample."
    if source.task == "multilabel":
        return f"gridcv feeds {source.n_classes} labels of 0/1 per sample."
    ids = f"gridcv feeds integer class ids 0 .. {source.n_classes - 1}"
    if source.task == "segmentation":
        return f"{ids}, one per pixel ({'x'.join(str(s) for s in y.shape[1:])} masks)."
    return f"{ids}, one per sample."
