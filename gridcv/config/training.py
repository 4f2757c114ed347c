"""The parts of the experiment file about training: ``compile:`` and ``fit.callbacks``.

No Keras here: the parent process validates names against the static lists
below (a test keeps them in step with Keras). The validated sections cross to
the worker as they are (frozen pydantic models).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic_core import PydanticCustomError

# Keras optimizers by lower-case name -> class in keras.optimizers. Kept here, not read from
# Keras, so the parent process validates without importing TensorFlow; a test checks it
# against the installed Keras.
OPTIMIZERS = {
    "adadelta": "Adadelta",
    "adafactor": "Adafactor",
    "adagrad": "Adagrad",
    "adam": "Adam",
    "adamax": "Adamax",
    "adamw": "AdamW",
    "ftrl": "Ftrl",
    "lamb": "Lamb",
    "lion": "Lion",
    "nadam": "Nadam",
    "rmsprop": "RMSprop",
    "sgd": "SGD",
}
# Built-in callbacks by name -> the keyword arguments each accepts.
CALLBACKS: dict[str, tuple[str, ...]] = {
    "early_stopping": (
        "monitor",
        "min_delta",
        "patience",
        "mode",
        "baseline",
        "restore_best_weights",
        "start_from_epoch",
    ),
    "reduce_lr_on_plateau": ("monitor", "factor", "patience", "mode", "min_delta", "cooldown", "min_lr"),
    "model_checkpoint": ("monitor", "mode", "min_delta", "save_models"),
    "tensorboard": ("histogram_freq", "write_graph", "write_images", "update_freq", "profile_batch"),
}


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# What each built-in callback argument holds, checked in the parent (fit.callbacks and grid values alike),
# so a bad value for any candidate stops the run before a fold trains: argument -> (check, what it must be).
ARGUMENT_TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "monitor": (lambda v: isinstance(v, str), "a metric name such as val_loss"),
    "mode": (lambda v: v in ("auto", "min", "max"), "'auto', 'min' or 'max'"),
    "min_delta": (_number, "a number"),
    "baseline": (lambda v: v is None or _number(v), "a number or null"),
    "patience": (_count, "an integer >= 0"),
    "start_from_epoch": (_count, "an integer >= 0"),
    "cooldown": (_count, "an integer >= 0"),
    "factor": (lambda v: _number(v) and 0 < v < 1, "a number between 0 and 1"),
    "min_lr": (_number, "a number"),
    "restore_best_weights": (lambda v: isinstance(v, bool), "true or false"),
    "save_models": (lambda v: v in ("best", "none"), "'best' (keep each fold's best model) or 'none'"),
    "histogram_freq": (_count, "an integer >= 0"),
    "write_graph": (lambda v: isinstance(v, bool), "true or false"),
    "write_images": (lambda v: isinstance(v, bool), "true or false"),
    "update_freq": (lambda v: v in ("epoch", "batch") or _count(v), "'epoch', 'batch' or an integer"),
    "profile_batch": (lambda v: _count(v) or (isinstance(v, list) and all(_count(b) for b in v)), "batches"),
}
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
# Grid keys gridcv itself reads (besides optimizer keyword arguments, see CompileSpec).
COMPILE_KEYS = ("optimizer", "loss", "metrics")


class CallbackSpec(BaseModel):
    """One entry of ``fit.callbacks``: a built-in name or ``module:Class``, and its arguments.

    Written in a list as a name (``- early_stopping``) or a mapping with ``name``
    and the callback's keyword arguments (``- {name: early_stopping, patience: 3}``),
    or as an entry of a mapping (``early_stopping: {patience: 3}``). A grid key
    ``<name>.<argument>`` (``early_stopping.patience: [2, 5]``) overrides an
    argument per candidate.
    """

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str

    def kwargs(self) -> dict[str, Any]:
        """The callback's keyword arguments as written (every key but ``name``)."""
        return dict(self.model_extra or {})

    def arguments(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The keyword arguments of one candidate: grid keys ``<name>.<argument>`` override the written ones."""
        prefix = f"{self.name}."
        return {**self.kwargs(), **{k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}}

    @property
    def is_user_code(self) -> bool:
        """Whether it names a callback class of the user's (``file.py:Class``)."""
        return ":" in self.name


class CompileSpec(BaseModel):
    """``compile:``: how gridcv compiles a model the builder returns uncompiled.

    Keys other than ``optimizer``, ``loss`` and ``metrics`` are keyword
    arguments of the optimizer (``learning_rate``, ``weight_decay``,
    ``gradient_accumulation_steps``, ...); grid keys with any of these names
    override them.
    """

    model_config = ConfigDict(extra="allow", frozen=True)
    optimizer: str = "adam"
    loss: str = "sparse_categorical_crossentropy"
    metrics: list[str] = []

    def optimizer_kwargs(self) -> dict[str, Any]:
        """The optimizer's keyword arguments."""
        return dict(self.model_extra or {})


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|min|h)\s*$")
_SECONDS = {"s": 1.0, "sec": 1.0, "min": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class CheckpointInterval:
    """How often a fold checkpoints within an epoch (``fit.checkpoint_every``): after so many
    batches, or once so many seconds of training have passed since the last checkpoint."""

    batches: int | None = None
    seconds: float | None = None


def checkpoint_interval(value: Any) -> CheckpointInterval | None:
    """``fit.checkpoint_every`` as written: a number of batches (``500``), a time (``90s``,
    ``10min``, ``2h``), or null (only at the end of each epoch).

    Raises:
        PydanticCustomError: Anything else (pydantic reports it under the key).
    """
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return CheckpointInterval(batches=value)
    if isinstance(value, str):
        if value.strip().isdigit() and int(value) > 0:
            return CheckpointInterval(batches=int(value))
        match = _DURATION.match(value)
        if match and float(match.group(1)) > 0:
            return CheckpointInterval(seconds=float(match.group(1)) * _SECONDS[match.group(2)])
    raise PydanticCustomError(
        "checkpoint_every",
        "write a number of batches (500) or a time of training (90s, 10min, 2h), or null for a "
        "checkpoint at the end of each epoch only",
    )
