"""Materialises scikit-learn's bundled digits as .npy files (no download: they ship with it)."""

from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits


def prepare(experiment_dir: Path) -> None:
    """Writes data/digits_x.npy (n, 8, 8, 1) float32 in [0, 1] and data/digits_y.npy (int64)."""
    digits = load_digits()
    out = experiment_dir / "data"
    out.mkdir(exist_ok=True)
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    np.save(out / "digits_x.npy", x)
    np.save(out / "digits_y.npy", digits.target.astype(np.int64))
