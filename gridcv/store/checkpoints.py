"""Checkpoint files of a fold: format, atomic writes, validation. No Keras here.

Written by workers (:mod:`gridcv.training.checkpointing` decides what goes in),
read by workers when a fold resumes and by ``gridcv status`` for the epoch a
fold in flight reached. One ``.npz`` file per position holds every
training variable's value, the position (epochs completed, and batches of the
next epoch for a checkpoint within an epoch: ``epoch-00003-batch-0000120.npz``),
the history and fit time so far, the state of stateful callbacks (JSON, plus
named arrays such as EarlyStopping's best weights; within an epoch, also the
metrics' accumulated values), and a checksum over every array. It is written to a temporary
name, fsynced and renamed into place, and the previous checkpoint is kept
until the new one is complete, so a kill at any instant leaves at least one
whole checkpoint. Unlike Keras's ``BackupAndRestore`` there is no second file
to get out of step with the first.

A damaged checkpoint (truncated, corrupt, written for another model) is
skipped for the next older one, or the fold starts over; the caller is told
which, so the fold's row and the terminal say so. An error that says nothing
about the file (permission denied, out of memory, a failing disk) is raised
instead: skipping a whole checkpoint for it would redo epochs silently.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gridcv.atomic import CrashPoints, write_atomic

log = logging.getLogger(__name__)

_NAME = re.compile(r"^epoch-(\d{5})(?:-batch-(\d{7}))?\.npz$")
KEEP = 2  # the newest checkpoint and the one before it
# What reading a damaged checkpoint raises: np.load on a cut or garbled file, its JSON, read_checkpoint's checks.
DAMAGED = (ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error)
# Fault points of a checkpoint's write (see gridcv.faults), for crash tests.
CRASH_POINTS = CrashPoints(mid_write="checkpoint-write", before_rename="checkpoint-rename")


@dataclass
class TrainingState:
    """Where a fold's training stands: what a resume continues from.

    Attributes:
        epoch: Epochs completed.
        batch: Batches of the next epoch completed (0 at an epoch's end).
        history: Keras history so far, metric -> per-epoch values.
        fit_time: Seconds of training so far, over every attempt.
        extra: JSON-able state of stateful callbacks, by name.
        arrays: Named arrays of stateful callbacks (saved in the same file).
    """

    epoch: int = 0
    history: dict[str, list[float]] = field(default_factory=dict)
    fit_time: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    batch: int = 0

    @property
    def position(self) -> tuple[int, int]:
        """(epochs completed, batches of the next epoch completed): checkpoints sort by it."""
        return (self.epoch, self.batch)


def checkpoint_name(epoch: int, batch: int = 0) -> str:
    """The file name of the checkpoint at a position."""
    return f"epoch-{epoch:05d}.npz" if batch == 0 else f"epoch-{epoch:05d}-batch-{batch:07d}.npz"


def position_of(path: Path) -> tuple[int, int] | None:
    """The (epoch, batch) a checkpoint file's name says, or None for another file."""
    match = _NAME.match(path.name)
    return (int(match.group(1)), int(match.group(2) or 0)) if match else None


def _checksum(arrays: Sequence[np.ndarray]) -> str:
    digest = hashlib.sha256()
    for a in arrays:
        digest.update(np.ascontiguousarray(a).tobytes())
    return digest.hexdigest()


def save_checkpoint(folder: Path, state: TrainingState, arrays: Sequence[np.ndarray], signature: list[Any]) -> Path:
    """Writes the checkpoint of ``state``'s position and prunes older ones.

    Args:
        folder: The fold's checkpoint folder.
        state: Epoch, history, fit time and callback state (JSON and arrays).
        arrays: Values of the training variables, in a fixed order.
        signature: Description of those variables (names, shapes, dtypes); a
            checkpoint is only restored into variables with the same signature.
    """
    folder.mkdir(parents=True, exist_ok=True)
    names = sorted(state.arrays)
    extra_arrays = [np.asarray(state.arrays[n]) for n in names]
    meta = {
        "epoch": state.epoch,
        "batch": state.batch,
        "history": state.history,
        "fit_time": state.fit_time,
        "extra": state.extra,
        "signature": signature,
        "array_names": names,
        "sha256": _checksum([*arrays, *extra_arrays]),
    }
    buffer = io.BytesIO()
    members: dict[str, Any] = {f"v{i:05d}": a for i, a in enumerate(arrays)}
    members.update({f"a{i:05d}": a for i, a in enumerate(extra_arrays)})
    np.savez(buffer, meta=np.array(json.dumps(meta)), **members)
    path = folder / checkpoint_name(state.epoch, state.batch)
    write_atomic(path, buffer.getvalue(), CRASH_POINTS)
    for old in list_checkpoints(folder)[KEEP:]:
        old.unlink(missing_ok=True)
    return path


def list_checkpoints(folder: Path) -> list[Path]:
    """Checkpoint files, newest (furthest position) first."""
    if not folder.is_dir():
        return []
    found = [(position, p) for p in folder.iterdir() if (position := position_of(p)) is not None]
    return [p for _, p in sorted(found, reverse=True)]


def latest_epoch(folder: Path) -> int | None:
    """Epochs completed according to the newest checkpoint file's name, or None."""
    position = latest_position(folder)
    return None if position is None else position[0]


def latest_position(folder: Path) -> tuple[int, int] | None:
    """(epochs completed, batches into the next) of the newest checkpoint file, or None."""
    files = list_checkpoints(folder)
    return position_of(files[0]) if files else None


def read_checkpoint(path: Path, signature: list[Any]) -> tuple[TrainingState, list[np.ndarray]]:
    """Reads and validates one checkpoint.

    Raises:
        ValueError: (or any read error) The file is unusable: truncated, corrupt,
            or written for variables with another signature.
    """
    with np.load(path, allow_pickle=False) as npz:
        meta = json.loads(str(npz["meta"]))
        arrays = [npz[f"v{i:05d}"] for i in range(len(meta["signature"]))]
        names = meta.get("array_names", [])
        extra_arrays = [npz[f"a{i:05d}"] for i in range(len(names))]
    if meta["signature"] != signature:
        raise ValueError("it was written for a different model or optimizer")
    if _checksum([*arrays, *extra_arrays]) != meta["sha256"]:
        raise ValueError("its checksum does not match")
    state = TrainingState(
        epoch=int(meta["epoch"]),
        batch=int(meta.get("batch", 0)),
        history=meta["history"],
        fit_time=float(meta["fit_time"]),
        extra=meta.get("extra", {}),
        arrays=dict(zip(names, extra_arrays, strict=True)),
    )
    return state, arrays


def newest_usable(
    folder: Path,
    signature: list[Any],
    check: Callable[[TrainingState], None] | None = None,
    *,
    skipped: list[str] | None = None,
) -> tuple[TrainingState, list[np.ndarray]] | None:
    """The newest checkpoint that reads and validates, or None.

    Args:
        folder: The fold's checkpoint folder.
        signature: What the checkpoint's variables must match (see :func:`read_checkpoint`).
        check: May refuse a checkpoint that reads (raising ValueError): an older one is tried.
        skipped: Gets one line per damaged or refused checkpoint passed over
            (``<folder>/epoch-00003.npz (its checksum does not match)``).

    Raises:
        OSError, MemoryError: A checkpoint cannot be read for a reason that is
            not damage to it; the attempt fails with that error.
    """
    files = list_checkpoints(folder)
    for path in files:
        try:
            found = read_checkpoint(path, signature)
            if check is not None:
                check(found[0])
            return found
        except DAMAGED as exc:
            why = str(exc) or type(exc).__name__
            log.warning("checkpoint %s cannot be used (%s); trying an older one", path, why)
            if skipped is not None:
                skipped.append(f"{path} ({why})")
    if files:
        log.warning("no usable checkpoint in %s; the fold starts from epoch 0", folder)
    return None
