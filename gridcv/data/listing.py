"""Finding a file source's samples: image folders (one sub-folder per class) and CSV manifests."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from gridcv.config.data import CsvData, ImagesData
from gridcv.config.tasks import TaskOrigin
from gridcv.data.files import IMAGE_EXTENSIONS, SAMPLE_EXTENSIONS, FileSource, decoding_of
from gridcv.data.sources import resolve_path
from gridcv.data.targets import class_ids, column_targets
from gridcv.errors import DataError

_readable_cache: dict[tuple[str, int, int], bool] = {}
_CREATE_HINT = "Fix the path (relative to the experiment file), or set data.prepare to a function that creates it."


def open_image_folder(spec: ImagesData, base_dir: Path, where: str) -> FileSource:
    """``kind: images``: one sub-folder per class, or (with ``masks``) a folder of images.

    Args:
        spec: The validated ``data:`` section.
        base_dir: Folder relative paths are taken from.
        where: The experiment file, for messages.

    Raises:
        DataError: The folder is missing, a class folder is empty, a mask is missing.
    """
    root = resolve_path(spec.root, base_dir)
    if not root.is_dir():
        raise DataError(f"{where}: key 'data.root' points at {root}, which is not a folder. {_CREATE_HINT}")
    if spec.masks:
        images = _samples_in(root, recursive=False)
        if not images:
            raise DataError(f"{where}: key 'data.root' folder {root} holds no images ({', '.join(IMAGE_EXTENSIONS)}).")
        images = [images[i] for i in _drop_unreadable(spec, images, where)]
        masks = _mask_files(images, resolve_path(spec.masks, base_dir), where)
        assert spec.n_classes is not None  # checked with the experiment file
        segments = FileSource(images, None, None, masks, spec.n_classes, decoding_of(spec), where)
        segments.headers_checked = spec.on_bad_file == "skip"
        return segments
    names = _class_folders(spec, root, where)
    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(names):
        found = _samples_in(root / name, recursive=True)
        if not found:
            raise DataError(
                f"{where}: class folder {root / name} (class '{name}') holds no images "
                f"({', '.join(IMAGE_EXTENSIONS)}). Add images, or remove the folder"
                + (" and its name from data.class_names." if spec.class_names else ".")
            )
        files += found
        labels += [label] * len(found)
    keep = _drop_unreadable(spec, files, where)
    source = FileSource(
        [files[i] for i in keep], np.array(labels)[keep], None, None, len(names), decoding_of(spec), where, names
    )
    source.headers_checked = spec.on_bad_file == "skip"
    source.task_origin = TaskOrigin(f"inferred from key 'data.root': {root} holds one folder per class")
    return source


def _class_folders(spec: ImagesData, root: Path, where: str) -> list[str]:
    present = sorted(p.name for p in root.iterdir() if p.is_dir())
    names = spec.class_names or present
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
    return names


def open_csv(spec: CsvData, base_dir: Path, where: str, task: str | None = None) -> FileSource:
    """``kind: csv``: a manifest with a file column, label column(s) and optionally groups and masks.

    Args:
        spec: The validated ``data:`` section.
        base_dir: Folder relative paths are taken from.
        where: The experiment file, for messages.
        task: The declared task, or None to infer it from the label column(s).

    Raises:
        DataError: The manifest or a listed file is missing, a column is missing, a label is unknown.
    """
    path = resolve_path(spec.path, base_dir)
    if not path.is_file():
        raise DataError(f"{where}: key 'data.path' points at {path}, which does not exist. {_CREATE_HINT}")
    root = resolve_path(spec.root, base_dir) if spec.root else path.parent
    rows = _read_manifest(spec, path, where)
    files = [root / row[spec.x_column] for row in rows]
    masks = [root / row[spec.mask_column] for row in rows] if spec.mask_column else None
    _check_listed(files, masks, path, root, where)
    names = None
    if spec.mask_column:
        assert spec.n_classes is not None  # checked with the experiment file
        # A label column, when the manifest has one, is what stratified splitters stratify images by.
        column = spec.y_column if isinstance(spec.y_column, str) and spec.y_column in rows[0] else None
        labels = None if column is None else class_ids([row[column] for row in rows], spec, path, where)[0]
        n_classes, task, origin = spec.n_classes, "segmentation", None
    else:
        columns = {c: [row[c] for row in rows] for c in y_columns(spec)}
        targets = column_targets(columns, spec, task, path, where)
        labels, n_classes, task, origin = targets.values, targets.n_outputs, targets.task, targets.origin
        if task == "classification":
            raw = next(iter(columns.values()))
            names = spec.class_names or _names_in_label_order(raw, labels, n_classes)
    groups = np.array([row[spec.group_column] for row in rows]) if spec.group_column else None
    keep = _drop_unreadable(spec, files, where)
    source = FileSource(
        [files[i] for i in keep],
        None if labels is None else labels[keep],
        None if groups is None else groups[keep],
        None if masks is None else [masks[i] for i in keep],
        n_classes,
        decoding_of(spec),
        where,
        names,
        task,
    )
    if origin is not None:
        source.task_origin = origin
    source.headers_checked = spec.on_bad_file == "skip"
    return source


def y_columns(spec: CsvData) -> list[str]:
    """The label column(s) ``data.y_column`` names: one, a list, or none."""
    if spec.y_column is None:
        return []
    return [spec.y_column] if isinstance(spec.y_column, str) else list(spec.y_column)


def _names_in_label_order(raw: list[str], labels: np.ndarray, n_classes: int) -> list[str]:
    """Each label's name as the manifest writes it (a label no row uses: its number)."""
    written = dict(zip(labels.tolist(), raw, strict=True))
    return [str(written.get(i, i)).strip() for i in range(n_classes)]


def _read_manifest(spec: CsvData, path: Path, where: str) -> list[dict[str, str]]:
    """The manifest's rows, after checking it has every column the ``data:`` section names."""
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = list(reader.fieldnames or [])
        rows = list(reader)
    wanted = [("x_column", spec.x_column), ("group_column", spec.group_column), ("mask_column", spec.mask_column)]
    if not spec.mask_column:
        wanted += [("y_column", column) for column in y_columns(spec)]
    for key, column in wanted:
        if column and column not in columns:
            raise DataError(
                f"{where}: key 'data.{key}' is {column!r}, but {path} has no such column (its columns are "
                f"{', '.join(columns) or 'none: the file is empty'}). Fix data.{key} or the CSV header."
            )
    if not rows:
        raise DataError(f"{where}: {path} lists no samples (only a header); add one row per sample.")
    return rows


def _check_listed(files: list[Path], masks: list[Path] | None, path: Path, root: Path, where: str) -> None:
    for i, file in enumerate([*files, *(masks or [])]):
        if not file.is_file():
            kind = "mask" if i >= len(files) else "file"
            raise DataError(
                f"{where}: row {i % len(files) + 2} of {path} names {kind} {file}, which does not exist "
                f"(paths are relative to {root}). Fix the row or data.root."
            )


# --- what is in a folder, and what decodes -------------------------------------------------


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


def _readable(path: Path) -> bool:
    """Whether a sample file looks readable, without decoding it; cached by (path, size, mtime).

    Reads the header only: Pillow's ``open`` parses the format, mode and size, and
    ``verify`` checks a PNG's chunk checksums (reading the file, decompressing nothing;
    for other formats it checks nothing more); a ``.npy`` is memory-mapped (its header
    and length). So a 1-million-image folder opens in a pass of header reads (~40 us per
    file) instead of full decodes (~10x that for small images, more for large ones). What
    it can miss: a JPEG, GIF or BMP whose header is intact but whose pixel data is
    damaged or cut short; such a file fails when its batch is read, named in the error.
    """
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _readable_cache:
        try:
            if path.suffix.lower() == ".npy":
                np.load(path, mmap_mode="r", allow_pickle=False)
            else:
                with Image.open(path) as im:
                    im.verify()
            _readable_cache[key] = True
        except (OSError, ValueError, SyntaxError, EOFError):
            _readable_cache[key] = False
    return _readable_cache[key]


def _drop_unreadable(spec: ImagesData | CsvData, files: list[Path], where: str) -> list[int]:
    """Positions of the files to keep: all of them, or with ``on_bad_file: skip`` the ones that decode."""
    if spec.on_bad_file != "skip":
        return list(range(len(files)))
    good = [i for i, f in enumerate(files) if _readable(f)]
    kept = set(good)
    bad = [str(f) for i, f in enumerate(files) if i not in kept]
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        warnings.warn(
            f"{where}: skipping {len(bad)} unreadable file(s) (data.on_bad_file: skip): {shown}", stacklevel=3
        )
    if not good:
        raise DataError(f"{where}: every file of the data is unreadable; nothing is left to train on.")
    return good
