"""The Keras generator: one batch at a time from any :class:`Source`, by index.

Imports Keras, so it is only imported inside a worker (or inline runs).
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np

from gridcv.data.sources import Source


def epoch_order(indices: np.ndarray, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """The sample order of one epoch: a pure function of (seed, epoch).

    A fold resumed at epoch ``e`` therefore sees exactly the batches it would
    have seen without the interruption.
    """
    if not shuffle:
        return indices
    rng = np.random.default_rng([seed, epoch])
    return indices[rng.permutation(len(indices))]


class IndexBatches(keras.utils.PyDataset):
    """Batches of a source's samples, read from disk when Keras asks for them.

    Holds only an index array; peak memory is a few batches whatever the
    size of the data. The current epoch is set by :class:`EpochCursor`.
    """

    def __init__(
        self,
        source: Source,
        indices: np.ndarray,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        labels: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.indices = np.asarray(indices, dtype=np.int64)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = seed
        self.labels = labels
        self._epoch = 0
        self._order = epoch_order(self.indices, seed, 0, shuffle)

    def set_epoch(self, epoch: int) -> None:
        """Switches to the sample order of ``epoch``."""
        if epoch != self._epoch:
            self._epoch = epoch
            self._order = epoch_order(self.indices, self.seed, epoch, self.shuffle)

    def __len__(self) -> int:
        return math.ceil(len(self.indices) / self.batch_size)

    def __getitem__(self, index: int) -> Any:
        batch = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        x, y = self.source.read(batch)
        return (x, y) if self.labels else (x,)


class EpochCursor(keras.callbacks.Callback):
    """Tells the training generator which epoch is starting."""

    def __init__(self, batches: IndexBatches) -> None:
        super().__init__()
        self.batches = batches

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.batches.set_epoch(epoch)
