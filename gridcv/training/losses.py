"""What gridcv needs to know of a compiled loss: its family and its ``from_logits``.

A string loss compiles through ``keras.losses.get`` (see
``keras/src/trainers/compile_utils.py:get_loss``), except ``crossentropy``,
which Keras resolves by the shapes; :func:`loss_info` reads both, Loss
instances and plain functions alike.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any

import keras


@dataclass(frozen=True)
class LossInfo:
    """What gridcv needs to know of a compiled loss.

    Attributes:
        name: As written (a string) or as Keras names it.
        family: ``sparse`` (integer targets, one output per class), ``onehot``
            (one-hot targets), ``binary`` (one output per target), ``auto``
            (``crossentropy``: Keras picks by shape), or ``other``.
        from_logits: The loss's ``from_logits``; None when it has none (a custom loss, mse...).
    """

    name: str
    family: str
    from_logits: bool | None


_FAMILIES = {
    "sparse_categorical_crossentropy": "sparse",
    "categorical_crossentropy": "onehot",
    "categorical_focal_crossentropy": "onehot",
    "categorical_hinge": "onehot",
    "binary_crossentropy": "binary",
    "binary_focal_crossentropy": "binary",
}


def loss_info(loss: Any) -> LossInfo:
    """Name, family and ``from_logits`` of what was passed to ``compile(loss=...)``.

    A string compiles through ``keras.losses.get`` (a function, or a Loss class
    with its defaults), except ``crossentropy``/``ce``, which Keras resolves by
    the shapes; a Loss instance carries ``from_logits`` in its config; a
    function (or a ``functools.partial`` of one) in its default arguments.
    """
    if isinstance(loss, (list, tuple)) and len(loss) == 1:
        loss = loss[0]
    if isinstance(loss, dict) and len(loss) == 1:
        loss = next(iter(loss.values()))
    if isinstance(loss, str) and loss.lower() in ("crossentropy", "ce"):
        return LossInfo(loss, "auto", False)
    resolved: Any = loss
    if isinstance(loss, str):
        try:
            resolved = keras.losses.get(loss)
        except ValueError:
            return LossInfo(loss, "other", None)
    fn, kwargs = resolved, {}
    if isinstance(resolved, functools.partial):
        fn, kwargs = resolved.func, dict(resolved.keywords)
    elif isinstance(resolved, keras.losses.Loss):
        fn = getattr(resolved, "fn", resolved)
        try:
            kwargs = dict(resolved.get_config())
        except (NotImplementedError, TypeError):
            kwargs = {}
    from_logits = kwargs.get("from_logits", getattr(resolved, "from_logits", None))
    if from_logits is None and callable(fn) and not isinstance(fn, keras.losses.Loss):
        from_logits = _default_from_logits(fn)
    fn_name = getattr(fn, "__name__", type(fn).__name__)
    name = loss if isinstance(loss, str) else getattr(resolved, "name", None) or fn_name
    family = _FAMILIES.get(fn_name, "other")
    return LossInfo(str(name), family, None if from_logits is None else bool(from_logits))


def _default_from_logits(fn: Any) -> bool | None:
    try:
        parameter = inspect.signature(fn).parameters.get("from_logits")
    except (TypeError, ValueError):
        return None
    if parameter is None or parameter.default is inspect.Parameter.empty:
        return None
    return bool(parameter.default)
