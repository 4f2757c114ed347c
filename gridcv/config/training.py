"""The parts of the experiment file about training: ``compile:`` and ``fit.callbacks``.

No Keras here: the parent process validates names against the static lists
below (a test keeps them in step with Keras). The validated sections cross to
the worker as they are (frozen pydantic models).
"""

from __future__ import annotations

import re
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
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
# Grid keys gridcv itself reads (besides optimizer keyword arguments, see CompileSpec).
COMPILE_KEYS = ("optimizer", "loss", "metrics")


class CallbackSpec(BaseModel):
    """One entry of ``fit.callbacks``: a built-in name or ``module:Class``, and its arguments.

    Written as a name (``- early_stopping``) or a mapping with ``name`` and the
    callback's keyword arguments (``- {name: early_stopping, patience: 3}``).
    """

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str

    def kwargs(self) -> dict[str, Any]:
        """The callback's keyword arguments (every key but ``name``)."""
        return dict(self.model_extra or {})

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
