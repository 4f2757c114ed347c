"""What the training generator does to a fold's samples: augmentation and class balancing.

Pure numpy/scipy, no Keras. Every random draw comes from a generator the
caller seeds with (fold seed, epoch[, batch index]), so a resumed fold sees
exactly the batches it would have seen without the interruption.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class Augmentation:
    """Random transforms of training batches (the ``data.augment`` keys).

    Attributes:
        horizontal_flip: Mirror left-right with probability 1/2.
        vertical_flip: Mirror top-bottom with probability 1/2.
        rotation: Rotate by up to this many degrees either way.
        shift: Translate by up to this fraction of the height and of the width.
        zoom: Scale by a factor drawn from ``[1 - zoom, 1 + zoom]``.
        brightness: Add a value drawn from ``[-brightness, brightness]``.
        contrast: Scale about the per-channel mean by a factor from ``[1 - c, 1 + c]``.
    """

    horizontal_flip: bool = False
    vertical_flip: bool = False
    rotation: float = 0.0
    shift: float = 0.0
    zoom: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | None) -> Augmentation | None:
        """The augmentation of a validated ``data.augment`` mapping; None when it does nothing."""
        if not spec:
            return None
        aug = cls(**{f.name: spec[f.name] for f in fields(cls) if f.name in spec})
        return aug if aug != cls() else None

    @property
    def geometric(self) -> bool:
        """Whether pixels move (so masks must move with them)."""
        return bool(self.rotation or self.shift or self.zoom)


def resolve_augmentation(data_spec: Mapping[str, Any], params: Mapping[str, Any]) -> Augmentation | None:
    """The augmentation of one fold: grid key ``augment`` overrides ``data.augment``.

    ``augment: false`` turns it off, ``true`` uses ``data.augment`` as declared,
    a mapping replaces it, so "augmentation on/off" can be a grid dimension.
    """
    choice = params.get("augment", True)
    if choice is False:
        return None
    if isinstance(choice, Mapping):
        return Augmentation.from_spec(choice)
    return Augmentation.from_spec(data_spec.get("augment"))


def augment_batch(
    x: np.ndarray,
    masks: np.ndarray | None,
    aug: Augmentation,
    rng: np.random.Generator,
    value_range: tuple[float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Applies random transforms to a batch of images and, identically, to their masks.

    Args:
        x: Images, ``(n, h, w)`` or ``(n, h, w, channels)``.
        masks: Class maps ``(n, h, w)`` transformed with the same geometry (nearest
            neighbour, so ids stay ids), or None.
        aug: What to apply.
        rng: Source of every draw; seed it with (seed, epoch, batch index).
        value_range: Clip intensities to this range after brightness/contrast.

    Returns:
        New arrays; the inputs are not modified.
    """
    n = len(x)
    draws = rng.random((n, 7))  # one row per sample, drawn whatever is enabled: fixed stream
    x = np.array(x, copy=True)
    masks = None if masks is None else np.array(masks, copy=True)
    for i in range(n):
        flip_h = aug.horizontal_flip and draws[i, 0] < 0.5
        flip_v = aug.vertical_flip and draws[i, 1] < 0.5
        if flip_h or flip_v:
            axes = tuple(a for a, on in ((0, flip_v), (1, flip_h)) if on)
            x[i] = np.flip(x[i], axes)
            if masks is not None:
                masks[i] = np.flip(masks[i], axes)
        if aug.geometric:
            matrix, offset = _affine(x.shape[1:3], aug, draws[i, 2:6])
            x[i] = _warp(x[i], matrix, offset, order=1)
            if masks is not None:
                masks[i] = _warp(masks[i], matrix, offset, order=0)
    if aug.brightness or aug.contrast:
        x = _intensity(x, aug, rng, value_range)
    return x, masks


def _affine(shape: tuple[int, ...], aug: Augmentation, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Output -> input pixel mapping of one rotate-zoom-shift about the centre."""
    h, w = shape[0], shape[1]
    angle = math.radians(aug.rotation * (2 * u[0] - 1))
    scale = 1 + aug.zoom * (2 * u[1] - 1)
    shift = np.array([aug.shift * h * (2 * u[2] - 1), aug.shift * w * (2 * u[3] - 1)])
    cos, sin = math.cos(angle), math.sin(angle)
    matrix = np.array([[cos, -sin], [sin, cos]]) / scale
    centre = np.array([(h - 1) / 2, (w - 1) / 2])
    offset = centre - matrix @ centre - shift
    return matrix, offset


def _warp(image: np.ndarray, matrix: np.ndarray, offset: np.ndarray, order: int) -> np.ndarray:
    if image.ndim == 3:  # channels move together: identity on the last axis
        full = np.eye(3)
        full[:2, :2] = matrix
        return ndimage.affine_transform(image, full, offset=[*offset, 0], order=order, mode="reflect")
    return ndimage.affine_transform(image, matrix, offset=offset, order=order, mode="reflect")


def _intensity(
    x: np.ndarray, aug: Augmentation, rng: np.random.Generator, value_range: tuple[float, float] | None
) -> np.ndarray:
    n = len(x)
    shape = (n,) + (1,) * (x.ndim - 1)
    out = x.astype(np.float32, copy=False)
    if aug.contrast:
        factor = rng.uniform(1 - aug.contrast, 1 + aug.contrast, n).reshape(shape).astype(np.float32)
        mean = out.mean(axis=(1, 2), keepdims=True)
        out = (out - mean) * factor + mean
    if aug.brightness:
        out = out + rng.uniform(-aug.brightness, aug.brightness, n).reshape(shape).astype(np.float32)
    if value_range is not None:
        out = np.clip(out, *value_range)
    return out.astype(x.dtype, copy=False)


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
