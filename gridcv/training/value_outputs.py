"""Output layouts of regression and multilabel models, and what cannot be scored.

- regression: one output per target, whatever the activation but softmax
  (a linear ``Dense(k)`` usually; a sigmoid for targets in [0, 1] is fine),
  with a loss that compares values (not a crossentropy);
- multilabel: one sigmoid probability per label, or one logit per label with a
  ``from_logits=True`` loss (``binary_crossentropy``); never softmax, which makes
  the labels compete.

Called by :func:`gridcv.training.outputs.output_layout` for those tasks; a
refusal is a :class:`~gridcv.errors.BuilderError` with the fix, raised before training.
"""

from __future__ import annotations

import keras

from gridcv.errors import BuilderError
from gridcv.training.outputs import (
    Culprit,
    OutputKind,
    OutputLayout,
    _expected,
    _from_logits,
    loss_info,
    output_activation,
    shape_text,
)


def value_layout(
    model: keras.Model, task: str, n_outputs: int, shape: tuple[int | None, ...], culprit: Culprit
) -> OutputLayout:
    """The layout of a regression or multilabel model's output (one sample's ``shape``), or a refusal.

    Raises:
        BuilderError: The shape, the activation or the loss does not fit the task.
    """
    who = culprit.who
    noun = "target(s)" if task == "regression" else "labels"
    if not (shape in ((n_outputs,), (None,)) or (n_outputs == 1 and shape == ())):
        what = "one output unit" if shape == (1,) else f"{shape[0]} output units" if len(shape) == 1 else None
        what = what or f"an output of shape {shape_text(shape)} per sample"
        raise BuilderError(
            f"{who} returned a model with {what}, but the task is {task} with {n_outputs} {noun} per sample; "
            f"{_expected(task, n_outputs, ())}."
        )
    loss = loss_info(model.loss)
    activation = output_activation(model)
    if activation == "softmax":
        raise BuilderError(
            f"{who} returned a model whose output layer applies softmax, which makes its outputs sum to 1"
            + (
                f" (one unit: always 1), so it cannot fit numeric targets. Use Dense({n_outputs}) with no activation."
                if task == "regression"
                else f": the labels compete, but a sample may have several labels. Use Dense({n_outputs}, "
                "activation='sigmoid') with binary_crossentropy."
            )
        )
    if task == "regression":
        if loss.family != "other":
            raise BuilderError(
                f"{who} returned a model compiled with {culprit.loss(loss.name)}, which compares class "
                "probabilities with classes, but the task is regression (numeric targets). Use a loss that "
                "compares values: mean_squared_error, mean_absolute_error or huber."
            )
        return OutputLayout(OutputKind.VALUES, n_outputs)
    if loss.family in ("sparse", "onehot"):
        raise BuilderError(
            f"{who} returned a model compiled with {culprit.loss(loss.name)}, which expects one class per sample, "
            f"but the task is multilabel (a 0/1 target per label). Use binary_crossentropy with Dense({n_outputs}, "
            "activation='sigmoid')."
        )
    if activation == "linear" and loss.from_logits is False:
        raise BuilderError(
            f"{who} returned a model whose output layer has no activation (its outputs are logits), but "
            f"{culprit.loss(loss.name)} expects probabilities (from_logits=False). Add activation='sigmoid' to the "
            "last layer, or compile with binary_crossentropy(from_logits=True)."
        )
    logits = _from_logits(loss, activation, culprit)
    return OutputLayout(OutputKind.LABEL_LOGITS if logits else OutputKind.LABEL_PROBABILITIES, n_outputs)
