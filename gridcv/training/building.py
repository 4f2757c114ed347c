"""The user's model builder: imported, called, and its model compiled as the job asks."""

from __future__ import annotations

import gc

import keras

from gridcv.data.sources import Source, open_source
from gridcv.errors import BuilderError, DataError
from gridcv.execution.messages import FoldJob
from gridcv.training.callbacks import make_callbacks
from gridcv.training.compiling import accumulation_of, compile_from_spec, set_gradient_accumulation
from gridcv.training.outputs import Culprit


def build_model(job: FoldJob, source: Source) -> tuple[keras.Model, Culprit]:
    """Calls the user's builder and makes sure the model is compiled as the job asks.

    An uncompiled model is compiled from ``compile:`` (and the candidate's grid
    keys); a compiled one keeps its optimizer, with the job's gradient
    accumulation applied.

    Returns:
        The model, and whom messages about its output and loss name.

    Raises:
        BuilderError: The builder is missing or returned something unusable.
    """
    where = job.data.where
    builder = job.model.load(job.base_dir, where, BuilderError)
    model = builder(dict(job.params), source.input_shape, source.n_classes)
    if not isinstance(model, keras.Model):
        raise BuilderError(
            f"{where}: key 'model': {job.model.text} returned {type(model).__name__}, not a keras.Model. "
            "The builder must return a model: build(params, input_shape, n_classes)."
        )
    culprit = Culprit(f"{where}: key 'model': {job.model.text}")
    if not getattr(model, "compiled", False) or model.optimizer is None:
        compile_from_spec(model, job)
        return model, Culprit(culprit.who, loss_key="compile.loss")
    own = accumulation_of(model)
    steps = job.accumulation_steps if job.training.accumulation_explicit else own * job.accumulation_steps
    if steps != own:
        set_gradient_accumulation(model, steps)
    return model, culprit


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


def release_memory() -> None:
    """What can be freed in-process between folds: Keras's graph and Python garbage."""
    keras.backend.clear_session()
    gc.collect()
