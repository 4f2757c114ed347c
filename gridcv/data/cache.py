"""The decoded-image cache (``data: cache: true``): every sample decoded once, read as a memory map
(built here; read by :mod:`gridcv.data.cached`).

An image folder or CSV manifest is decoded (Pillow, resized) once per run's start into ``.npy``
files: the inputs as uint8 (images; scaled to ``data.dtype`` as batches are read, exactly as
decoding them would) or in ``data.dtype`` (``.npy`` samples), masks as integers, and the labels
and groups. Every fold, candidate and resumed run of every experiment using the same folder (a
``cache_dir`` may be shared) then reads batches of rows from it as ``kind: arrays`` does; random
augmentation still runs per batch, on the cached pixels.

Built by the runner, in the parent process, before the first fold: it needs no Keras, decodes in
threads (Pillow releases the GIL) while the worker imports TensorFlow, and one build serves every
slot. It is keyed on the file list, each file's size and modification time, the labels, groups
and decoding: a folder that changed gets a new cache (a note says so; the old one is deleted
once the new one is complete). Building is resumable: chunks are written in order, flushed to
disk, then recorded in the manifest (written atomically), so a kill loses at most the chunk in
flight. Folds use a cache only once complete; until then they decode files as before.

Files, for a source named ``photos``: ``photos-<source>.json`` (the manifest: key, shape, progress)
and ``photos-<source>-<key>.x.npy`` (``.y.npy``, ``.groups.npy``, ``.masks.npy``).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gridcv.atomic import write_atomic
from gridcv.config.data import CsvData, DataSpec, ImagesData
from gridcv.data.cached import VERSION, read_manifest
from gridcv.data.files import FileSource
from gridcv.data.sources import resolve_path
from gridcv.errors import DataError
from gridcv.faults import crash_point

MAX_CHUNK = 256  # images per durable step of a build (and at least 16 steps for small folders)


def cache_stem(spec: DataSpec, base_dir: Path, results: Path) -> Path | None:
    """Where the cache of a ``data:`` section lives (its manifest is ``<stem>.json``), or None without one.

    The name depends on what is decoded (paths resolved, decoding keys), not on the files' state,
    so every run and experiment reading the same folder the same way finds the same cache.
    """
    if not isinstance(spec, (ImagesData, CsvData)) or not spec.cache:
        return None
    folder = resolve_path(spec.cache_dir, base_dir) if spec.cache_dir else results / "cache"
    where = resolve_path(spec.root if isinstance(spec, ImagesData) else spec.path, base_dir)
    decoding = spec.model_dump(
        exclude={"cache", "cache_dir", "prepare", "augment", "balance", "feed", "workers", "use_multiprocessing"}
    )
    for key in ("root", "path", "masks"):
        if decoding.get(key):
            decoding[key] = str(resolve_path(decoding[key], base_dir).resolve())
    source = hashlib.sha256(json.dumps(decoding, sort_keys=True, default=str).encode()).hexdigest()[:12]
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", where.stem or "data")
    return folder / f"{name}-{source}"


@dataclass(frozen=True)
class CachePlan:
    """The cache a source needs: where, under which key, and how big.

    Attributes:
        stem: See :func:`cache_stem`.
        key: Digest of the file list, sizes, modification times, labels, groups and decoding.
        n: Samples.
        shape: Shape of one input.
        dtype: dtype of the stored inputs (uint8 for images).
        mask_shape: Shape of one mask (segmentation), else None.
        mask_dtype: dtype of stored masks.
        n_classes: Classes (of samples, or of mask pixels).
        input_format: What the files' source describes (:meth:`FileSource.describe`), as a dict.
        task: The source's task (its targets are stored as the files give them).
    """

    stem: Path
    key: str
    n: int
    shape: tuple[int, ...]
    dtype: str
    mask_shape: tuple[int, ...] | None
    mask_dtype: str
    n_classes: int
    input_format: dict[str, Any]
    task: str = "classification"

    @property
    def nbytes(self) -> int:
        """Bytes of the inputs and masks on disk."""
        size = self.n * math.prod(self.shape) * np.dtype(self.dtype).itemsize
        if self.mask_shape is not None:
            size += self.n * math.prod(self.mask_shape) * np.dtype(self.mask_dtype).itemsize
        return size

    def path(self, part: str) -> Path:
        """One of the key's files: ``x``, ``y``, ``groups``, ``masks``."""
        return self.stem.with_name(f"{self.stem.name}-{self.key[:12]}.{part}.npy")


def plan_cache(spec: DataSpec, source: Any, base_dir: Path, results: Path, where: str) -> CachePlan | None:
    """The cache ``data.cache`` asks for, or None.

    Raises:
        DataError: Samples mix images and ``.npy`` files, which one cache cannot hold.
    """
    stem = cache_stem(spec, base_dir, results)
    if stem is None or not isinstance(source, FileSource):
        return None
    files = source.files(np.arange(source.n_samples))
    if len({f.lower().endswith(".npy") for f in files}) > 1:
        raise DataError(
            f"{where}: key 'data.cache' needs every sample to be an image, or every one a .npy file, but the data "
            "mixes both. Convert the .npy samples to images (or the images to .npy), or set data.cache: false."
        )
    masks = source.mask_files()
    digest = hashlib.sha256()
    for path in [*files, *(masks or [])]:
        stat = os.stat(path)
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    digest.update(np.ascontiguousarray(source.labels()).tobytes())
    groups = source.groups()
    digest.update(json.dumps(None if groups is None else [str(g) for g in groups]).encode())
    input_format = source.describe().to_dict()
    digest.update(json.dumps([VERSION, str(source.decoding), input_format], default=str).encode())
    n_classes = source.n_classes
    mask_dtype = "uint8" if n_classes <= 256 else "int32"
    return CachePlan(
        stem=stem,
        key=digest.hexdigest(),
        n=source.n_samples,
        shape=tuple(source.input_shape),
        dtype="uint8" if source.all_images else source.decoding.dtype,
        mask_shape=None if masks is None else tuple(source.input_shape[:2]),
        mask_dtype=mask_dtype,
        n_classes=n_classes,
        input_format=input_format,
        task=source.task,
    )


def _write_manifest(plan: CachePlan, done: int, **extra: Any) -> None:
    manifest = {
        "version": VERSION,
        "key": plan.key,
        "n": plan.n,
        "shape": list(plan.shape),
        "dtype": plan.dtype,
        "mask_shape": None if plan.mask_shape is None else list(plan.mask_shape),
        "mask_dtype": plan.mask_dtype,
        "n_classes": plan.n_classes,
        "input_format": plan.input_format,
        "task": plan.task,
        "done": done,
        "complete": done >= plan.n,
        **extra,
    }
    write_atomic(plan.stem.with_suffix(".json"), json.dumps(manifest, indent=1).encode())


def format_size(n: float) -> str:
    """Bytes as people read them: ``64.0 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _existing(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _allocated(paths: list[Path]) -> int:
    return sum(p.stat().st_blocks * 512 for p in paths if p.exists())


def check_space(plan: CachePlan, where: str) -> None:
    """Refuses a cache the disk cannot hold, before anything is written.

    Raises:
        DataError: The free space where the cache goes is less than what it still needs.
    """
    manifest = read_manifest(plan.stem)
    if manifest is not None and manifest["key"] == plan.key and manifest["complete"]:
        return
    folder = plan.stem.parent
    needed = plan.nbytes - _allocated([plan.path("x"), plan.path("masks")])
    free = shutil.disk_usage(_existing(folder)).free
    if needed > free:
        raise DataError(
            f"{where}: key 'data.cache': the decoded-image cache of {plan.n} samples "
            f"({'x'.join(str(d) for d in plan.shape)} {plan.dtype} each) needs {format_size(needed)} in {folder}, "
            f"but only {format_size(free)} are free there. Free some space, point data.cache_dir at a disk with "
            "room, or set data.cache: false to decode samples as batches are read."
        )


def _disk_full(plan: CachePlan, where: str) -> DataError:
    """The error of a disk that filled up while the cache was built (by another writer, say)."""
    manifest = read_manifest(plan.stem)
    done = manifest["done"] if manifest is not None and manifest["key"] == plan.key else 0
    return DataError(
        f"{where}: key 'data.cache': the disk holding {plan.stem.parent} filled up while the decoded-image cache "
        f"of {plan.n} samples ({format_size(plan.nbytes)}) was built; the {done} samples already written are kept. "
        "Free some space and run again to go on from there, point data.cache_dir at a disk with room, or set "
        "data.cache: false to decode samples as batches are read."
    )


@contextmanager
def _locked(stem: Path) -> Iterator[None]:
    """One builder at a time per cache (runs sharing a cache_dir wait for each other)."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    with open(stem.with_suffix(".lock"), "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def build_cache(plan: CachePlan, source: Any, where: str, say: Callable[[str], None]) -> None:
    """Makes the cache complete: nothing to do, a new build, or the rest of an interrupted one.

    Args:
        plan: What to build (see :func:`plan_cache`).
        source: The listed files, decoded here.
        where: The experiment file, for messages.
        say: Tells the user what happens (size before building, time after).

    Raises:
        DataError: A file cannot be decoded, or the disk cannot hold the cache.
    """
    assert isinstance(source, FileSource)  # plan_cache plans a cache for nothing else
    with _locked(plan.stem):
        manifest = read_manifest(plan.stem)
        if manifest is not None and manifest["key"] == plan.key and manifest["complete"]:
            return
        done = manifest["done"] if manifest is not None and manifest["key"] == plan.key else 0
        if not plan.path("x").exists():
            done = 0
        check_space(plan, where)
        if manifest is not None and manifest["key"] != plan.key:
            say(
                f"data.cache: the samples changed since the cache in {plan.stem.parent} was built "
                f"({manifest['n']} then, {plan.n} now, or files modified); building a new one"
            )
        size = format_size(plan.nbytes)
        if done:
            say(f"data.cache: resuming the cache in {plan.stem.parent} at sample {done} of {plan.n} ({size})")
        else:
            say(f"data.cache: decoding {plan.n} samples once into {plan.stem.parent} ({size})")
        start = time.perf_counter()
        try:
            _fill(plan, source, done)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
            raise _disk_full(plan, where) from None
        seconds = time.perf_counter() - start + (manifest or {}).get("build_seconds", 0.0) * bool(done)
        _write_manifest(plan, plan.n, build_seconds=seconds)
        _remove_other_keys(plan)
        say(f"data.cache: built in {seconds:.1f} s ({plan.n / max(seconds, 1e-9):,.0f} samples/s)")


def _fill(plan: CachePlan, source: FileSource, done: int) -> None:
    """Decodes samples ``done ..`` into the cache's arrays, chunk by chunk, each made durable then recorded."""
    fresh = done == 0
    if fresh:
        write_atomic(plan.path("y"), _npy(source.labels()))
        groups = source.groups()
        if groups is not None:
            write_atomic(plan.path("groups"), _npy(np.asarray(groups)))
    x = _array(plan.path("x"), plan.dtype, (plan.n, *plan.shape), fresh)
    masks = None
    if plan.mask_shape is not None:
        masks = _array(plan.path("masks"), plan.mask_dtype, (plan.n, *plan.mask_shape), fresh)
    chunk = max(1, min(MAX_CHUNK, math.ceil(plan.n / 16)))
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="gridcv-cache") as pool:
        for first in range(done, plan.n, chunk):
            stop = min(first + chunk, plan.n)
            for i, (sample, mask) in zip(range(first, stop), pool.map(source.decode, range(first, stop)), strict=True):
                x[i] = sample
                if masks is not None:
                    masks[i] = mask
            x.flush()
            if masks is not None:
                masks.flush()
            crash_point("cache-write")
            _write_manifest(plan, stop, build_seconds=time.perf_counter() - started)
    del x, masks


def _npy(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _array(path: Path, dtype: str, shape: tuple[int, ...], fresh: bool) -> np.memmap:
    """The ``.npy`` file a cache fills, created (its blocks reserved on disk) or reopened."""
    if fresh or not path.exists():
        array = np.lib.format.open_memmap(path, mode="w+", dtype=np.dtype(dtype), shape=shape)
        with open(path, "r+b") as f:
            try:
                # Reserved now, writing to the map cannot fail later (SIGBUS on a full tmpfs).
                os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
            except OSError as e:
                if e.errno == errno.ENOSPC:
                    raise
                # a filesystem without fallocate: the space check has to do
        return array
    return np.lib.format.open_memmap(path, mode="r+")


def _remove_other_keys(plan: CachePlan) -> None:
    """Deletes the files of this source's older caches (a run reading one keeps its open files)."""
    mine = {plan.path(part).name for part in ("x", "y", "groups", "masks")}
    for path in plan.stem.parent.glob(f"{plan.stem.name}-*.npy"):
        if path.name not in mine:
            path.unlink(missing_ok=True)
