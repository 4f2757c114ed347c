"""Reading a complete decoded-image cache (see :mod:`gridcv.data.cache`, which builds it).

A worker opens the cache as a source: its manifest says what was decoded, and the ``.npy``
files are read by row ranges, as ``kind: arrays`` is, with nothing listed or decoded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from gridcv.config.data import ArraysData, CsvData, ImagesData
from gridcv.data.inputs import InputFormat
from gridcv.data.sources import ArraySource

VERSION = 1  # of the cache's layout: a manifest of another version is not read


def read_manifest(stem: Path) -> dict[str, Any] | None:
    """The manifest of the cache at ``stem``, or None (none yet, or unreadable)."""
    try:
        manifest: dict[str, Any] = json.loads(stem.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None
    return manifest if manifest.get("version") == VERSION else None


class CachedSource:
    """A source read from a complete cache: the same samples, labels and arrays as the files give.

    Inputs are read by row ranges (``pread``, as :class:`~gridcv.data.sources.ArraySource` does) and
    images scaled to ``dtype`` with the same operation decoding uses, so batches are bit-for-bit
    those of the files.
    """

    def __init__(self, manifest: dict[str, Any], stem: Path, dtype: str, n_classes: int) -> None:
        key = manifest["key"][:12]

        def part(name: str) -> Path:
            return stem.with_name(f"{stem.name}-{key}.{name}.npy")

        labels = np.load(part("y"), allow_pickle=False)
        groups = np.load(part("groups"), allow_pickle=False) if part("groups").exists() else None
        x = np.load(part("x"), mmap_mode="r", allow_pickle=False)
        self._x = ArraySource(x, labels, groups, str(x.dtype), part("x"))
        self._masks = None
        if manifest.get("mask_shape") is not None:
            masks = np.load(part("masks"), mmap_mode="r", allow_pickle=False)
            self._masks = ArraySource(masks, labels, None, "int32", part("masks"))
        self._labels = labels
        self._groups = groups
        self._scale = np.dtype(dtype) if x.dtype == np.uint8 else None
        self.task = manifest.get("task") or ("classification" if self._masks is None else "segmentation")
        self.value_range = (0.0, 1.0) if self._scale is not None else None
        self._n_classes = int(n_classes)
        self._format = InputFormat.from_dict(manifest["input_format"])

    @property
    def n_samples(self) -> int:
        return len(self._labels)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self._x.input_shape

    @property
    def n_classes(self) -> int:
        return self._n_classes

    def labels(self) -> np.ndarray:
        return self._labels

    def groups(self) -> np.ndarray | None:
        return self._groups

    def describe(self) -> InputFormat:
        """What the files' source described when the cache was built (images decoded, scaled by 1/255)."""
        return self._format

    def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x, y = self._x.read(indices)
        if self._scale is not None:  # as FileSource.read scales decoded images
            x = np.multiply(x, np.asarray(1 / 255, dtype=self._scale), dtype=self._scale)
        if self._masks is not None:
            y = self._masks.read(indices)[0]
        return x, y


def open_cached(stem: Path, spec: ImagesData | CsvData | ArraysData) -> CachedSource | None:
    """The complete cache at ``stem`` as a source (no file is listed or decoded), or None."""
    manifest = read_manifest(stem)
    if manifest is None or not manifest.get("complete"):
        return None
    return CachedSource(manifest, stem, spec.dtype, manifest["n_classes"])
