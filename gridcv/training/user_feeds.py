"""A user's pipeline (``data: kind: python``) fed to Keras's ``fit``, epoch after epoch.

:class:`~gridcv.training.user_data.UserPipelines` calls the user's factory; this module turns
what it makes into what ``fit`` reads: a PyDataset, ``tf.data`` pipeline or generator remade
per epoch when the factory takes ``epoch`` (so a resumed fold reads the epoch it resumes at), a
generator as a PyDataset of a fixed number of steps, and the fold's checkpoints driven at each
epoch's end (a user's pipeline cannot be entered inside an epoch).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from gridcv.errors import DataError
from gridcv.training.checkpointing import FoldCheckpoints
from gridcv.training.fitting import CheckpointEachEpoch

if TYPE_CHECKING:
    from gridcv.training.user_data import Made, UserPipelines


class UserFeed:
    """The training feed of a user pipeline: one pipeline per fold, or (epoch-taking factory) per epoch.

    It stands where :class:`~gridcv.training.batches.IndexBatches` does in ``fit``:
    :meth:`feed` is what ``fit`` gets, :attr:`steps` its ``steps_per_epoch``, and
    :meth:`set_epoch` is told of each epoch by the epoch cursor.
    """

    def __init__(self, pipelines: UserPipelines, indices: np.ndarray, first: Made) -> None:
        self.pipelines = pipelines
        self.indices = indices
        self.first = first
        self.steps = first.steps
        self._epochs: EpochPyDatasets | GeneratorBatches | None = None

    def set_epoch(self, epoch: int) -> None:
        """Makes the epoch's pipeline (a generator's always, others' when the factory takes epoch)."""
        if self._epochs is not None:
            self._epochs.set_epoch(epoch)

    def _make(self, epoch: int) -> Made:
        # The first pipeline serves epoch 0, but a generator's first batch was spent finding the input shape.
        if epoch == 0 and self.first.kind != "generator":
            return self.first
        return self.pipelines.make(self.indices, training=True, epoch=epoch)

    def feed(self, first_epoch: int, last_epoch: int) -> Any:
        """What ``fit`` trains on for epochs ``first_epoch .. last_epoch - 1``."""
        made = self.first
        if made.kind == "generator":
            self._epochs = GeneratorBatches(lambda e: self._make(e).data, made.steps or 1, first_epoch)
            return self._epochs
        if not self.pipelines.per_epoch:
            return made.data
        if made.kind == "py_dataset":
            self._epochs = EpochPyDatasets(lambda e: self._make(e).data, self._make(first_epoch).data, first_epoch)
            return self._epochs
        if made.steps is None:
            raise DataError(
                f"{self.pipelines.who} returned a tf.data.Dataset of unknown length, and takes epoch, so gridcv "
                "chains one pipeline per epoch and must know how many batches each gives. Return (dataset, steps)."
            )
        parts = [self._make(e).data.take(made.steps) for e in range(first_epoch, max(first_epoch + 1, last_epoch))]
        return functools.reduce(lambda a, b: a.concatenate(b), parts)


class EpochPyDatasets(keras.utils.PyDataset):
    """An epoch-taking factory's PyDatasets as one: each epoch reads the dataset made for it."""

    def __init__(self, make: Callable[[int], Any], current: Any, epoch: int) -> None:
        super().__init__(
            workers=current.workers,
            use_multiprocessing=current.use_multiprocessing,
            max_queue_size=current.max_queue_size,
        )
        self._make = make
        self._epoch = epoch
        self._current = current

    def set_epoch(self, epoch: int) -> None:
        if epoch != self._epoch:
            self._epoch, self._current = epoch, self._make(epoch)

    def __len__(self) -> int:
        return len(self._current)

    def __getitem__(self, index: int) -> Any:
        return self._current[index]

    def on_epoch_begin(self) -> None:
        self._current.on_epoch_begin()

    def on_epoch_end(self) -> None:
        self._current.on_epoch_end()


class GeneratorBatches(keras.utils.PyDataset):
    """A generator factory as a PyDataset of ``steps`` batches: each pass reads a fresh generator in order.

    Keras reads batch 0 again at the start of every epoch (and twice before the first,
    to learn the shapes): each time, the factory makes the generator anew for the
    current epoch.
    """

    def __init__(self, make: Callable[[int], Iterator[Any]], steps: int, epoch: int) -> None:
        super().__init__()  # one worker: a generator is read in order
        self._make = make
        self._steps = steps
        self._epoch = epoch
        self._iterator: Iterator[Any] | None = None
        self._next = 0

    def set_epoch(self, epoch: int) -> None:
        self._epoch = epoch

    def __len__(self) -> int:
        return self._steps

    def __getitem__(self, index: int) -> Any:
        if self._iterator is None or index == 0 or index != self._next:
            self._iterator = iter(self._make(self._epoch))
            for _ in range(index):
                next(self._iterator)
        self._next = index + 1
        try:
            return next(self._iterator)
        except StopIteration:
            raise DataError(
                f"the generator data.factory made ended after {index} batches, but an epoch takes {self._steps} "
                "(ceil(len(indices) / batch_size)). Yield that many, or return (generator, steps)."
            ) from None


class FeedCursor(keras.callbacks.Callback):
    """Tells a user pipeline's training feed which epoch is starting (as EpochCursor tells gridcv's batches)."""

    def __init__(self, feed: UserFeed) -> None:
        super().__init__()
        self.feed = feed

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.feed.set_epoch(epoch)


def fit_user_feed(
    model: keras.Model,
    feed: UserFeed,
    monitor: Any,
    callbacks: list[keras.callbacks.Callback],
    first: int,
    last: int,
    checkpoints: FoldCheckpoints,
) -> None:
    """Trains on a user pipeline with Keras's ``fit`` from epoch ``first`` to ``last``, checkpointing each epoch."""
    model.fit(
        feed.feed(first, last),
        steps_per_epoch=feed.steps,
        epochs=last,
        initial_epoch=first,
        validation_data=monitor,
        verbose=0,
        # fit's own shuffle would use Python's global random, whose state no checkpoint can see.
        shuffle=False,
        callbacks=[FeedCursor(feed), *callbacks, CheckpointEachEpoch(checkpoints)],
    )
