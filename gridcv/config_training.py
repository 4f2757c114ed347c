"""The parts of the experiment file about training: compile, callbacks, precision, refit.

Kept apart from ``gridcv.config`` so the schema of training options and their
checks read in one place. No Keras here: the parent process validates names
against the static lists below (a test keeps them in step with Keras).
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from gridcv.errors import ConfigError

_IMPORT_REF = re.compile(r"^(?P<module>[^:]+):(?P<function>[A-Za-z_][A-Za-z0-9_]*)$")

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


def check_refit(path: str | Path, refit: bool | str, scorers: list[str]) -> None:
    """Refit names one of the scorers, or is true with a single scorer."""
    if refit is True and len(scorers) > 1:
        raise ConfigError(
            f"{path}: key 'refit' is true but 'scoring' names {len(scorers)} scorers "
            f"({', '.join(scorers)}); with several scorers, set refit to the one that picks the "
            f"best candidate, e.g. 'refit: {scorers[0]}'."
        )
    if isinstance(refit, str) and refit not in scorers:
        close = difflib.get_close_matches(refit, scorers, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(
            f"{path}: key 'refit' is {refit!r}, which is not one of the scorers in 'scoring' "
            f"({', '.join(scorers)}).{hint} Set refit to one of them, true (one scorer) or false."
        )


def check_optimizer(path: str | Path, key: str, name: Any) -> None:
    """The optimizer is one of Keras's, by name."""
    if isinstance(name, str) and name.lower() in OPTIMIZERS:
        return
    close = difflib.get_close_matches(str(name).lower(), list(OPTIMIZERS), n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise ConfigError(
        f"{path}: key '{key}' is {name!r}, which is not a Keras optimizer.{hint} Use one of "
        f"{', '.join(OPTIMIZERS)} (case does not matter)."
    )


def check_callbacks(path: str | Path, callbacks: list[CallbackSpec]) -> None:
    """Each callback is built in (with known arguments) or an import path."""
    for i, callback in enumerate(callbacks):
        key = f"fit.callbacks[{i}]"
        if ":" in callback.name:
            if not _IMPORT_REF.match(callback.name):
                raise ConfigError(
                    f"{path}: key '{key}.name' is {callback.name!r}; write a callback of your own as "
                    "'path/to/file.py:ClassName' or 'package.module:ClassName'."
                )
            continue
        if callback.name not in CALLBACKS:
            close = difflib.get_close_matches(callback.name, list(CALLBACKS), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(
                f"{path}: key '{key}.name' is {callback.name!r}, which is not a gridcv callback.{hint} "
                f"Use one of {', '.join(CALLBACKS)}, or 'module:ClassName' for a callback of your own."
            )
        accepted = CALLBACKS[callback.name]
        for arg in callback.kwargs():
            if arg not in accepted:
                close = difflib.get_close_matches(arg, accepted, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise ConfigError(
                    f"{path}: unknown key '{arg}' in '{key}'{hint}; {callback.name} takes {', '.join(accepted)}."
                )
        if callback.name == "model_checkpoint" and callback.kwargs().get("save_models", "best") not in ("best", "none"):
            raise ConfigError(
                f"{path}: key '{key}.save_models' is {callback.kwargs()['save_models']!r}; use 'best' "
                "(keep each fold's best model) or 'none'."
            )
