"""What a model's output means: worked out once per fold from the compiled model, used by every scorer.

Keras users end a classifier (or a segmentation model, per pixel) in one of
four ways, and each is scored as Keras trains it:

- ``probabilities``: one value per class, softmax (the loss has ``from_logits=False``);
- ``sigmoid``: one unit for two classes, the probability of class 1 (class 1 above 0.5);
- ``logits``: one unnormalised value per class (``from_logits=True``): softmax gives
  the probabilities, argmax the class;
- ``logit``: one unnormalised unit for two classes (sigmoid gives the probability of
  class 1; class 1 when the logit is above 0).

:func:`output_layout` tells them apart from the loss (its ``from_logits``, how a
string loss compiles: see ``keras/src/trainers/compile_utils.py:get_loss``), the
output layer's activation, the number of output channels, the task and the
number of classes, and refuses what cannot be scored with a
:class:`~gridcv.errors.BuilderError` saying what the model returned and what
was expected.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
from scipy.special import expit, softmax

from gridcv.errors import BuilderError
from gridcv.training.losses import LossInfo, loss_info

__all__ = ["Culprit", "LossInfo", "OutputKind", "OutputLayout", "loss_info", "output_layout", "static_output_shapes"]


class OutputKind(enum.StrEnum):
    """How a model's output encodes the class of a sample (or of a pixel), its labels or its targets."""

    PROBABILITIES = "probabilities"  # n_classes values summing to 1 (softmax)
    SIGMOID = "sigmoid"  # one probability of class 1, two classes
    LOGITS = "logits"  # n_classes unnormalised scores (from_logits=True)
    LOGIT = "logit"  # one unnormalised score of class 1, two classes
    VALUES = "values"  # regression: one predicted number per target
    LABEL_PROBABILITIES = "label_probabilities"  # multilabel: one sigmoid probability per label
    LABEL_LOGITS = "label_logits"  # multilabel: one logit per label (from_logits=True)


@dataclass(frozen=True)
class OutputLayout:
    """A model's output layout: turns raw outputs into class probabilities and classes.

    Raw outputs have the class axis last: ``(n, channels)`` for classification,
    ``(n, h, w, channels)`` for segmentation.
    """

    kind: OutputKind
    n_classes: int

    def probabilities(self, raw: np.ndarray) -> np.ndarray:
        """Raw outputs -> float64 probabilities ``(..., n_classes)`` summing to 1 over the last axis
        (multilabel: the probability of each label, ``(n, n_labels)``)."""
        values = np.asarray(raw, dtype=np.float64)
        if self.kind is OutputKind.LABEL_PROBABILITIES:
            return np.clip(values, 0.0, 1.0)
        if self.kind is OutputKind.LABEL_LOGITS:
            return np.asarray(expit(values))
        if self.kind is OutputKind.SIGMOID:
            return _two_columns(np.clip(values[..., 0], 0.0, 1.0))
        if self.kind is OutputKind.LOGIT:
            return _two_columns(expit(values[..., 0]))
        if self.kind is OutputKind.LOGITS:
            return np.asarray(softmax(values, axis=-1))
        # Keras's crossentropy divides probabilities by their sum too (float16 softmax rarely sums to 1).
        values = np.clip(values, 0.0, None)
        totals = values.sum(axis=-1, keepdims=True)
        uniform = np.full_like(values, 1.0 / self.n_classes)
        return np.divide(values, totals, out=uniform, where=totals > 0)

    def classes(self, raw: np.ndarray) -> np.ndarray:
        """Raw outputs -> int64 class ids ``(...)``: argmax, or a threshold for one unit."""
        values = np.asarray(raw)
        if self.kind is OutputKind.LABEL_PROBABILITIES:
            return (values > 0.5).astype(np.int64)  # multilabel: 0/1 per label
        if self.kind is OutputKind.LABEL_LOGITS:
            return (values > 0).astype(np.int64)
        if self.kind is OutputKind.SIGMOID:
            return (values[..., 0] > 0.5).astype(np.int64)
        if self.kind is OutputKind.LOGIT:
            return (values[..., 0] > 0).astype(np.int64)
        return values.argmax(axis=-1).astype(np.int64)

    def values(self, raw: np.ndarray) -> np.ndarray:
        """Raw regression outputs -> float64 predictions: ``(n,)`` for one target, ``(n, n_targets)``."""
        values = np.asarray(raw, dtype=np.float64)
        return values.reshape(len(values)) if self.n_classes == 1 else values.reshape(len(values), self.n_classes)


def _two_columns(p1: np.ndarray) -> np.ndarray:
    return np.stack([1.0 - p1, p1], axis=-1)


@dataclass(frozen=True)
class Culprit:
    """Whom a refusal names.

    Attributes:
        who: The start of every message: ``"<file>: key 'model': models.py:build"``.
        loss_key: ``compile.loss`` when gridcv compiled the model from the file, else None.
    """

    who: str
    loss_key: str | None = None

    def loss(self, name: str) -> str:
        """The loss as messages name it."""
        return f"the loss {name!r}" + (f" (key '{self.loss_key}')" if self.loss_key else "")


# Layers that pass their input's values through (or only reshape them): the activation is before them.
_PASS_THROUGH = (
    keras.layers.Dropout,
    keras.layers.SpatialDropout1D,
    keras.layers.SpatialDropout2D,
    keras.layers.SpatialDropout3D,
    keras.layers.GaussianDropout,
    keras.layers.GaussianNoise,
    keras.layers.AlphaDropout,
    keras.layers.ActivityRegularization,
    keras.layers.Identity,
    keras.layers.Reshape,
    keras.layers.Flatten,
    keras.layers.Cropping1D,
    keras.layers.Cropping2D,
    keras.layers.Cropping3D,
)


def output_activation(model: keras.Model) -> str | None:
    """The activation that makes the model's output (``softmax``, ``sigmoid``, ``linear``...), or None.

    None when it cannot be known: a subclassed model, a custom layer, a Lambda.
    """
    layer = _output_operation(model, depth=0)
    if layer is None:
        return None
    kind = type(layer).__name__.lower()
    if kind in ("softmax", "sigmoid"):  # keras.layers.Softmax, and keras.ops.softmax/sigmoid in a functional model
        return kind
    return _name_of(getattr(layer, "activation", None))


def _is_pass_through(operation: Any) -> bool:
    if isinstance(operation, _PASS_THROUGH):
        return True
    # Activation('linear', dtype='float32'): the mixed-precision guide's float32 output layer.
    return isinstance(operation, keras.layers.Activation) and _name_of(operation.activation) == "linear"


def _name_of(fn: Any) -> str | None:
    name = getattr(fn, "__name__", None)
    return name if isinstance(name, str) else None


def _output_operation(model: keras.Model, depth: int) -> Any:
    """The layer (or op) that computes the model's single output, past pass-through layers."""
    if depth > 10:
        return None
    if isinstance(model, keras.Sequential):
        for layer in reversed(model.layers):
            if isinstance(layer, keras.Model):
                return _output_operation(layer, depth + 1)
            if not _is_pass_through(layer):
                return layer
        return None
    try:
        outputs = model.outputs
    except (AttributeError, ValueError):
        return None  # a subclassed model: its output layer cannot be known
    if not outputs or len(outputs) != 1:
        return None
    tensor = outputs[0]
    for _ in range(100):
        # Keras 3 keeps the op and node that made a symbolic tensor in _keras_history.
        history = getattr(tensor, "_keras_history", None)
        if history is None:
            return None
        operation = history.operation
        if isinstance(operation, keras.Model):
            return _output_operation(operation, depth + 1)
        if not _is_pass_through(operation):
            return operation
        tensor = operation._inbound_nodes[history.node_index].input_tensors[0]
    return None


def static_output_shapes(model: keras.Model, input_shape: tuple[int, ...]) -> list[tuple[int | None, ...]]:
    """The model's output shapes, batch axis first, without running it on data."""
    try:
        outputs = model.outputs
    except (AttributeError, ValueError):
        outputs = None
    if not outputs:
        outputs = model.compute_output_spec(keras.KerasTensor((None, *input_shape)))
    return [tuple(t.shape) for t in keras.tree.flatten(outputs)]


def output_layout(
    model: keras.Model,
    task: str,
    n_classes: int,
    input_shape: tuple[int, ...],
    output_shapes: Sequence[tuple[int | None, ...]],
    culprit: Culprit,
    onehot_targets: bool = False,
) -> OutputLayout:
    """The layout of a compiled model's output, or a refusal if gridcv cannot score it.

    Args:
        model: The compiled model.
        task: ``classification``, ``segmentation``, ``regression`` or ``multilabel``.
        n_classes: Classes of the data (labels, or mask values); targets or labels per sample.
        input_shape: One sample's shape (segmentation outputs must match its height and width).
        output_shapes: The model's output shapes, batch axis first (from a forward
            pass, or :func:`static_output_shapes`).
        culprit: Whom messages name.
        onehot_targets: The targets are one-hot rows (a user pipeline's), so a one-hot loss fits them.

    Raises:
        BuilderError: The output's shape, activation or loss does not fit the task.
    """
    who = culprit.who
    if len(output_shapes) != 1:
        raise BuilderError(
            f"{who} returned a model with {len(output_shapes)} outputs; gridcv scores models with one output "
            f"({_expected(task, n_classes, input_shape)})."
        )
    shape = tuple(output_shapes[0][1:])
    if task in ("regression", "multilabel"):
        from gridcv.training.value_outputs import value_layout  # it builds on this module

        return value_layout(model, task, n_classes, shape, culprit)
    channels = _channels(task, n_classes, input_shape, shape, who)
    loss = loss_info(model.loss)
    activation = output_activation(model)
    logits = _from_logits(loss, activation, culprit)
    if channels == 1 and n_classes <= 2:
        _check_one_unit(loss, activation, n_classes, culprit)
        return OutputLayout(OutputKind.LOGIT if logits else OutputKind.SIGMOID, n_classes)
    if onehot_targets:
        return OutputLayout(OutputKind.LOGITS if logits else OutputKind.PROBABILITIES, n_classes)
    if loss.family == "binary":
        raise BuilderError(
            f"{who} returned a model with {channels} outputs per {_unit(task)} and {culprit.loss(loss.name)}, which "
            f"compares each of them with the class id. Use sparse_categorical_crossentropy with {n_classes} outputs"
            f"{_or_one_sigmoid(n_classes)}."
        )
    _check_onehot(loss, n_classes, culprit)
    return OutputLayout(OutputKind.LOGITS if logits else OutputKind.PROBABILITIES, n_classes)


def _channels(task: str, n_classes: int, input_shape: tuple[int, ...], shape: tuple[int | None, ...], who: str) -> int:
    """The number of output channels, once the output's shape fits the task."""
    fits_classes = bool(shape) and (shape[-1] in (n_classes, None) or (shape[-1] == 1 and n_classes == 2))
    if task == "segmentation":
        spatial = tuple(input_shape[:2])
        fits = len(shape) == 3 and all(s in (t, None) for s, t in zip(shape[:2], spatial, strict=True))
        if not (fits and fits_classes):
            raise BuilderError(
                f"{who} returned a model whose output is {shape_text(shape)} per image, but the masks are "
                f"{spatial[0]}x{spatial[1]} with {n_classes} classes; {_expected(task, n_classes, input_shape)}."
            )
    elif len(shape) != 1 or not fits_classes:
        units = "one output unit" if shape == (1,) else f"{shape[0]} output units"
        what = units if len(shape) == 1 else f"an output of shape {shape_text(shape)} per sample"
        single = " (one unit fits only two classes)" if shape == (1,) else ""
        raise BuilderError(
            f"{who} returned a model with {what}, but the data has {n_classes} classes{single}; "
            f"{_expected(task, n_classes, input_shape)}."
        )
    return int(shape[-1] or n_classes)


def _from_logits(loss: LossInfo, activation: str | None, culprit: Culprit) -> bool:
    """Whether the outputs are logits: from the loss's ``from_logits``, else from the activation."""
    squashed = activation in ("softmax", "sigmoid")
    if loss.from_logits is True and squashed:
        raise BuilderError(
            f"{culprit.who} returned a model whose output layer applies {activation}, but {culprit.loss(loss.name)} "
            f"has from_logits=True and applies it again. Remove the activation, or use from_logits=False."
        )
    if loss.from_logits is False and activation == "linear":
        raise BuilderError(
            f"{culprit.who} returned a model whose output layer has no activation (its outputs are logits), but "
            f"{culprit.loss(loss.name)} expects probabilities (from_logits=False). Add activation='softmax' "
            "(or 'sigmoid' for one unit) to the last layer, or compile with a loss that has from_logits=True."
        )
    if loss.from_logits is not None:
        return loss.from_logits
    if squashed or activation == "linear":
        return activation == "linear"
    raise BuilderError(
        f"{culprit.who} returned a model whose outputs gridcv cannot read as probabilities or logits: its output "
        f"layer has no known activation and {culprit.loss(loss.name)} does not say (no from_logits). End the "
        "model with a softmax or sigmoid activation, or compile with a Keras crossentropy loss."
    )


def _check_one_unit(loss: LossInfo, activation: str | None, n_classes: int, culprit: Culprit) -> None:
    if activation == "softmax":
        raise BuilderError(
            f"{culprit.who} returned a model whose one output unit has a softmax activation, which always "
            f"outputs 1. Use activation='sigmoid' with binary_crossentropy, or {max(n_classes, 2)} units with softmax."
        )
    if loss.family == "sparse":
        raise BuilderError(
            f"{culprit.who} returned a model with one output unit and {culprit.loss(loss.name)}, which needs one "
            "output per class. Use binary_crossentropy with one sigmoid unit, or 2 units with softmax."
        )
    _check_onehot(loss, n_classes, culprit)


def _check_onehot(loss: LossInfo, n_classes: int, culprit: Culprit) -> None:
    if loss.family == "onehot":
        raise BuilderError(
            f"{culprit.who} returned a model compiled with {culprit.loss(loss.name)}, which expects one-hot "
            f"targets, but gridcv feeds integer class ids 0 .. {n_classes - 1}. Use sparse_categorical_crossentropy"
            f"{_or_one_sigmoid(n_classes, ' (or binary_crossentropy with one sigmoid unit)')}."
        )


def _expected(task: str, n_classes: int, input_shape: tuple[int, ...]) -> str:
    if task == "regression":
        return f"end the model with Dense({n_classes}) and no activation"
    if task == "multilabel":
        return f"end the model with Dense({n_classes}, activation='sigmoid')"
    if task == "segmentation":
        h, w = input_shape[:2]
        binary = f", or ({h}, {w}, 1) with one sigmoid channel" if n_classes == 2 else ""
        return f"the output must be ({h}, {w}, {n_classes}) per image{binary}"
    return f"end the model with Dense({n_classes}, activation='softmax'){_or_one_sigmoid(n_classes)}"


def _or_one_sigmoid(n_classes: int, text: str = " or Dense(1, activation='sigmoid')") -> str:
    return text if n_classes == 2 else ""


def _unit(task: str) -> str:
    return "pixel" if task == "segmentation" else "sample"


def shape_text(shape: tuple[Any, ...]) -> str:
    """A shape as Python writes a tuple: ``(8, 8, 3)``, ``(3,)``."""
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
