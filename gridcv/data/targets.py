"""What each sample's target is, and the task it makes: classes, numbers, several labels.

A ``task:`` declared in the experiment file is checked against the targets;
without one, the task is inferred from them, by their type as stored:

- integers (or class names) -> ``classification``;
- floats (a ``.npy`` of a float dtype, a CSV column of numbers not all whole) -> ``regression``;
- several columns of 0/1 integers -> ``multilabel``; several columns of floats -> regression with several targets;
- masks (``data.masks``, ``data.mask_column``) -> ``segmentation`` (decided by the data section, not here).

Whole numbers stored as floats are read as regression targets, as their type
says; the scorer check then says how to read them as classes if that was meant
(``accuracy`` on float targets is refused before training).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gridcv.config.data import CsvData
from gridcv.config.tasks import DECLARED, TaskOrigin
from gridcv.errors import DataError

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")  # a decimal number (not 'nan' or 'inf')
NOT_CLASS_LABELS = (
    "as classes, each distinct value would be a class of its own. Class labels are integers "
    "0 .. n_classes-1{names}; for a numeric target, set task: regression."
)
SHAPES = (
    "a 1-D array of integer class labels (classification) or of numbers (regression), or a 2-D array of 0/1 "
    "columns (multilabel) or of numbers (regression with several targets)"
)


@dataclass(frozen=True)
class Targets:
    """The targets of every sample and the task they make.

    Attributes:
        task: ``classification``, ``regression`` or ``multilabel``.
        values: int64 class ids ``(n,)``; float64 targets ``(n,)`` or ``(n, k)``; int64 0/1 ``(n, k)``.
        n_outputs: Classes, targets or labels: what the builder gets as ``n_classes``.
        origin: How the task became known.
    """

    task: str
    values: np.ndarray
    n_outputs: int
    origin: TaskOrigin = DECLARED


def array_targets(y: np.ndarray, task: str | None, name: str, where: str, key: str = "data.y") -> Targets:
    """The targets of an array of labels (``data.y`` of ``kind: arrays``, ``labels:`` of ``kind: python``).

    Args:
        y: The labels as stored.
        task: The declared task, or None to infer it.
        name: The file (or function) as the experiment file names it.
        where: The experiment file.
        key: The key that names them.

    Raises:
        DataError: The labels do not fit the task, or no task fits them.
    """
    y = np.asarray(y)
    origin = DECLARED
    if task is None:
        task, origin = _infer(y, name, where, key)
    if len(y) == 0:
        raise DataError(f"{where}: key '{key}' holds no samples ({name} is empty); give one label per sample.")
    if task == "classification":
        ids = _class_ids(y, name, where, key, origin)
        return Targets(task, ids, int(ids.max()) + 1, origin)
    if task == "regression":
        values = _numbers(y, name, where, key)
        return Targets(task, values, 1 if values.ndim == 1 else values.shape[1], origin)
    if task == "multilabel":
        indicators = _indicators(y, name, where, key)
        return Targets(task, indicators, indicators.shape[1], origin)
    raise DataError(f"{where}: task is {task}, but key '{key}' holds one target per sample, not per-pixel masks.")


def _infer(y: np.ndarray, name: str, where: str, key: str) -> tuple[str, TaskOrigin]:
    integer = np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_
    numeric = integer or np.issubdtype(y.dtype, np.floating)
    if y.ndim == 1 and integer:
        return "classification", TaskOrigin(f"inferred from key '{key}': {name} holds integer labels")
    if y.ndim == 1 and numeric:
        whole = bool(len(y)) and bool(np.all(np.isfinite(y) & (y == np.round(y))))
        alternative = (
            "if they are class ids, save them as integers (np.save(path, y.astype(np.int64))) or declare "
            "task: classification"
            if whole
            else None
        )
        return "regression", TaskOrigin(f"inferred from key '{key}': {name} holds {y.dtype} numbers", alternative)
    if y.ndim == 2 and integer and np.isin(y, (0, 1)).all():
        return "multilabel", TaskOrigin(f"inferred from key '{key}': {name} holds {y.shape[1]} columns of 0/1")
    if y.ndim == 2 and numeric and not integer:
        return "regression", TaskOrigin(f"inferred from key '{key}': {name} holds {y.shape[1]} columns of numbers")
    raise DataError(
        f"{where}: key '{key}' must be {SHAPES}, but {name} has dtype {y.dtype} and shape {y.shape}. "
        + ("Save 0/1 label columns as integers 0 and 1, or several numeric targets as floats. " if y.ndim == 2 else "")
        + "Or declare task: to say how to read them."
    )


def _class_ids(y: np.ndarray, name: str, where: str, key: str, origin: TaskOrigin) -> np.ndarray:
    if y.ndim != 1 or not (np.issubdtype(y.dtype, np.number) or y.dtype == np.bool_):
        raise DataError(
            f"{where}: key '{key}' must be a 1-D array of integer class labels but {name} has dtype {y.dtype} and "
            f"shape {y.shape}. Encode labels as 0 .. n_classes-1"
            + (", or declare task: multilabel (0/1 columns) or regression." if y.ndim == 2 else ".")
        )
    if np.issubdtype(y.dtype, np.floating):
        fractional = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))
        if len(fractional):
            first = int(fractional[0])
            raise DataError(
                f"{where}: key '{key}' must hold class labels, but {name} (dtype {y.dtype}) holds {len(np.unique(y))} "
                f"distinct numbers that are not all integers (e.g. {float(y[first])!r} at index {first}); "
                + NOT_CLASS_LABELS.format(names="")
            )
    ids = y.astype(np.int64)
    if ids.min() < 0:
        raise DataError(
            f"{where}: key '{key}' must hold labels 0 .. n_classes-1; {name} has {len(ids)} samples and a label "
            f"{ids.min()}."
        )
    return ids


def _numbers(y: np.ndarray, name: str, where: str, key: str) -> np.ndarray:
    if y.ndim not in (1, 2) or not np.issubdtype(y.dtype, np.number):
        raise DataError(
            f"{where}: the task is regression, so key '{key}' must hold numbers, one per sample (or one row of "
            f"targets per sample), but {name} has dtype {y.dtype} and shape {y.shape}."
        )
    values = y.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(values).reshape(len(values), -1).all(axis=1))
    if len(bad):
        raise DataError(
            f"{where}: key '{key}' holds a value that is not a finite number for sample {int(bad[0])} of {name} "
            f"({values[bad[0]].tolist()!r}); regression targets must be finite. Fill or drop such samples."
        )
    return values


def _indicators(y: np.ndarray, name: str, where: str, key: str) -> np.ndarray:
    if y.ndim != 2 or not np.isin(y, (0, 1)).all():
        detail = f"shape {y.shape}" if y.ndim != 2 else "values other than 0 and 1"
        raise DataError(
            f"{where}: the task is multilabel, so key '{key}' must hold one column of 0/1 per label (shape "
            f"(n_samples, n_labels)), but {name} has {detail}."
        )
    return y.astype(np.int64)


# --- a CSV manifest's label columns -----------------------------------------------------------


def column_targets(columns: dict[str, list[str]], spec: CsvData, task: str | None, path: Path, where: str) -> Targets:
    """The targets of a manifest's label column(s): ``data.y_column``, one name or a list.

    Args:
        columns: Column name -> its values, row by row, for each column ``data.y_column`` names.
        spec: The validated ``data:`` section.
        task: The declared task, or None to infer it.
        path: The manifest.
        where: The experiment file.

    Raises:
        DataError: A value does not fit the task, or a label is not in ``data.class_names``.
    """
    names = list(columns)
    if len(names) > 1 or task == "multilabel":
        return _label_columns(columns, task, path, where)
    raw = columns[names[0]]
    numbers = spec.class_names is None and all(_NUMBER.match(v.strip()) for v in raw)
    fractional = [(row, v) for row, v in enumerate(raw) if numbers and float(v) != round(float(v))]
    if task == "regression" or (task is None and fractional):
        values = _column_numbers(raw, names[0], path, where)
        how = f"inferred from key 'data.y_column': column {names[0]!r} of {path} holds numbers that are not all whole"
        return Targets("regression", values, 1, DECLARED if task else TaskOrigin(how))
    if fractional:
        row, value = fractional[0]
        raise DataError(
            f"{where}: key 'data.y_column' is {names[0]!r}, but that column of {path} holds "
            f"{len(set(float(v) for v in raw))} distinct numbers that are not all integers (e.g. {value.strip()!r} "
            f"in row {row + 2}); " + NOT_CLASS_LABELS.format(names=" or names")
        )
    ids, n_classes = class_ids(raw, spec, path, where)
    origin = DECLARED if task else TaskOrigin(f"inferred from key 'data.y_column': column {names[0]!r} holds classes")
    return Targets("classification", ids, n_classes, origin)


def class_ids(raw: list[str], spec: CsvData, path: Path, where: str) -> tuple[np.ndarray, int]:
    """A column of class labels -> (ids, number of classes).

    Names map to ids in the order of data.class_names, else integers are taken as written, else names sorted.
    """
    if spec.class_names is None and all(v.strip().lstrip("-").isdigit() for v in raw):
        ids = np.array([int(v) for v in raw], dtype=np.int64)
        if ids.min() < 0:
            raise DataError(f"{where}: {path} has a label {ids.min()}; integer labels must be 0 .. n_classes-1.")
        return ids, int(ids.max()) + 1
    names = spec.class_names or sorted(set(raw))
    index = {n: i for i, n in enumerate(names)}
    for row, value in enumerate(raw):
        if value not in index:
            raise DataError(
                f"{where}: row {row + 2} of {path} has label {value!r}, which is not in data.class_names "
                f"({', '.join(names)}). Add it there or fix the row."
            )
    return np.array([index[v] for v in raw], dtype=np.int64), len(names)


def _column_numbers(raw: list[str], column: str, path: Path, where: str) -> np.ndarray:
    for row, value in enumerate(raw):
        if not _NUMBER.match(value.strip()):
            raise DataError(
                f"{where}: the task is regression, but column {column!r} of {path} holds {value!r} in row {row + 2}, "
                "which is not a number. Fix the row, or name the target column in data.y_column."
            )
    return np.array([float(v) for v in raw], dtype=np.float64)


def _label_columns(columns: dict[str, list[str]], task: str | None, path: Path, where: str) -> Targets:
    """Several columns: 0/1 labels (multilabel), else numbers (regression with several targets)."""
    names = list(columns)
    for name in names:
        for row, value in enumerate(columns[name]):
            if not _NUMBER.match(value.strip()):
                raise DataError(
                    f"{where}: key 'data.y_column' names columns {', '.join(names)} of {path}, but column {name!r} "
                    f"holds {value!r} in row {row + 2}: several target columns hold 0/1 labels (multilabel) or "
                    "numbers (regression). Fix the row."
                )
    values = np.array([[float(v) for v in columns[n]] for n in names], dtype=np.float64).T
    binary = bool(np.isin(values, (0.0, 1.0)).all())
    if task == "multilabel" or (task is None and binary):
        if not binary:
            raise DataError(
                f"{where}: the task is multilabel, so the columns data.y_column names ({', '.join(names)}) of "
                f"{path} must hold 0 or 1, but they hold other values. Fix the rows, or declare task: regression."
            )
        how = f"inferred from key 'data.y_column': columns {', '.join(names)} of {path} hold 0/1"
        return Targets("multilabel", values.astype(np.int64), len(names), DECLARED if task else TaskOrigin(how))
    if task not in (None, "regression"):
        raise DataError(
            f"{where}: the task is {task}, which takes one label column, but data.y_column names {len(names)} "
            f"({', '.join(names)}). Name one column, or declare task: multilabel or regression."
        )
    how = f"inferred from key 'data.y_column': columns {', '.join(names)} of {path} hold numbers"
    return Targets("regression", values, len(names), DECLARED if task else TaskOrigin(how))
