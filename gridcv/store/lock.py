"""The run lock: one live run per results folder, released by the kernel when its process dies."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from gridcv.errors import ResultsLockedError
from gridcv.store.failures import store_error

LOCK_NAME = "run.lock"


@dataclass(frozen=True)
class LockHolder:
    """Who holds a results folder's run lock."""

    pid: int
    host: str
    started_at: float

    def describe(self) -> str:
        """``pid 123 on host, started 2026-11-21 10:00:00``."""
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started_at))
        return f"pid {self.pid} on {self.host}, started {when}"


class RunLock:
    """An exclusive, kernel-released lock on a results folder.

    ``flock`` is tied to the open file: when the process dies for any reason
    the kernel drops it, so a lock can never be left stale, and a live
    holder's lock can never be stolen.
    """

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Takes the lock or raises :class:`ResultsLockedError` naming the holder.

        Raises:
            ResultsLockedError: A live process holds it.
            StoreError: The lock file cannot be written (a read-only folder, a full disk).
        """
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise store_error(self.path.parent, exc, "taking the run lock") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._read_holder(fd)
            os.close(fd)
            raise self._locked(holder) from None
        holder = LockHolder(os.getpid(), socket.gethostname(), time.time())
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(holder.__dict__).encode(), 0)
            os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            raise store_error(self.path.parent, exc, "taking the run lock") from None
        self._fd = fd

    @staticmethod
    def _read_holder(fd: int) -> LockHolder | None:
        try:
            return LockHolder(**json.loads(os.pread(fd, 4096, 0) or b"null"))
        except (TypeError, ValueError):
            return None

    def _locked(self, holder: LockHolder | None) -> ResultsLockedError:
        who = holder.describe() if holder else "another process"
        return ResultsLockedError(
            f"{self.path.parent}: another gridcv run is using this results folder "
            f"({who}). Wait for it to finish, stop it, or pass --output to write "
            "this run's results to a different folder."
        )

    def _probe(self) -> tuple[bool, LockHolder | None]:
        """Whether a live process holds the lock, and who (when its file says), without taking it."""
        if not self.path.exists():
            return False, None
        fd = os.open(self.path, os.O_RDONLY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True, self._read_holder(fd)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False, None
        finally:
            os.close(fd)

    def holder(self) -> LockHolder | None:
        """The live holder of the lock, or None if nobody holds it."""
        return self._probe()[1]

    def refuse_if_held(self) -> None:
        """Raises :class:`ResultsLockedError` naming the live holder, if any; never takes the lock.

        For checks made before a run commits to the folder: taking the lock only
        to report who holds it would keep it, should the holder exit meanwhile.
        """
        held, holder = self._probe()
        if held:
            raise self._locked(holder)

    def release(self) -> None:
        """Drops the lock (the kernel does it too if the process dies)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
