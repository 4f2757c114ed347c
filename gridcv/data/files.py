"""Sources that are one file per sample: image folders and CSV manifests.

Only the file list, the labels and the groups are held in memory; a batch
is decoded (Pillow for images, numpy for ``.npy``) when it is read. Images
become float arrays in [0, 1] of shape ``(h, w, channels)``; masks become
integer class maps of shape ``(h, w)``.
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from gridcv.data.sources import resolve_path
from gridcv.errors import DataError

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")  # what Keras's image loader accepts
# Telling Pillow the format skips its probing of every plugin: ~10% of a small PNG's decode.
_FORMATS = {".bmp": ["BMP"], ".gif": ["GIF"], ".jpeg": ["JPEG"], ".jpg": ["JPEG"], ".png": ["PNG"]}
SAMPLE_EXTENSIONS = (*IMAGE_EXTENSIONS, ".npy")
_SKIP_HINT = "Replace or delete the file, or set data.on_bad_file: skip to leave such files out with a warning."


def _open_image(path: Path) -> Image.Image:
    try:
        return Image.open(path, formats=_FORMATS.get(path.suffix.lower()))
    except UnidentifiedImageError:  # a misnamed file (a JPEG called .png): let Pillow probe
        return Image.open(path)


@dataclass(frozen=True)
class Decoding:
    """How a sample file becomes an array.

    Attributes:
        image_size: ``(height, width)`` images are resized to, or None to keep their size.
        channels: 1 (grayscale) or 3 (rgb).
        dtype: dtype of the decoded inputs.
    """

    image_size: tuple[int, int] | None
    channels: int
    dtype: str

    def image(self, path: Path) -> np.ndarray:
        """Decodes one image to uint8 ``(h, w, channels)``, resized if an image size is set."""
        with _open_image(path) as im:
            mode = "L" if self.channels == 1 else "RGB"
            if self.image_size is not None and im.format == "JPEG":
                # JPEG can decode straight at a smaller scale: much less work for big photos.
                im.draft(mode, (self.image_size[1], self.image_size[0]))
            im = im.convert(mode)
            if self.image_size is not None and im.size != (self.image_size[1], self.image_size[0]):
                im = im.resize((self.image_size[1], self.image_size[0]), Image.Resampling.BILINEAR)
            return np.asarray(im, dtype=np.uint8).reshape(im.size[1], im.size[0], self.channels)

    def mask(self, path: Path) -> np.ndarray:
        """Decodes one mask to int32 ``(h, w)`` class ids (nearest-neighbour resize: ids stay ids)."""
        if path.suffix.lower() == ".npy":
            return np.load(path, allow_pickle=False).astype(np.int32)
        with Image.open(path) as opened:
            im: Image.Image = opened
            if im.mode not in ("L", "P", "I", "I;16", "1"):
                raise ValueError(f"mode {im.mode} has several channels; a mask holds one class id per pixel")
            if self.image_size is not None and im.size != (self.image_size[1], self.image_size[0]):
                im = im.resize((self.image_size[1], self.image_size[0]), Image.Resampling.NEAREST)
            return np.asarray(im).astype(np.int32)


class FileSource:
    """A source that reads one file per sample (an image or a ``.npy`` array).

    Args:
        files: One input file per sample.
        labels: Class id per sample (zeros for segmentation).
        groups: Group per sample, or None.
        masks: One mask file per sample for segmentation, else None.
        n_classes: Number of classes (of samples, or of mask pixels).
        decoding: How files become arrays.
        what: Names the data in error messages (e.g. ``data.root``).
    """

    def __init__(
        self,
        files: Sequence[Path],
        labels: np.ndarray,
        groups: np.ndarray | None,
        masks: Sequence[Path] | None,
        n_classes: int,
        decoding: Decoding,
        what: str,
    ) -> None:
        self._files = np.array([str(f) for f in files])
        self._masks = None if masks is None else np.array([str(m) for m in masks])
        self._labels = np.asarray(labels, dtype=np.int64)
        self._groups = groups
        self._n_classes = n_classes
        self.decoding = decoding
        self.what = what
        self.task = "classification" if masks is None else "segmentation"
        self.value_range = (0.0, 1.0) if self._is_image(self._files[0]) else None
        self._shape = self._first_shape()

    @staticmethod
    def _is_image(path: str) -> bool:
        return path.lower().endswith(IMAGE_EXTENSIONS)

    def _first_shape(self) -> tuple[int, ...]:
        first = Path(self._files[0])
        if not self._is_image(str(first)):
            return tuple(int(d) for d in self._load_npy(first).shape)
        if self.decoding.image_size is not None:
            return (*self.decoding.image_size, self.decoding.channels)
        try:
            with Image.open(first) as im:  # reads the header only
                return (im.size[1], im.size[0], self.decoding.channels)
        except (OSError, ValueError, SyntaxError) as exc:
            raise DataError(f"{self.what}: {first} cannot be read as an image ({exc}). {_SKIP_HINT}") from None

    @property
    def n_samples(self) -> int:
        return len(self._files)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def n_classes(self) -> int:
        return self._n_classes

    def labels(self) -> np.ndarray:
        return self._labels

    def groups(self) -> np.ndarray | None:
        return self._groups

    def files(self, indices: np.ndarray) -> list[str]:
        """The input files of the given samples."""
        return [str(f) for f in self._files[indices]]

    def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        indices = np.asarray(indices, dtype=np.int64)
        images = all(self._is_image(f) for f in self._files[indices])
        x = np.empty((len(indices), *self._shape), dtype=np.uint8 if images else self.decoding.dtype)
        for row, i in enumerate(indices):
            x[row] = self._sample(str(self._files[i]))
        if images:  # scale in one vectorised step, not per image
            x = np.multiply(x, np.asarray(1 / 255, dtype=self.decoding.dtype), dtype=self.decoding.dtype)
        if self._masks is None:
            return x, self._labels[indices]
        y = np.empty((len(indices), *self._shape[:2]), dtype=np.int32)
        for row, i in enumerate(indices):
            y[row] = self._mask(str(self._masks[i]))
        return x, y

    def _sample(self, file: str) -> np.ndarray:
        path = Path(file)
        if self._is_image(file):
            try:
                array = self.decoding.image(path)
            except (OSError, ValueError, SyntaxError) as exc:
                raise DataError(f"{self.what}: {path} cannot be read as an image ({exc}). {_SKIP_HINT}") from None
        else:
            array = self._load_npy(path)
        if array.shape != self._shape:
            raise DataError(
                f"{self.what}: {path} has shape {array.shape} but the first sample, {self._files[0]}, has "
                f"{self._shape}; every sample must have the same shape. "
                + ("Set data.image_size: [height, width] to resize images on reading." if self._is_image(file) else "")
            )
        return array

    def _mask(self, file: str) -> np.ndarray:
        try:
            mask = self.decoding.mask(Path(file))
        except (OSError, ValueError, SyntaxError) as exc:
            raise DataError(f"{self.what}: mask {file} cannot be read ({exc}). {_SKIP_HINT}") from None
        if mask.shape != self._shape[:2]:
            raise DataError(
                f"{self.what}: mask {file} is {mask.shape[0]}x{mask.shape[1]} but its image is "
                f"{self._shape[0]}x{self._shape[1]}; a mask must match its image, or set data.image_size."
            )
        if mask.size and (mask.min() < 0 or mask.max() >= self._n_classes):
            raise DataError(
                f"{self.what}: mask {file} holds class id {int(mask.max())}, outside 0 .. {self._n_classes - 1}; "
                "raise data.n_classes or fix the mask."
            )
        return mask

    def _load_npy(self, path: Path) -> np.ndarray:
        try:
            return np.load(path, allow_pickle=False).astype(self.decoding.dtype, copy=False)
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"{self.what}: {path} is not a readable .npy file ({exc}). {_SKIP_HINT}") from None


# --- finding the files -------------------------------------------------------------------

_readable_cache: dict[tuple[str, int, int], bool] = {}


def _readable(path: Path) -> bool:
    """Whether a sample file decodes; cached by (path, size, mtime) for the life of the process."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _readable_cache:
        try:
            if path.suffix.lower() == ".npy":
                np.load(path, mmap_mode="r", allow_pickle=False)
            else:
                with Image.open(path) as im:
                    im.load()
            _readable_cache[key] = True
        except (OSError, ValueError, SyntaxError, EOFError):
            _readable_cache[key] = False
    return _readable_cache[key]


def _drop_unreadable(spec: dict[str, Any], keep: list[int], files: list[Path], where: str) -> list[int]:
    if spec.get("on_bad_file", "error") != "skip":
        return keep
    good = [i for i in keep if _readable(files[i])]
    kept = set(good)
    bad = [str(files[i]) for i in keep if i not in kept]
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        warnings.warn(
            f"{where}: skipping {len(bad)} unreadable file(s) (data.on_bad_file: skip): {shown}", stacklevel=3
        )
    if not good:
        raise DataError(f"{where}: every file of the data is unreadable; nothing is left to train on.")
    return good


def _decoding(spec: dict[str, Any]) -> Decoding:
    size = spec.get("image_size")
    return Decoding(
        image_size=None if size is None else (int(size[0]), int(size[1])),
        channels=1 if spec.get("color_mode", "rgb") == "grayscale" else 3,
        dtype=spec.get("dtype", "float32"),
    )


def _samples_in(folder: Path, recursive: bool) -> list[Path]:
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.is_file() and p.suffix.lower() in SAMPLE_EXTENSIONS)


def _mask_files(images: list[Path], mask_dir: Path, where: str) -> list[Path]:
    """The mask of each image: the file in ``mask_dir`` with the same name (any image extension or .npy)."""
    if not mask_dir.is_dir():
        raise DataError(f"{where}: key 'data.masks' points at {mask_dir}, which is not a folder. Fix the path.")
    by_stem = {p.stem: p for p in _samples_in(mask_dir, recursive=False)}
    masks = []
    for image in images:
        mask = by_stem.get(image.stem)
        if mask is None:
            raise DataError(
                f"{where}: image {image} has no mask in {mask_dir} (expected a file named {image.stem}.png or "
                f"{image.stem}.npy). Add the mask or remove the image."
            )
        masks.append(mask)
    return masks


def open_image_folder(spec: dict[str, Any], base_dir: Path, where: str) -> FileSource:
    """``kind: images``: one sub-folder per class, or (with ``masks``) a folder of images.

    Args:
        spec: The validated ``data:`` section.
        base_dir: Folder relative paths are taken from.
        where: The experiment file, for messages.

    Raises:
        DataError: The folder is missing, a class folder is empty, a mask is missing.
    """
    root = resolve_path(spec["root"], base_dir)
    if not root.is_dir():
        raise DataError(
            f"{where}: key 'data.root' points at {root}, which is not a folder. Fix the path (relative to "
            "the experiment file), or set data.prepare to a function that creates it."
        )
    if spec.get("masks"):
        files = _samples_in(root, recursive=False)
        if not files:
            raise DataError(f"{where}: key 'data.root' folder {root} holds no images ({', '.join(IMAGE_EXTENSIONS)}).")
        keep = _drop_unreadable(spec, list(range(len(files))), files, where)
        files = [files[i] for i in keep]
        masks = _mask_files(files, resolve_path(spec["masks"], base_dir), where)
        return FileSource(files, np.zeros(len(files)), None, masks, spec["n_classes"], _decoding(spec), where)
    present = sorted(p.name for p in root.iterdir() if p.is_dir())
    names = spec.get("class_names") or present
    missing = [n for n in names if n not in present]
    if not present or missing:
        raise DataError(
            f"{where}: key 'data.root' folder {root} must hold one sub-folder per class; "
            + (
                f"there is no sub-folder for class(es) {', '.join(missing)} named in data.class_names."
                if missing
                else "it has none. Put each class's images in a folder named after the class."
            )
        )
    files, labels = [], []
    for label, name in enumerate(names):
        found = _samples_in(root / name, recursive=True)
        if not found:
            raise DataError(
                f"{where}: class folder {root / name} (class '{name}') holds no images "
                f"({', '.join(IMAGE_EXTENSIONS)}). Add images, or remove the folder"
                + (" and its name from data.class_names." if spec.get("class_names") else ".")
            )
        files += found
        labels += [label] * len(found)
    keep = _drop_unreadable(spec, list(range(len(files))), files, where)
    return FileSource([files[i] for i in keep], np.array(labels)[keep], None, None, len(names), _decoding(spec), where)


def open_csv(spec: dict[str, Any], base_dir: Path, where: str) -> FileSource:
    """``kind: csv``: a manifest with a file column, a label column and optionally groups and masks.

    Args:
        spec: The validated ``data:`` section.
        base_dir: Folder relative paths are taken from.
        where: The experiment file, for messages.

    Raises:
        DataError: The manifest or a listed file is missing, a column is missing, a label is unknown.
    """
    path = resolve_path(spec["path"], base_dir)
    if not path.is_file():
        raise DataError(
            f"{where}: key 'data.path' points at {path}, which does not exist. Fix the path (relative to the "
            "experiment file), or set data.prepare to a function that creates it."
        )
    root = resolve_path(spec["root"], base_dir) if spec.get("root") else path.parent
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = list(reader.fieldnames or [])
        rows = list(reader)
    segmentation = bool(spec.get("mask_column"))
    wanted = {
        "x_column": spec.get("x_column", "file"),
        "group_column": spec.get("group_column"),
        "mask_column": spec.get("mask_column"),
    }
    if not segmentation:
        wanted["y_column"] = spec.get("y_column", "label")
    for key, column in wanted.items():
        if column and column not in columns:
            raise DataError(
                f"{where}: key 'data.{key}' is {column!r}, but {path} has no such column (its columns are "
                f"{', '.join(columns) or 'none: the file is empty'}). Fix data.{key} or the CSV header."
            )
    if not rows:
        raise DataError(f"{where}: {path} lists no samples (only a header); add one row per sample.")
    files = [root / row[wanted["x_column"]] for row in rows]
    masks = [root / row[wanted["mask_column"]] for row in rows] if segmentation else None
    for i, file in enumerate([*files, *(masks or [])]):
        if not file.is_file():
            kind = "mask" if i >= len(files) else "file"
            raise DataError(
                f"{where}: row {i % len(files) + 2} of {path} names {kind} {file}, which does not exist "
                f"(paths are relative to {root}). Fix the row or data.root."
            )
    if segmentation:
        labels, n_classes = np.zeros(len(rows), dtype=np.int64), int(spec["n_classes"])
    else:
        labels, n_classes = _encode_labels([row[wanted["y_column"]] for row in rows], spec, path, where)
    groups = np.array([row[wanted["group_column"]] for row in rows]) if wanted["group_column"] else None
    keep = _drop_unreadable(spec, list(range(len(files))), files, where)
    return FileSource(
        [files[i] for i in keep],
        labels[keep],
        None if groups is None else groups[keep],
        None if masks is None else [masks[i] for i in keep],
        n_classes,
        _decoding(spec),
        where,
    )


def _encode_labels(raw: list[str], spec: dict[str, Any], path: Path, where: str) -> tuple[np.ndarray, int]:
    """Class names -> ids: the order of data.class_names, else integers as written, else sorted names."""
    names = spec.get("class_names")
    if names is None and all(v.strip().lstrip("-").isdigit() for v in raw):
        ids = np.array([int(v) for v in raw], dtype=np.int64)
        if ids.min() < 0:
            raise DataError(f"{where}: {path} has a label {ids.min()}; integer labels must be 0 .. n_classes-1.")
        return ids, int(ids.max()) + 1
    names = names or sorted(set(raw))
    index = {n: i for i, n in enumerate(names)}
    for row, value in enumerate(raw):
        if value not in index:
            raise DataError(
                f"{where}: row {row + 2} of {path} has label {value!r}, which is not in data.class_names "
                f"({', '.join(names)}). Add it there or fix the row."
            )
    return np.array([index[v] for v in raw], dtype=np.int64), len(names)
