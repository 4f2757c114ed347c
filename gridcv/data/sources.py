"""Data sources: what the samples are, read by index, never loaded whole.

A source knows its targets (kept in memory: a class id, a number or a row of
0/1 labels per sample) and reads the inputs of any set of indices from disk on
demand.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from gridcv.config.data import ArraysData, DataSpec, PythonData
from gridcv.config.tasks import DECLARED, TaskOrigin
from gridcv.data.inputs import InputFormat
from gridcv.data.targets import array_targets
from gridcv.errors import DataError
from gridcv.refs import Ref


class Source(Protocol):
    """What the training code needs from any kind of data.

    ``task`` is ``"classification"`` (one class per sample; ``read`` returns
    labels), ``"regression"`` (one number, or a row of numbers, per sample),
    ``"multilabel"`` (a row of 0/1 per sample) or ``"segmentation"`` (``read``
    returns per-pixel class maps).
    """

    task: str

    @property
    def n_samples(self) -> int:
        """Number of samples."""
        ...

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input sample."""
        ...

    @property
    def n_classes(self) -> int:
        """Number of classes (labels, or mask values, are 0 .. n_classes - 1); of targets (regression)
        or labels (multilabel): what the builder gets as ``n_classes``."""
        ...

    def labels(self) -> np.ndarray:
        """The target of every sample, in memory (for segmentation: a label per image to stratify by)."""
        ...

    def groups(self) -> np.ndarray | None:
        """The group of every sample, or None."""
        ...

    def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Inputs (in the source's dtype) and targets of the given samples, in the given order."""
        ...

    def describe(self) -> InputFormat:
        """What a model trained on this source is fed: shape, dtype, scaling, class names."""
        ...


class ArraySource:
    """``kind: arrays``: inputs and labels in ``.npy`` files.

    Rows are read with ``pread`` into a fresh buffer rather than through the
    memory map: pages touched through a map count in the process's resident
    memory until the kernel reclaims them, which would trip gridcv's memory
    guard on a dataset larger than the limit. Reads go through the page cache
    either way, so they cost the same.
    """

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        groups: np.ndarray | None,
        dtype: str = "float32",
        path: Path | None = None,
        task: str = "classification",
        n_outputs: int | None = None,
    ) -> None:
        self._x = x
        self._y = np.asarray(y)
        self.task = task
        self.task_origin: TaskOrigin = DECLARED
        self._n_outputs = int(self._y.max()) + 1 if n_outputs is None else n_outputs
        self._groups = None if groups is None else np.asarray(groups)
        self.dtype = np.dtype(dtype)
        contiguous = isinstance(x, np.memmap) and x.flags.c_contiguous and path is not None
        self._offset = int(getattr(x, "offset", 0)) if contiguous else None
        self._path = path
        self._fd = os.open(path, os.O_RDONLY) if contiguous and path is not None else None
        self._row_bytes = int(np.prod(x.shape[1:], dtype=np.int64)) * x.dtype.itemsize

    @property
    def n_samples(self) -> int:
        return int(self._y.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self._x.shape[1:])

    @property
    def n_classes(self) -> int:
        return self._n_outputs

    def labels(self) -> np.ndarray:
        return self._y

    def groups(self) -> np.ndarray | None:
        return self._groups

    def describe(self) -> InputFormat:
        """Rows of ``data.x`` as stored, cast to ``data.dtype``; classes are the labels 0 .. n-1."""
        return InputFormat(self.task, self.input_shape, self.dtype.name, tuple(range(self.n_classes)), "array")

    def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        indices = np.asarray(indices, dtype=np.int64)
        # Sorted reads are sequential on disk; read sorted, put back in the requested order.
        order = np.argsort(indices, kind="stable")
        rows = np.empty((len(indices), *self._x.shape[1:]), dtype=self._x.dtype)
        if self._offset is None:
            rows[order] = self._x[indices[order]]
        else:
            self._pread_sorted(indices[order], rows, order)
        return rows.astype(self.dtype, copy=False), self._y[indices]

    def _pread_sorted(self, sorted_idx: np.ndarray, rows: np.ndarray, order: np.ndarray) -> None:
        assert self._fd is not None and self._offset is not None
        staging = np.empty_like(rows)
        # Runs of consecutive rows become one read each.
        breaks = np.flatnonzero(np.diff(sorted_idx) != 1) + 1
        for start, stop in zip(np.r_[0, breaks], np.r_[breaks, len(sorted_idx)], strict=True):
            view = staging[start:stop].data.cast("B")
            offset = self._offset + int(sorted_idx[start]) * self._row_bytes
            done = 0
            while done < len(view):
                n = os.preadv(self._fd, [view[done:]], offset + done)
                if n == 0:
                    raise DataError(f"{self._path} is shorter than its .npy header says; it was truncated.")
                done += n
        rows[order] = staging

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)  # type: ignore[arg-type]


def _load_npy(path: Path, key: str, where: str) -> np.ndarray:
    if not path.is_file():
        raise DataError(
            f"{where}: key 'data.{key}' points at {path}, which does not exist. Fix the path "
            "(relative to the experiment file), or set data.prepare to a function that creates it."
        )
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(
            f"{where}: key 'data.{key}' points at {path}, which is not a readable .npy file "
            f"({exc}). Save it with numpy.save."
        ) from None


def open_source(
    spec: DataSpec,
    base_dir: Path,
    where: str = "experiment file",
    task: str | None = None,
    call: Callable[..., Any] | None = None,
    cache: Path | None = None,
) -> Source:
    """Opens and checks the data described by an experiment's ``data:`` section.

    Only file lists, labels and groups are read into memory; inputs are read
    batch by batch by :meth:`Source.read`.

    Args:
        spec: The validated ``data:`` section (its ``kind`` picks the source).
        base_dir: Folder that relative paths are taken from.
        where: The experiment file's name, for error messages.
        task: The declared task, or None to infer it from the targets (see :mod:`gridcv.data.targets`);
            the source's ``task`` says which it is, its ``task_origin`` how it became known.
        call: How ``kind: python`` calls the user's labels and groups functions (the runner: in a
            child process, see :mod:`gridcv.data.python`); by default in this process.
        cache: The decoded-image cache (see :mod:`gridcv.data.cache`): once complete, samples are
            read from it and the files are neither listed nor decoded (its targets are the files',
            so ``task``, which the runner worked out from them, is its task).

    Raises:
        DataError: A file is missing or unreadable, inputs and labels disagree, or the
            targets do not fit the task.
    """
    if cache is not None and not isinstance(spec, PythonData):  # kind: python is never cached
        from gridcv.data.cached import open_cached

        cached = open_cached(cache, spec)
        if cached is not None:
            cached.task = task or cached.task
            return cached
    if isinstance(spec, ArraysData):
        return _open_arrays(spec, base_dir, where, task)
    if isinstance(spec, PythonData):
        from gridcv.data.python import open_python

        return open_python(spec, base_dir, where, task, call)
    from gridcv.data.listing import open_csv, open_image_folder

    if spec.kind == "images":
        return open_image_folder(spec, base_dir, where)
    return open_csv(spec, base_dir, where, task)


def resolve_path(p: str, base_dir: Path) -> Path:
    """A path from the experiment file: absolute as written, else relative to ``base_dir``."""
    path = Path(p).expanduser()
    return path if path.is_absolute() else base_dir / path


def _open_arrays(spec: ArraysData, base_dir: Path, where: str, task: str | None) -> ArraySource:
    def resolve(p: str) -> Path:
        return resolve_path(p, base_dir)

    x = _load_npy(resolve(spec.x), "x", where)
    y = _load_npy(resolve(spec.y), "y", where)
    groups = _load_npy(resolve(spec.groups), "groups", where) if spec.groups else None
    if x.ndim < 2 or not np.issubdtype(x.dtype, np.number):
        raise DataError(
            f"{where}: key 'data.x' must be a numeric array of shape (n_samples, ...) but "
            f"{spec.x} has dtype {x.dtype} and shape {x.shape}."
        )
    if y.ndim >= 1 and len(x) != len(y):
        raise DataError(
            f"{where}: keys 'data.x' and 'data.y' disagree: {spec.x} has {len(x)} samples "
            f"but {spec.y} has {len(y)} labels. Both must have one row per sample."
        )
    targets = array_targets(np.array(y), task, spec.y, where)
    if groups is not None and len(groups) != len(y):
        raise DataError(
            f"{where}: key 'data.groups' has {len(groups)} entries but there are {len(y)} "
            "samples; give one group id per sample."
        )
    source = ArraySource(
        x,
        targets.values,
        None if groups is None else np.array(groups),
        spec.dtype,
        resolve(spec.x),
        targets.task,
        targets.n_outputs,
    )
    source.task_origin = targets.origin
    return source


def prepare_data(spec: DataSpec, base_dir: Path, where: str = "experiment file") -> bool:
    """Calls ``data.prepare`` when a data file is missing; returns whether it ran.

    The function (``file.py:function``, relative to the experiment file, or
    ``package.module:function``) gets the experiment folder and must create the
    files the ``data:`` section names. With ``kind: python`` gridcv does not know
    which files the pipeline reads, so it is called at every run unless the
    section names ``.npy`` files that exist: it returns at once when its data is there.
    """
    if not spec.prepare:
        return False
    paths = [getattr(spec, k, None) for k in ("x", "y", "groups", "root", "masks", "path", "labels")]
    named = [p for p in paths if p and (not isinstance(spec, PythonData) or p.endswith(".npy"))]
    # kind: python names no data files but .npy labels: its prepare runs every time (it returns when done).
    if named and all(resolve_path(p, base_dir).exists() for p in named):
        return False
    prepare = Ref.parse(spec.prepare, "data.prepare", where).load(base_dir, where, DataError)
    prepare(base_dir)
    return True
