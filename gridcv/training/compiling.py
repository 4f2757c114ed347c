"""Compiling models from the experiment file, and gradient accumulation.

A builder may return an uncompiled model; gridcv then compiles it from the
``compile:`` section, with grid keys of the same names taking precedence.
Names are checked here, in the worker, where Keras is at hand: the builder
check before the first fold turns a bad name into a :class:`BuilderError`.
"""

from __future__ import annotations

import inspect
from typing import Any

import keras

from gridcv.config.training import COMPILE_KEYS, OPTIMIZERS
from gridcv.errors import BuilderError, did_you_mean
from gridcv.execution.messages import FoldJob

# compile.loss when it is not set, by task (else sparse_categorical_crossentropy, the schema's default).
DEFAULT_LOSSES = {"regression": "mean_squared_error", "multilabel": "binary_crossentropy"}
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
    section = job.training.compile
    spec = section.optimizer_kwargs()
    chosen = {k: job.params.get(k, getattr(section, k)) for k in COMPILE_KEYS}
    if "loss" not in section.model_fields_set and "loss" not in job.params:
        chosen["loss"] = DEFAULT_LOSSES.get(job.data.task or "", chosen["loss"])
    cls = optimizer_class(str(chosen["optimizer"]))
    accepted = optimizer_arguments(cls)
    for key in spec:
        if key not in accepted:
            raise BuilderError(
                f"{where}: unknown key 'compile.{key}'{did_you_mean(key, accepted, aside=True)}; {cls.__name__} "
                f"takes {', '.join(accepted)}, and 'compile' also takes {', '.join(COMPILE_KEYS)}."
            )
    kwargs = {k: _number(v) for k, v in spec.items()}
    kwargs.update({k: _number(v) for k, v in job.params.items() if k in accepted})
    steps = job.accumulation_steps
    kwargs["gradient_accumulation_steps"] = steps if steps > 1 else None
    loss = _checked_loss(str(chosen["loss"]), where)
    metrics = [_checked_metric(str(m), where) for m in chosen["metrics"] or []]
    try:
        optimizer = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        given = ", ".join(f"{k}={v!r}" for k, v in kwargs.items() if k != "gradient_accumulation_steps" or v)
        raise BuilderError(
            f"{where}: key 'compile' makes {cls.__name__}({given}), which Keras refuses: {first_sentence(exc)} "
            "Fix the value in 'compile' (or the grid key of the same name)."
        ) from None
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics)


def first_sentence(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message, as a sentence for one-paragraph errors."""
    text = str(exc).strip()
    line = text.splitlines()[0].strip() if text else type(exc).__name__
    line = line if len(line) <= limit else line[: limit - 3].rstrip() + "..."
    return line if line.endswith((".", "?", "!")) else line + "."


def _checked_loss(name: str, where: str) -> str:
    return _checked(
        name,
        keras.losses,
        "compile.loss",
        "is",
        "loss",
        "e.g. sparse_categorical_crossentropy for integer labels",
        where,
    )


def _checked_metric(name: str, where: str) -> str:
    if name in _COMPILE_METRIC_ALIASES:
        return name
    return _checked(name, keras.metrics, "compile.metrics", "names", "metric", "e.g. accuracy", where)


def _checked(name: str, module: Any, key: str, verb: str, what: str, example: str, where: str) -> str:
    """``name`` if ``module.get`` (keras.losses, keras.metrics) knows it, else a BuilderError with the fix."""
    try:
        module.get(name)
    except ValueError:
        known = sorted(n for n in dir(module) if n.islower() and not n.startswith("_"))
        if what == "metric":
            known = ["accuracy", *known]
        raise BuilderError(
            f"{where}: key '{key}' {verb} {name!r}, which is not a Keras {what}.{did_you_mean(name, known)} "
            f"Use a name from {module.__name__.removesuffix('.api')}, {example}."
        ) from None
    return name


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
