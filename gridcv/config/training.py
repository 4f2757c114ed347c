"""The parts of the experiment file about training: ``compile:`` and ``fit.callbacks``.

No Keras here: the parent process validates names against the static lists
below (a test keeps them in step with Keras). The validated sections cross to
the worker as they are (frozen pydantic models).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

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
