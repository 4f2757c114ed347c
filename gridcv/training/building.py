"""The user's model builder: imported, called, and its model compiled as the job asks."""

from __future__ import annotations

import gc
import inspect
from collections.abc import Callable
from typing import Any

import keras

from gridcv.data.sources import Source
from gridcv.errors import BuilderError
from gridcv.execution.messages import FoldJob
from gridcv.training.compiling import accumulation_of, compile_from_spec, set_gradient_accumulation
from gridcv.training.outputs import Culprit

CALL = "build(params, input_shape, n_classes)"


def build_model(job: FoldJob, source: Source) -> tuple[keras.Model, Culprit]:
    """Calls the user's builder and makes sure the model is compiled as the job asks.

    Returns:
        The model, and whom messages about its output and loss name.

    Raises:
        BuilderError: The builder is missing, takes other arguments, or returned something unusable.
        Exception: Whatever the builder raised for these parameters.
    """
    model = call_builder(job, source)
    return model, compile_as_asked(model, job)


def call_builder(job: FoldJob, source: Source) -> keras.Model:
    """The builder's model for the job's parameters.

    Raises:
        BuilderError: The builder cannot be imported, cannot be called as
            ``build(params, input_shape, n_classes)``, or returned something else than a model.
        Exception: Whatever the builder itself raised (a bug for these parameters, maybe).
    """
    where = job.data.where
    builder = job.model.load(job.base_dir, where, BuilderError)
    arguments = (dict(job.params), source.input_shape, source.n_classes)
    check_signature(builder, arguments, f"{where}: key 'model': {job.model.text}")
    model = builder(*arguments)
    if not isinstance(model, keras.Model):
        raise BuilderError(
            f"{where}: key 'model': {job.model.text} returned {type(model).__name__}, not a keras.Model. "
            f"The builder must return a model: {CALL}."
        )
    return model


def check_signature(builder: Callable[..., Any], arguments: tuple[Any, ...], who: str) -> None:
    """Refuses a builder that cannot take gridcv's three arguments, before calling it.

    Binding the arguments to the signature tells a builder written for other
    arguments apart from a TypeError raised inside it.

    Raises:
        BuilderError: The arguments do not bind.
    """
    try:
        signature = inspect.signature(builder)
    except (TypeError, ValueError):
        return  # a builtin or C callable: calling it will tell
    try:
        signature.bind(*arguments)
    except TypeError as exc:
        raise BuilderError(
            f"{who} takes {getattr(builder, '__name__', 'the builder')}{signature}, but gridcv calls it as "
            f"{CALL} ({exc}). Give it these three parameters: def build(params, input_shape, n_classes)."
        ) from None


def compile_as_asked(model: keras.Model, job: FoldJob) -> Culprit:
    """Compiles the model as the job asks; returns whom messages about its output and loss name.

    An uncompiled model is compiled from ``compile:`` (and the candidate's grid
    keys); a compiled one keeps its optimizer, with the job's gradient
    accumulation applied.

    Raises:
        BuilderError: ``compile:`` cannot compile it.
    """
    culprit = Culprit(f"{job.data.where}: key 'model': {job.model.text}")
    if not getattr(model, "compiled", False) or model.optimizer is None:
        compile_from_spec(model, job)
        return Culprit(culprit.who, loss_key="compile.loss")
    own = accumulation_of(model)
    steps = job.accumulation_steps if job.training.accumulation_explicit else own * job.accumulation_steps
    if steps != own:
        set_gradient_accumulation(model, steps)
    return culprit


def release_memory() -> None:
    """What can be freed in-process between folds: Keras's graph and Python garbage (one collection:
    ``clear_session`` would run its own)."""
    keras.backend.clear_session(free_memory=False)
    gc.collect()
