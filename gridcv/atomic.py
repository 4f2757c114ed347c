"""Writing files so that a crash leaves the old file or the new one, never half of one.

Every file gridcv writes into a results folder (checkpoints, the experiment
copy, ``best_model.keras`` and its JSON, models kept by callbacks) goes
through here, as in submitit and joblib: write to a temporary name in the
same folder, fsync it, rename it into place, fsync the folder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gridcv.faults import crash_point


@dataclass(frozen=True)
class CrashPoints:
    """The fault points (see :mod:`gridcv.faults`) one kind of write passes.

    Attributes:
        mid_write: Reached when half of the bytes are in the temporary file.
        before_rename: Reached when the temporary file is complete, not yet renamed.
    """

    mid_write: str
    before_rename: str


_TEMPORARY = re.compile(r"^\..*\.tmp-\d+(\.[^.]*)?$")  # what temporary_name makes


def temporary_name(path: Path) -> Path:
    """The temporary file ``path`` is written to first: hidden, same folder, same suffix."""
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


def remove_temporary_files(folder: Path) -> list[Path]:
    """Deletes the temporary files that writes cut short by a kill left under ``folder``; returns them.

    Call it only while nothing writes into ``folder``: under the run lock, since
    the workers of a dead run died with it.
    """
    removed = []
    for parent, _dirs, files in os.walk(folder):
        for name in files:
            if _TEMPORARY.match(name):
                path = Path(parent) / name
                path.unlink(missing_ok=True)
                removed.append(path)
    return sorted(removed)


def write_atomic(path: Path, data: bytes, crash_points: CrashPoints | None = None) -> None:
    """Writes ``data`` to ``path`` atomically and durably.

    Args:
        path: The file to write.
        data: Its new content.
        crash_points: Fault points of this kind of write, for crash tests; None passes none.
    """
    tmp = temporary_name(path)
    with open(tmp, "wb") as f:
        f.write(data[: len(data) // 2])
        f.flush()
        if crash_points:
            crash_point(crash_points.mid_write)
        f.write(data[len(data) // 2 :])
        f.flush()
        os.fsync(f.fileno())
    if crash_points:
        crash_point(crash_points.before_rename)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def save_atomic(path: Path, save: Callable[[Path], None]) -> None:
    """Has ``save`` write a temporary file (a library's own writer), then moves it into place durably."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    save(tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Makes a rename (or a new file) in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
