"""A results folder that cannot be read or written, said in one paragraph with what to do.

SQLite's errors (from :mod:`gridcv.store.database`) and the operating
system's (a checkpoint, the lock file, the experiment's copy) come down to
the same few problems; each gets one message, naming the folder, what gridcv
was doing and the fix, so a full disk reads the same wherever it was hit.
"""

from __future__ import annotations

import enum
import errno
import sqlite3
from pathlib import Path

from gridcv.errors import StoreError

_KEPT = "then run the same command again: finished folds are kept."


class Problem(enum.Enum):
    """What is wrong with the storage."""

    FULL = "full"
    READ_ONLY = "read_only"
    IO = "io"
    BUSY = "busy"
    CORRUPT = "corrupt"


_OS_PROBLEMS = {
    errno.ENOSPC: Problem.FULL,
    errno.EDQUOT: Problem.FULL,
    errno.EFBIG: Problem.FULL,
    errno.EROFS: Problem.READ_ONLY,
    errno.EACCES: Problem.READ_ONLY,
    errno.EPERM: Problem.READ_ONLY,
    errno.EIO: Problem.IO,
}


def os_problem(exc: BaseException) -> Problem | None:
    """The storage problem an ``OSError`` is, or None for any other error."""
    return _OS_PROBLEMS.get(exc.errno) if isinstance(exc, OSError) and exc.errno is not None else None


def sqlite_problem(exc: sqlite3.Error) -> Problem:
    """The storage problem a SQLite driver error is."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc)
    if name == "SQLITE_FULL" or "full" in text:
        return Problem.FULL
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM")) or "readonly" in text:
        return Problem.READ_ONLY
    if name.startswith("SQLITE_IOERR") or "I/O" in text:
        return Problem.IO
    if name.startswith("SQLITE_BUSY") or "locked" in text:
        return Problem.BUSY
    return Problem.CORRUPT


def explain(problem: Problem, folder: Path, doing: str, detail: object) -> str:
    """The one-paragraph message of a storage problem."""
    if problem is Problem.FULL:
        return f"{folder}: the disk is full ({detail}) while {doing}. Free space on that disk, {_KEPT}"
    if problem is Problem.READ_ONLY:
        return (
            f"{folder}: the results folder cannot be written ({detail}) while {doing}. Make it writable (check its "
            "permissions, and that its disk is not mounted read-only), or pass --output to write to another folder."
        )
    if problem is Problem.IO:
        return f"{folder}: the disk reported an I/O error ({detail}) while {doing}. Check the disk (dmesg), {_KEPT}"
    if problem is Problem.BUSY:
        return (
            f"{folder}: the results database stayed locked by another process for 30 s ({detail}) while {doing}. "
            "Stop whatever else has it open (a database browser, a copy in progress), then run again."
        )
    return (
        f"{folder / 'results.sqlite'}: cannot be read as a gridcv results database ({detail}). It was left "
        "untouched; restore it from a backup, or pass --output to start a new results folder."
    )


def store_error(folder: Path, exc: sqlite3.Error | OSError, doing: str) -> StoreError:
    """The :class:`StoreError` for a driver or system error met while ``doing`` something in ``folder``."""
    if isinstance(exc, sqlite3.Error):
        return StoreError(explain(sqlite_problem(exc), folder, doing, exc))
    problem = os_problem(exc) or Problem.IO
    detail = f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror or exc
    return StoreError(explain(problem, folder, doing, detail))
