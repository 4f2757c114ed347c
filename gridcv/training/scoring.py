"""Scoring a fold with scikit-learn's scorers, from the model's predictions.

The scorers want an estimator; :class:`PredictedProbabilities` (classes),
:class:`PredictedValues` (regression) and :class:`PredictedLabels` (multilabel)
replay answers computed beforehand (one ``predict`` pass over the samples,
read batch by batch), so every scorer reuses the same predictions.
Segmentation is scored from a per-pixel confusion matrix accumulated batch by
batch, so memory stays at one batch whatever the fold's size. Raw outputs
become probabilities, classes or values through the fold's
:class:`~gridcv.training.outputs.OutputLayout` (softmax, one sigmoid unit, logits, values).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.metrics import get_scorer

from gridcv.data.sources import Source
from gridcv.training.batches import IndexBatches
from gridcv.training.outputs import OutputKind, OutputLayout


def score_samples(
    model: keras.Model,
    source: Source,
    indices: np.ndarray,
    scorers: Sequence[str],
    batch_size: int,
    layout: OutputLayout,
) -> dict[str, float]:
    """Scores the model on the samples at ``indices`` with each named scorer.

    Args:
        model: The trained model.
        source: Where the samples are read from.
        indices: The samples to score (a validation fold, or a sample of a training split).
        scorers: scikit-learn scorer names, or segmentation scorers for per-pixel masks.
        batch_size: Samples per ``predict`` batch.
        layout: What the model's outputs mean (see :func:`~gridcv.training.outputs.output_layout`).

    Returns:
        Scorer name -> score.
    """
    if source.task == "segmentation":
        confusion = pixel_confusion(model, IndexBatches(source, indices, batch_size), layout)
        return segmentation_scores(scorers, confusion)
    batches = IndexBatches(source, indices, batch_size, labels=False)
    raw = np.asarray(model.predict(batches.feed(), verbose=0))
    return score_predictions(scorers, source.labels()[indices], raw, layout)


def score_predictions(
    scorers: Sequence[str], y_true: np.ndarray, raw: np.ndarray, layout: OutputLayout
) -> dict[str, float]:
    """Scores one sample's worth of raw model outputs per row against the true targets.

    Args:
        scorers: scikit-learn scorer names.
        y_true: Class ids, numeric targets or 0/1 label rows, row ``i`` for ``raw[i]``.
        raw: The model's outputs.
        layout: What the outputs mean: probabilities, logits, values or per-label probabilities.
    """
    estimator: BaseEstimator
    if layout.kind is OutputKind.VALUES:
        estimator = PredictedValues(layout.values(raw))
    elif layout.kind in (OutputKind.LABEL_PROBABILITIES, OutputKind.LABEL_LOGITS):
        estimator = PredictedLabels(layout.probabilities(raw), layout.classes(raw))
    else:
        estimator = PredictedProbabilities(layout.probabilities(raw), layout.n_classes, layout.classes(raw))
    return score_fold(scorers, y_true, estimator)


def pixel_confusion(model: keras.Model, batches: IndexBatches, layout: OutputLayout) -> np.ndarray:
    """Accumulates a per-pixel confusion matrix batch by batch (O(batch) memory)."""
    n_classes = layout.n_classes
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    for index in range(len(batches)):
        x, masks = batches.load(0, index)[:2]
        predicted = layout.classes(np.asarray(model.predict_on_batch(x)))
        confusion += confusion_matrix(masks, predicted, n_classes)
    return confusion


class PredictedProbabilities(ClassifierMixin, BaseEstimator):
    """A fitted 'classifier' that replays precomputed class probabilities and classes.

    ``X`` given to ``predict``/``predict_proba`` must be the row numbers
    ``0 .. n-1`` of the validation fold (that is what :func:`score_fold` passes).
    The classes are given apart from the probabilities because a threshold on
    a logit (class 1 when it is above 0) is exact where its sigmoid may round to 0.5.
    """

    def __init__(self, probabilities: np.ndarray, n_classes: int, classes: np.ndarray | None = None) -> None:
        self.probabilities = probabilities
        self.n_classes = n_classes
        self.classes = classes
        self.classes_ = np.arange(n_classes)

    def __sklearn_is_fitted__(self) -> bool:
        return True

    def predict_proba(self, X: np.ndarray) -> np.ndarray:  # noqa: N803 (scikit-learn's name)
        return self.probabilities[np.asarray(X).ravel()]

    def predict(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        rows = np.asarray(X).ravel()
        return self.probabilities[rows].argmax(axis=1) if self.classes is None else self.classes[rows]

    def decision_function(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        p = self.predict_proba(X)
        return p[:, 1] if p.shape[1] == 2 else p


class PredictedValues(RegressorMixin, BaseEstimator):
    """A fitted regressor that replays precomputed predictions (``X`` holds row numbers, as above)."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values

    def __sklearn_is_fitted__(self) -> bool:
        return True

    def predict(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        return self.values[np.asarray(X).ravel()]


class PredictedLabels(ClassifierMixin, BaseEstimator):
    """A fitted multilabel classifier that replays precomputed per-label probabilities and 0/1 labels."""

    def __init__(self, probabilities: np.ndarray, labels: np.ndarray) -> None:
        self.probabilities = probabilities
        self.labels = labels
        self.classes_ = [np.arange(2)] * probabilities.shape[1]

    def __sklearn_is_fitted__(self) -> bool:
        return True

    def predict_proba(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        return self.probabilities[np.asarray(X).ravel()]

    def predict(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        return self.labels[np.asarray(X).ravel()]

    def decision_function(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        return self.predict_proba(X)


def score_fold(scorers: Sequence[str], y_true: np.ndarray, estimator: BaseEstimator) -> dict[str, float]:
    """Scores one validation fold with each named scikit-learn scorer.

    Args:
        scorers: scikit-learn scorer names (``accuracy``, ``f1_macro``, ``neg_log_loss``...).
        y_true: True targets of the validation fold.
        estimator: The fold's predictions, row ``i`` for ``y_true[i]``.

    Returns:
        Scorer name -> score.
    """
    rows = np.arange(len(y_true)).reshape(-1, 1)
    return {name: float(get_scorer(name)(estimator, rows, y_true)) for name in scorers}


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Pixel counts ``[true class, predicted class]`` of one batch of class maps."""
    flat = y_true.astype(np.int64).ravel() * n_classes + y_pred.astype(np.int64).ravel()
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def segmentation_scores(scorers: Sequence[str], confusion: np.ndarray) -> dict[str, float]:
    """Per-pixel scores of a validation fold from its accumulated confusion matrix.

    ``mean_iou`` averages intersection-over-union over the classes that occur
    (in the masks or the predictions), as ``keras.metrics.MeanIoU`` does;
    ``pixel_accuracy`` is the fraction of pixels classified correctly.

    Args:
        scorers: Names among ``mean_iou`` and ``pixel_accuracy``.
        confusion: ``(n_classes, n_classes)`` pixel counts, true class by row.

    Returns:
        Scorer name -> score.
    """
    confusion = confusion.astype(np.float64)
    hits = np.diag(confusion)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - hits
    values = {
        "mean_iou": float(np.mean(hits[union > 0] / union[union > 0])) if (union > 0).any() else float("nan"),
        "pixel_accuracy": float(hits.sum() / confusion.sum()) if confusion.sum() else float("nan"),
    }
    return {name: values[name] for name in scorers}
