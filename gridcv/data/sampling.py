"""Which samples an epoch sees, and in what order: pure functions of (fold seed, epoch). No Keras.

A fold resumed at epoch ``e`` therefore sees exactly the batches it would
have seen without the interruption.
"""

from __future__ import annotations

import numpy as np


def epoch_order(indices: np.ndarray, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """The sample order of one epoch: a pure function of (seed, epoch)."""
    if not shuffle:
        return indices
    rng = np.random.default_rng([seed, epoch])
    return indices[rng.permutation(len(indices))]


def oversampled(indices: np.ndarray, labels: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """One epoch's samples with every class topped up to the size of the largest.

    Minority samples are drawn with replacement, afresh each epoch, as a pure
    function of (seed, epoch). The result is grouped by class; shuffle it.
    """
    rng = np.random.default_rng([seed, epoch, 1])
    y = labels[indices]
    classes, counts = np.unique(y, return_counts=True)
    top = int(counts.max()) if len(counts) else 0
    parts = []
    for c, count in zip(classes, counts, strict=True):
        members = indices[y == c]
        parts += [members, rng.choice(members, top - int(count), replace=True)]
    return np.concatenate(parts) if parts else indices


def class_weights(train_labels: np.ndarray, n_classes: int) -> np.ndarray:
    """scikit-learn's "balanced" weights, ``n / (k * count)``, per class id (1 for absent classes)."""
    counts = np.bincount(train_labels, minlength=n_classes).astype(np.float64)
    present = counts > 0
    weights = np.ones(n_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights.astype(np.float32)
