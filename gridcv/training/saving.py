"""``.keras`` files: saved atomically, loaded under the precision policy they were trained with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras

from gridcv.atomic import save_atomic


def save_model_atomic(model: keras.Model, path: Path) -> None:
    """Saves a ``.keras`` file so that a crash leaves the old file or the new one."""
    save_atomic(path, lambda tmp: model.save(tmp))


def load_model(
    file: Path, precision: str | None, custom_objects: dict[str, Any] | None = None, compile: bool = True
) -> keras.Model:
    """Loads a ``.keras`` file.

    A mixed-float16 model was compiled with a loss-scale optimizer; loading it
    under the same policy restores that optimizer's variables too.
    """
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(precision or previous)
    try:
        return keras.saving.load_model(file, custom_objects=custom_objects, compile=compile)
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
