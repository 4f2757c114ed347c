"""Compiling models from the experiment file, and gradient accumulation. Imports Keras.

A builder may return an uncompiled model; gridcv then compiles it from the
``compile:`` section, with grid keys of the same names taking precedence.
Names are checked here, in the worker, where Keras is at hand: the builder
check before the first fold turns a bad name into a :class:`BuilderError`.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

import keras

from gridcv.config_training import COMPILE_KEYS, OPTIMIZERS
from gridcv.errors import BuilderError
from gridcv.jobs import FoldJob

# Metric names that compile() resolves from the loss rather than through keras.metrics.get.
_COMPILE_METRIC_ALIASES = {"accuracy", "acc", "crossentropy", "ce"}


def optimizer_class(name: str) -> type[keras.optimizers.Optimizer]:
    """The Keras optimizer class for a name such as ``adam`` or ``AdamW``."""
    return getattr(keras.optimizers, OPTIMIZERS[name.lower()])


def optimizer_arguments(cls: type) -> list[str]:
    """Keyword arguments an optimizer class accepts (``name`` excluded)."""
    params = inspect.signature(cls).parameters
    return [p for p, v in params.items() if v.kind is v.POSITIONAL_OR_KEYWORD and p != "name"]


def _number(value: Any) -> Any:
    # YAML 1.1 reads '1e-3' as a string; an optimizer argument never is one.
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def compile_from_spec(model: keras.Model, job: FoldJob) -> None:
    """Compiles ``model`` from the ``compile:`` section and the candidate's grid keys.

    Args:
        model: The builder's uncompiled model.
        job: The fold; ``job.params`` override ``compile:`` keys of the same name,
            and ``job.accumulation_steps`` sets the gradient accumulation.

    Raises:
        BuilderError: An optimizer argument, loss or metric name is unknown.
    """
    where = job.data.where
    spec = dict(job.training.compile)
    chosen = {k: job.params.get(k, spec.pop(k)) for k in COMPILE_KEYS}
    cls = optimizer_class(str(chosen["optimizer"]))
    accepted = optimizer_arguments(cls)
    for key in spec:
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise BuilderError(
                f"{where}: unknown key 'compile.{key}'{hint}; {cls.__name__} takes "
                f"{', '.join(accepted)}, and 'compile' also takes {', '.join(COMPILE_KEYS)}."
            )
    kwargs = {k: _number(v) for k, v in spec.items()}
    kwargs.update({k: _number(v) for k, v in job.params.items() if k in accepted})
    steps = job.accumulation_steps
    kwargs["gradient_accumulation_steps"] = steps if steps > 1 else None
    loss = _checked_loss(str(chosen["loss"]), where)
    metrics = [_checked_metric(str(m), where) for m in chosen["metrics"] or []]
    model.compile(optimizer=cls(**kwargs), loss=loss, metrics=metrics)


def _checked_loss(name: str, where: str) -> str:
    try:
        keras.losses.get(name)
    except ValueError:
        known = sorted(n for n in dir(keras.losses) if n.islower() and not n.startswith("_"))
        raise BuilderError(
            f"{where}: key 'compile.loss' is {name!r}, which is not a Keras loss.{_did_you_mean(name, known)} "
            "Use a name from keras.losses, e.g. sparse_categorical_crossentropy for integer labels."
        ) from None
    return name


def _checked_metric(name: str, where: str) -> str:
    if name in _COMPILE_METRIC_ALIASES:
        return name
    try:
        keras.metrics.get(name)
    except ValueError:
        known = sorted(n for n in dir(keras.metrics) if n.islower() and not n.startswith("_"))
        raise BuilderError(
            f"{where}: key 'compile.metrics' names {name!r}, which is not a Keras metric."
            f"{_did_you_mean(name, ['accuracy', *known])} Use names from keras.metrics, e.g. accuracy."
        ) from None
    return name


def _did_you_mean(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f" Did you mean '{close[0]}'?" if close else ""


def accumulation_of(model: keras.Model) -> int:
    """The gradient accumulation steps of a compiled model's optimizer (1 for none)."""
    optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)
    return int(getattr(optimizer, "gradient_accumulation_steps", None) or 1)


def set_gradient_accumulation(model: keras.Model, steps: int) -> None:
    """Recompiles with an optimizer that accumulates gradients over ``steps`` batches.

    Used for the grid key and by OOM retries (half the batch, twice the
    accumulation, same effective batch size). A loss-scale optimizer (mixed
    float16) is unwrapped; ``compile`` wraps the new optimizer again.
    """
    optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)
    config = optimizer.get_config()
    config["gradient_accumulation_steps"] = steps if steps > 1 else None
    model.compile(
        optimizer=optimizer.__class__.from_config(config),
        loss=model.loss,
        metrics=(model.get_compile_config() or {}).get("metrics"),
        jit_compile=False,
    )
