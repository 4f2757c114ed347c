"""A data module written the way Keras tutorials write one: a Sequence over a list of image files.

gridcv needs two functions of it (named in digits_sequence.yaml): ``labels()``, every
sample's class, which the splitter stratifies by; and ``make(...)``, the Sequence of the
samples a fold trains or is scored on. Everything else is plain Keras.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import keras
import numpy as np
from PIL import Image

FOLDER = Path(__file__).parent / "data" / "digits_images"  # <digit>/<i>.png, written by data.prepare


@functools.cache
def image_files() -> tuple[list[Path], np.ndarray]:
    """Every image file and its class (the name of its folder), in a fixed order."""
    paths = sorted(FOLDER.glob("*/*.png"))
    return paths, np.array([int(p.parent.name) for p in paths])


class DigitsSequence(keras.utils.Sequence):
    """Batches of images loaded from their files in ``__getitem__``, reshuffled after every epoch."""

    def __init__(self, paths: list[Path], labels: np.ndarray, batch_size: int, shuffle: bool = False) -> None:
        super().__init__()
        self.paths = paths
        self.labels = labels
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.order = np.arange(len(paths))
        if shuffle:
            np.random.shuffle(self.order)

    def __len__(self) -> int:
        return math.ceil(len(self.paths) / self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        images = [np.asarray(Image.open(self.paths[i]), dtype=np.float32) / 255.0 for i in rows]
        return np.stack(images)[..., None], self.labels[rows]

    def on_epoch_end(self) -> None:
        if self.shuffle:
            np.random.shuffle(self.order)


def labels() -> np.ndarray:
    """The class of every sample (gridcv plans the folds with it)."""
    return image_files()[1]


def make(indices: np.ndarray, batch_size: int, seed: int, training: bool) -> DigitsSequence:
    """The Sequence of the samples at ``indices``: shuffled when training, in order when scored."""
    paths, classes = image_files()
    return DigitsSequence([paths[i] for i in indices], classes[indices], batch_size, shuffle=training)
