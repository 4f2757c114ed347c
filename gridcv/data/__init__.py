"""Data sources and readers: what the samples are, read by index from disk. No Keras.

- :mod:`~gridcv.data.sources`: the :class:`Source` interface, ``.npy`` arrays, opening any source.
- :mod:`~gridcv.data.files` and :mod:`~gridcv.data.listing`: one file per sample (image folders, CSV).
- :mod:`~gridcv.data.cache`: every sample decoded once into a memory-mapped cache (``data.cache``),
  read back by :mod:`~gridcv.data.cached`.
- :mod:`~gridcv.data.sampling`: which samples an epoch sees, in what order (pure).
- :mod:`~gridcv.data.augment`: random transforms of training batches (pure numpy/scipy).

The Keras generator that feeds ``fit`` from a source lives in :mod:`gridcv.training.batches`.
"""

from gridcv.data.sources import ArraySource, Source, open_source, prepare_data

__all__ = ["ArraySource", "Source", "open_source", "prepare_data"]
