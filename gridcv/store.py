"""The results store: the only module that talks to SQLite.

One database per results folder, in WAL mode with ``synchronous=FULL``, so a
kill at any moment leaves either the state before a transaction or the state
after it. Every state change is one transaction. A fold goes
pending -> running -> done | failed; a done row can never change again (a
trigger in the database enforces it, so no code path can forget to).

The store is the only truth about progress: the runner asks it what is left
instead of remembering. A run holds an exclusive lock on the folder for as
long as it lives (``flock``, released by the kernel when the process dies),
so a ``running`` row found by the lock holder was left by a dead run and is
taken back as work.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gridcv.errors import FinishedFoldError, ResultsError, ResultsLockedError
from gridcv.faults import crash_point
from gridcv.jobs import FoldOutcome, FoldStatus
from gridcv.plan import FoldTask, canonical_json

DB_NAME = "results.sqlite"
LOCK_NAME = "run.lock"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS candidates (
    candidate_id TEXT PRIMARY KEY,
    candidate_index INTEGER NOT NULL,
    params TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS folds (
    task_id TEXT PRIMARY KEY,
    candidate_id TEXT NOT NULL REFERENCES candidates(candidate_id),
    fold INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    scores TEXT,
    fit_time REAL,
    score_time REAL,
    epochs_run INTEGER,
    batch_size INTEGER,
    accumulation_steps INTEGER,
    history TEXT,
    cause TEXT,
    message TEXT,
    error TEXT,
    peak_rss INTEGER,
    worker_id TEXT,
    worker_folds INTEGER,
    started_at REAL,
    finished_at REAL,
    info TEXT,
    UNIQUE (candidate_id, fold)
);
CREATE TABLE IF NOT EXISTS attempts (
    task_id TEXT NOT NULL REFERENCES folds(task_id),
    attempt INTEGER NOT NULL,
    outcome TEXT,
    message TEXT,
    error TEXT,
    batch_size INTEGER,
    accumulation_steps INTEGER,
    peak_rss INTEGER,
    worker_id TEXT,
    resumed_from_epoch INTEGER,
    started_at REAL NOT NULL,
    finished_at REAL,
    PRIMARY KEY (task_id, attempt)
);
CREATE TRIGGER IF NOT EXISTS done_folds_are_final
BEFORE UPDATE ON folds WHEN OLD.status = 'done'
BEGIN
    SELECT RAISE(ABORT, 'gridcv: a done fold cannot change');
END;
CREATE TRIGGER IF NOT EXISTS done_folds_stay
BEFORE DELETE ON folds WHEN OLD.status = 'done'
BEGIN
    SELECT RAISE(ABORT, 'gridcv: a done fold cannot change');
END;
"""


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    """Columns added after a results folder was created (``CREATE TABLE IF NOT EXISTS`` skips them)."""
    have = {r[1] for r in conn.execute("PRAGMA table_info(folds)")}
    if "info" not in have:  # training details (best epoch, train scores, precision...), JSON
        conn.execute("ALTER TABLE folds ADD COLUMN info TEXT")


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
        """Takes the lock or raises :class:`ResultsLockedError` naming the holder."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._read_holder(fd)
            os.close(fd)
            raise self._locked(holder) from None
        holder = LockHolder(os.getpid(), socket.gethostname(), time.time())
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder.__dict__).encode(), 0)
        os.fsync(fd)
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


class ResultStore:
    """The SQLite results table of one results folder.

    Create one with :meth:`open`; use it as a context manager to close it.
    """

    def __init__(self, conn: sqlite3.Connection, folder: Path) -> None:
        self._conn = conn
        self.folder = folder

    # --- opening -------------------------------------------------------------------------

    @classmethod
    def open(
        cls, folder: Path, *, create: bool = False, readonly: bool = False, untouched: bool = False
    ) -> ResultStore:
        """Opens the store of a results folder.

        Args:
            folder: The results folder.
            create: Create the folder and the database if they do not exist.
            readonly: Open for reading only (safe while a run writes).
            untouched: Read without creating SQLite's ``-wal``/``-shm`` files. Only
                when no run holds the folder: it does not see a concurrent writer.
                If a write-ahead log is there (a run died before checkpointing it),
                it holds committed data, so the database is read normally.

        Raises:
            ResultsError: The folder has no results database, or it is not one.
        """
        db = folder / DB_NAME
        if untouched and Path(f"{db}-wal").exists():
            untouched, readonly = False, True
        if not db.exists():
            if not create:
                raise ResultsError(
                    f"{folder}: no gridcv results here (expected {DB_NAME}). Pass the results "
                    "folder of a run, such as results/<name>, or the experiment file."
                )
            folder.mkdir(parents=True, exist_ok=True)
        try:
            if readonly or untouched:
                mode = "ro&immutable=1" if untouched else "ro"
                conn = sqlite3.connect(f"{db.as_uri()}?mode={mode}", uri=True, isolation_level=None)
            else:
                conn = sqlite3.connect(db, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout = 30000")
            if not (readonly or untouched):
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = FULL")
                conn.executescript(_SCHEMA)
                _add_missing_columns(conn)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            conn.execute("SELECT count(*) FROM folds").fetchone()
        except sqlite3.DatabaseError as exc:
            raise ResultsError(
                f"{db}: cannot be read as a gridcv results database ({exc}). It was left "
                "untouched; restore it from a backup, or pass --output to start a new results "
                "folder."
            ) from None
        if version > SCHEMA_VERSION:
            conn.close()
            raise ResultsError(f"{db}: written by a newer gridcv (schema {version}); upgrade gridcv to read it.")
        return cls(conn, folder)

    def close(self) -> None:
        """Closes the connection."""
        self._conn.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _transaction(self, fault: str | None = None) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it or none of it lands."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
            if fault:
                crash_point(fault)
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # --- metadata ------------------------------------------------------------------------

    def get_meta(self, key: str) -> Any:
        """A metadata value (decoded JSON), or None."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row["value"])

    def set_meta(self, **values: Any) -> None:
        """Sets metadata values in one transaction."""
        with self._transaction() as tx:
            tx.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [(k, json.dumps(v, sort_keys=True)) for k, v in values.items()],
            )

    # --- the plan ------------------------------------------------------------------------

    def add_tasks(self, tasks: Sequence[FoldTask]) -> int:
        """Adds fold tasks that are not in the store yet; returns how many were new.

        Candidate positions are refreshed to the current grid order; finished
        folds are left as they are.
        """
        with self._transaction() as tx:
            tx.executemany(
                "INSERT INTO candidates (candidate_id, candidate_index, params) VALUES (?, ?, ?) "
                "ON CONFLICT (candidate_id) DO UPDATE SET candidate_index = excluded.candidate_index",
                list(
                    {
                        t.candidate_id: (t.candidate_id, t.candidate_index, canonical_json(t.params)) for t in tasks
                    }.values()
                ),
            )
            before = tx.total_changes
            tx.executemany(
                "INSERT OR IGNORE INTO folds (task_id, candidate_id, fold, seed, status) "
                "VALUES (?, ?, ?, ?, 'pending')",
                [(t.task_id, t.candidate_id, t.fold, t.seed) for t in tasks],
            )
            return tx.total_changes - before

    def reclaim_stale(self) -> list[str]:
        """Turns ``running`` rows back into pending work; returns their task ids.

        Only call this while holding the folder's :class:`RunLock`: then no
        live process can own a running row, so every one was left by a dead run.
        """
        with self._transaction() as tx:
            stale = [r["task_id"] for r in tx.execute("SELECT task_id FROM folds WHERE status = 'running'")]
            now = time.time()
            for task_id in stale:
                tx.execute(
                    "UPDATE attempts SET outcome = 'abandoned', finished_at = ?, "
                    "message = 'the run ended while this fold was training' "
                    "WHERE task_id = ? AND finished_at IS NULL",
                    (now, task_id),
                )
                tx.execute("UPDATE folds SET status = 'pending' WHERE task_id = ?", (task_id,))
            return stale

    def reset_failed(self) -> int:
        """Turns failed folds back into pending work (``gridcv run --retry-failed``)."""
        with self._transaction() as tx:
            return tx.execute("UPDATE folds SET status = 'pending' WHERE status = 'failed'").rowcount

    # --- state changes -------------------------------------------------------------------

    def mark_running(self, task_id: str, batch_size: int, accumulation_steps: int) -> int:
        """pending -> running; records a new attempt and returns its number."""
        with self._transaction() as tx:
            row = tx.execute("SELECT status, attempts FROM folds WHERE task_id = ?", (task_id,)).fetchone()
            if row is None:
                raise KeyError(task_id)
            if FoldStatus(row["status"]).is_finished():
                raise FinishedFoldError(f"fold {task_id} is already {row['status']}")
            attempt = row["attempts"] + 1
            now = time.time()
            tx.execute(
                "UPDATE folds SET status = 'running', attempts = ?, started_at = ? WHERE task_id = ?",
                (attempt, now, task_id),
            )
            tx.execute(
                "INSERT INTO attempts (task_id, attempt, batch_size, accumulation_steps, started_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (task_id, attempt, batch_size, accumulation_steps, now),
            )
            return attempt

    def record(self, outcome: FoldOutcome, status: FoldStatus) -> None:
        """Closes the running attempt with ``outcome`` and moves the fold to ``status``.

        ``status`` is DONE or FAILED for a final outcome, PENDING when the fold
        will be tried again (an OOM retry, an interrupted fold).
        """
        if status is FoldStatus.RUNNING:
            raise ValueError("record() ends an attempt; it cannot leave the fold running")
        o = outcome
        now = time.time()
        with self._transaction(fault="store-commit") as tx:
            row = tx.execute("SELECT status, attempts FROM folds WHERE task_id = ?", (o.task_id,)).fetchone()
            if row is None:
                raise KeyError(o.task_id)
            if FoldStatus(row["status"]).is_finished():
                raise FinishedFoldError(f"fold {o.task_id} is already {row['status']}")
            tx.execute(
                "UPDATE attempts SET outcome = ?, message = ?, error = ?, batch_size = ?, "
                "accumulation_steps = ?, peak_rss = ?, worker_id = ?, resumed_from_epoch = ?, "
                "finished_at = ? WHERE task_id = ? AND attempt = ?",
                (
                    o.kind.value,
                    o.message,
                    o.error,
                    o.batch_size,
                    o.accumulation_steps,
                    o.peak_rss,
                    o.worker_id,
                    o.resumed_from_epoch,
                    now,
                    o.task_id,
                    row["attempts"],
                ),
            )
            tx.execute(
                "UPDATE folds SET status = ?, scores = ?, fit_time = ?, score_time = ?, "
                "epochs_run = ?, batch_size = ?, accumulation_steps = ?, history = ?, cause = ?, "
                "message = ?, error = ?, peak_rss = ?, worker_id = ?, worker_folds = ?, "
                "finished_at = ?, info = ? WHERE task_id = ?",
                (
                    status.value,
                    json.dumps(o.scores),
                    o.fit_time,
                    o.score_time,
                    o.epochs_run,
                    o.batch_size,
                    o.accumulation_steps,
                    json.dumps(o.history),
                    o.kind.value,
                    o.message,
                    o.error,
                    o.peak_rss,
                    o.worker_id,
                    o.worker_folds,
                    now if status.is_finished() else None,
                    json.dumps(o.info),
                    o.task_id,
                ),
            )

    # --- reading -------------------------------------------------------------------------

    def statuses(self) -> dict[str, FoldStatus]:
        """task id -> status, for every fold in the store."""
        return {r["task_id"]: FoldStatus(r["status"]) for r in self._conn.execute("SELECT task_id, status FROM folds")}

    def status_of(self, task_id: str) -> FoldStatus:
        """The status of one fold."""
        row = self._conn.execute("SELECT status FROM folds WHERE task_id = ?", (task_id,)).fetchone()
        if row is None:
            raise KeyError(task_id)
        return FoldStatus(row["status"])

    def attempts_of(self, task_id: str) -> list[dict[str, Any]]:
        """The attempts at one fold, oldest first."""
        return [
            dict(r) for r in self._conn.execute("SELECT * FROM attempts WHERE task_id = ? ORDER BY attempt", (task_id,))
        ]

    def counts(self) -> dict[FoldStatus, int]:
        """How many folds are in each state (every state present, zero included)."""
        counts = dict.fromkeys(FoldStatus, 0)
        for r in self._conn.execute("SELECT status, count(*) AS n FROM folds GROUP BY status"):
            counts[FoldStatus(r["status"])] = r["n"]
        return counts

    def fold_rows(self) -> list[dict[str, Any]]:
        """Every fold with its candidate, decoded, in (candidate, fold) order."""
        rows = self._conn.execute(
            "SELECT f.*, c.candidate_index, c.params FROM folds f "
            "JOIN candidates c USING (candidate_id) ORDER BY c.candidate_index, f.fold"
        )
        out = []
        for r in rows:
            d = dict(r)
            for key in ("params", "scores", "history", "info"):
                # .get: a read-only open cannot add columns a newer gridcv introduced ('info')
                d[key] = json.loads(d[key]) if d.get(key) else ({} if key != "params" else None)
            out.append(d)
        return out

    def attempt_rows(self) -> list[dict[str, Any]]:
        """Every attempt at every fold, oldest first."""
        return [dict(r) for r in self._conn.execute("SELECT * FROM attempts ORDER BY started_at, attempt")]

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` answer (``ok`` when healthy)."""
        return str(self._conn.execute("PRAGMA integrity_check").fetchone()[0])
