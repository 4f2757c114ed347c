"""The Keras generator: one batch at a time from any :class:`~gridcv.data.sources.Source`, by index."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import keras
import numpy as np

from gridcv.config.data import AugmentSpec, DataSpec, PythonData, augmentation_of, balance_of
from gridcv.data.augment import augment_batch
from gridcv.data.sampling import class_weights, epoch_order, oversampled
from gridcv.data.sources import Source
from gridcv.training.devices import data_threads


class IndexBatches(keras.utils.PyDataset):
    """Batches of a source's samples, read from disk when Keras asks for them.

    Holds only index arrays; peak memory is a few batches whatever the size
    of the data. Batch ``b`` of epoch ``e`` is a pure function of (seed, e, b):
    the sample order, the oversampling draws and the augmentation draws all
    come from generators seeded with them.

    Args:
        source: Where samples are read from.
        indices: The samples of this fold's part (train or validation).
        batch_size: Samples per batch (the last batch may be smaller).
        shuffle: Reorder samples every epoch.
        seed: The fold's seed.
        labels: Yield targets with the inputs (``(x, y)``), or inputs only (``(x,)``).
        augment: Random transforms applied to every batch; None for validation.
        balance: ``oversample`` minority classes every epoch, yield ``class_weight``
            sample weights, or ``none``.
        feed: How :meth:`feed` hands batches to ``fit``: a ``tf_data`` pipeline or
            this ``py_dataset`` itself.
        workers: Batches prepared in parallel (tf.data map calls, or PyDataset workers).
        use_multiprocessing: PyDataset workers are processes (``py_dataset`` only).
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
        augment: AugmentSpec | None = None,
        balance: str = "none",
        feed: str = "tf_data",
        workers: int = 1,
        use_multiprocessing: bool = False,
        **kwargs: Any,
    ) -> None:
        if feed == "py_dataset":
            kwargs = {"workers": workers, "use_multiprocessing": use_multiprocessing, **kwargs}
        super().__init__(**kwargs)
        self.source = source
        self.indices = np.asarray(indices, dtype=np.int64)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = seed
        self.labels = labels
        self.augment = augment
        self.balance = balance
        self.feed_kind = feed
        self.parallel = workers
        self._weights = None
        if balance == "class_weight":  # Keras's class_weight, as per-sample weights in the batch
            self._weights = class_weights(source.labels()[self.indices], source.n_classes)
        self._lock = threading.Lock()
        self._orders: dict[int, np.ndarray] = {}
        self._epoch = 0
        self._length = len(self.epoch_indices(0))

    def epoch_indices(self, epoch: int) -> np.ndarray:
        """The samples of ``epoch`` in the order they are batched (cached for two epochs)."""
        with self._lock:
            if epoch not in self._orders:
                base = self.indices
                if self.balance == "oversample":
                    base = oversampled(self.indices, self.source.labels(), self.seed, epoch)
                self._orders[epoch] = epoch_order(base, self.seed, epoch, self.shuffle)
                order = self._orders[epoch]
                while len(self._orders) > 2:  # the oldest entry, never the one just made
                    del self._orders[next(iter(self._orders))]
                return order
            return self._orders[epoch]

    def set_epoch(self, epoch: int) -> None:
        """Switches ``__getitem__`` to the batches of ``epoch`` (the ``py_dataset`` feed)."""
        self._epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self._length / self.batch_size)

    def __getitem__(self, index: int) -> Any:
        return self.load(self._epoch, index)

    def load(self, epoch: int, index: int) -> tuple[np.ndarray, ...]:
        """Batch ``index`` of ``epoch``: ``(x, y[, sample_weight])``, or ``(x,)`` without labels."""
        batch = self.epoch_indices(epoch)[index * self.batch_size : (index + 1) * self.batch_size]
        x, y = self.source.read(batch)
        if self.augment is not None:
            segmentation = self.source.task == "segmentation"
            rng = np.random.default_rng([self.seed, epoch, index, 2])
            value_range = getattr(self.source, "value_range", None)
            x, masks = augment_batch(x, y if segmentation else None, self.augment, rng, value_range)
            y = masks if masks is not None else y
        if not self.labels:
            return (x,)
        if self._weights is not None:
            return (x, y, self._weights[y])
        return (x, y)

    def feed(self, first_epoch: int = 0, epochs: int = 1) -> Any:
        """What to give ``fit``/``predict`` for epochs ``first_epoch .. epochs-1``.

        With ``tf_data``, a ``tf.data.Dataset`` of ``(epochs - first_epoch) * len(self)``
        batches in which every element knows its epoch, so prefetching across an
        epoch boundary cannot mix two epochs' orders (pass ``steps_per_epoch=len(self)``).
        """
        if self.feed_kind == "py_dataset":
            return self
        n_batches = len(self)
        steps = max(0, epochs - first_epoch) * n_batches
        return self._pipeline(0, steps, lambda step: (first_epoch + step // n_batches, step % n_batches))

    @contextmanager
    def epoch(self, epoch: int, first: int = 0) -> Iterator[Any]:
        """An iterator over batches ``first .. len(self)-1`` of ``epoch``, for ``model.train_function``.

        ``first`` > 0 resumes an epoch in its middle. With ``tf_data``, batches are read by
        :meth:`load` in a background thread, in order, while the model trains: Keras's own
        PyDataset path (``tf.data.from_generator`` plus a Python queue) costs ~40% of the
        throughput of a small model. With ``py_dataset``, Keras's PyDataset adapter reads
        them (its workers and ``use_multiprocessing`` apply), as ``fit`` would.
        """
        if self.feed_kind != "py_dataset":
            yield iter(self._pipeline(first, len(self), lambda index: (epoch, index)))
            return
        from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

        adapter = PyDatasetAdapter(_EpochView(self, epoch, first), shuffle=False)
        dataset = adapter.get_tf_dataset()
        adapter.on_epoch_begin()
        try:
            yield iter(dataset)
        finally:
            adapter.on_epoch_end()

    def _pipeline(self, start: int, stop: int, position: Callable[[int], tuple[int, int]]) -> Any:
        """A ``tf.data`` pipeline of the batches of steps ``start .. stop-1`` (``position``: step ->
        (epoch, batch)), read in order in a background thread and prefetched."""
        import tensorflow as tf

        sample = self.load(*position(start)) if stop > start else self.load(0, 0)  # dtypes and shapes
        types = [tf.as_dtype(a.dtype) for a in sample]

        def load(step: np.int64) -> list[np.ndarray]:
            return list(self.load(*position(int(step))))

        def read(step: Any) -> tuple[Any, ...]:
            arrays = tf.numpy_function(load, [step], types, stateful=False)
            for array, like in zip(arrays, sample, strict=True):
                array.set_shape((None, *like.shape[1:]))
            return tuple(arrays)

        dataset = tf.data.Dataset.range(start, max(start, stop))
        if (threads := data_threads()) is not None:  # several CPU slots share the cores
            options = tf.data.Options()
            options.threading.private_threadpool_size = threads
            dataset = dataset.with_options(options)
        if self.parallel > 1:  # deterministic: parallel reads still come out in step order
            dataset = dataset.map(read, num_parallel_calls=self.parallel, deterministic=True)
        else:
            dataset = dataset.map(read)
        return dataset.prefetch(max(2, self.parallel))


class _EpochView(keras.utils.PyDataset):
    """Batches ``first ..`` of one epoch of an :class:`IndexBatches`, for Keras's PyDataset adapter."""

    def __init__(self, batches: IndexBatches, epoch: int, first: int) -> None:
        super().__init__(workers=batches.workers, use_multiprocessing=batches.use_multiprocessing)
        self.batches, self.epoch_index, self.first = batches, epoch, first

    def __len__(self) -> int:
        return len(self.batches) - self.first

    def __getitem__(self, index: int) -> Any:
        return self.batches.load(self.epoch_index, self.first + index)


def fold_batches(
    source: Source,
    data: DataSpec,
    params: Mapping[str, Any],
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    batch_size: int,
    seed: int,
    shuffle: bool,
) -> tuple[IndexBatches, IndexBatches]:
    """The training and validation generators of one fold (see the two functions below)."""
    train = training_batches(source, data, params, train_idx, batch_size, seed, shuffle)
    return train, validation_batches(source, data, test_idx, batch_size)


def training_batches(
    source: Source,
    data: DataSpec,
    params: Mapping[str, Any],
    indices: np.ndarray,
    batch_size: int,
    seed: int,
    shuffle: bool,
) -> IndexBatches:
    """Batches to train on: shuffled, balanced and augmented as the ``data:`` section and the
    candidate's grid keys (``augment``, ``balance``) say, each a pure function of (seed, epoch, batch)."""
    return IndexBatches(
        source,
        indices,
        batch_size,
        shuffle=shuffle,
        seed=seed,
        augment=augmentation_of(data, params),
        balance=balance_of(data, params),
        **_loading(data),
    )


def validation_batches(source: Source, data: DataSpec, indices: np.ndarray, batch_size: int) -> IndexBatches:
    """Batches of samples as they are, in order: what callbacks monitor and what is scored."""
    return IndexBatches(source, indices, batch_size, **_loading(data))


def _loading(data: DataSpec) -> dict[str, Any]:
    assert not isinstance(data, PythonData)  # the user's own pipeline feeds fit (gridcv.training.user_data)
    return {"feed": data.feed, "workers": data.workers, "use_multiprocessing": data.use_multiprocessing}


class EpochCursor(keras.callbacks.Callback):
    """Tells the training generator which epoch is starting."""

    def __init__(self, batches: IndexBatches) -> None:
        super().__init__()
        self.batches = batches

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.batches.set_epoch(epoch)
