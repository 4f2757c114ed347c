"""Random transforms of training batches (``data.augment``). Pure numpy/scipy, no Keras.

Every random draw comes from a generator the caller seeds with (fold seed,
epoch, batch index), so a resumed fold sees exactly the batches it would
have seen without the interruption.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from gridcv.config.data import AugmentSpec


def augment_batch(
    x: np.ndarray,
    masks: np.ndarray | None,
    aug: AugmentSpec,
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


def _affine(shape: tuple[int, ...], aug: AugmentSpec, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
    x: np.ndarray, aug: AugmentSpec, rng: np.random.Generator, value_range: tuple[float, float] | None
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
