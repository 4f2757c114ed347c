"""The results database's operations: every read and every state change, one transaction each.

One database per results folder, in WAL mode with ``synchronous=FULL``, so a
kill at any moment leaves either the state before a transaction or the state
after it. Every state change is one transaction. A fold goes
pending -> running -> done | failed; a done row can never change again (a
trigger in the database enforces it, so no code path can forget to). The
refit of the best candidate is a row of the same table (fold -1) and goes
through the same states.

The store is the only truth about progress: the runner asks it what is left
instead of remembering. A run holds an exclusive lock on the folder for as
long as it lives (:class:`~gridcv.store.lock.RunLock`), so a ``running`` row
found by the lock holder was left by a dead run and is taken back as work.

Every error of the SQLite driver becomes a :class:`~gridcv.errors.StoreError`
whose message names the folder and what to do (as Optuna's storages turn
driver errors into ``StorageInternalError``).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from gridcv.errors import FinishedFoldError, ResultsError
from gridcv.execution.messages import FoldOutcome, OutcomeKind, Placement
from gridcv.faults import crash_point
from gridcv.plan import REFIT_FOLD, FoldTask, canonical_json
from gridcv.store.failures import store_error
from gridcv.store.rows import AttemptRow, FoldRow, FoldStatus
from gridcv.store.sqlite import DB_NAME, SCHEMA_VERSION, connect, has_tables, read_only_disk


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
            StoreError: The database cannot be opened or written (disk full, read-only folder).
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
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise store_error(folder, exc, "creating the results folder") from None
        try:
            conn = connect(db, readonly, untouched or (readonly and read_only_disk(folder)))
            if not has_tables(conn):
                conn.close()
                raise ResultsError(
                    f"{folder}: no gridcv results here yet: the run that created {DB_NAME} stopped before it "
                    "saved anything. Run the experiment to fill it."
                )
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            conn.execute("SELECT count(*) FROM folds").fetchone()
        except sqlite3.Error as exc:
            raise store_error(folder, exc, "opening its results database") from None
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
    def _guard(self, doing: str) -> Iterator[None]:
        """Turns driver errors into :class:`StoreError` with a message."""
        try:
            yield
        except sqlite3.Error as exc:
            raise store_error(self.folder, exc, doing) from None

    @contextlib.contextmanager
    def _transaction(self, doing: str, fault: str | None = None) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it or none of it lands."""
        with self._guard(doing):
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                if fault:
                    crash_point(fault)
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[ResultStore]:
        """Reads inside the block see one committed state of the store, whatever a run commits
        meanwhile (one read transaction; SQLite's WAL keeps that state for it)."""
        with self._guard("reading it"):
            self._conn.execute("BEGIN")
        try:
            yield self
        finally:
            if self._conn.in_transaction:
                with self._guard("reading it"):
                    self._conn.execute("COMMIT")

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._guard("reading it"):
            return self._conn.execute(sql, params).fetchall()

    # --- metadata ------------------------------------------------------------------------

    def get_meta(self, key: str) -> Any:
        """A metadata value (decoded JSON), or None."""
        rows = self._rows("SELECT value FROM meta WHERE key = ?", (key,))
        return json.loads(rows[0]["value"]) if rows else None

    def set_meta(self, **values: Any) -> None:
        """Sets metadata values in one transaction."""
        with self._transaction("saving the run's metadata") as tx:
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
        with self._transaction("adding the plan's folds") as tx:
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

    def add_refit(self, task: FoldTask, finished_before: bool = False) -> None:
        """Adds the refit task of a candidate (fold -1), unless it is there already.

        ``finished_before``: a results folder written by gridcv 0.1 recorded a
        finished refit in its metadata; it is adopted as done instead of redone.
        """
        if task.fold != REFIT_FOLD:
            raise ValueError(f"a refit task has fold {REFIT_FOLD}, not {task.fold}")
        status = FoldStatus.DONE if finished_before else FoldStatus.PENDING
        with self._transaction("adding the refit") as tx:
            tx.execute(
                "INSERT OR IGNORE INTO folds (task_id, candidate_id, fold, seed, status) VALUES (?, ?, ?, ?, ?)",
                (task.task_id, task.candidate_id, REFIT_FOLD, task.seed, status.value),
            )

    def reclaim_stale(self) -> list[str]:
        """Turns ``running`` rows back into pending work; returns their task ids.

        Only call this while holding the folder's run lock: then no live
        process can own a running row, so every one was left by a dead run.
        """
        with self._transaction("taking back folds of a run that ended") as tx:
            stale = [r["task_id"] for r in tx.execute("SELECT task_id FROM folds WHERE status = 'running'")]
            now = time.time()
            for task_id in stale:
                tx.execute(
                    "UPDATE attempts SET outcome = ?, finished_at = ?, "
                    "message = 'the run ended while this fold was training' "
                    "WHERE task_id = ? AND finished_at IS NULL",
                    (OutcomeKind.ABANDONED.value, now, task_id),
                )
                tx.execute("UPDATE folds SET status = 'pending' WHERE task_id = ?", (task_id,))
            return stale

    def reset_failed(self) -> int:
        """Turns failed folds back into pending work (``gridcv run --retry-failed``)."""
        with self._transaction("resetting failed folds") as tx:
            return int(tx.execute("UPDATE folds SET status = 'pending' WHERE status = 'failed'").rowcount)

    def discard_unfinished(self) -> dict[FoldStatus, int]:
        """Deletes every fold (and the refit) that is not done, with its attempts.

        For a changed experiment accepted by a folder with nothing done: its
        failed and started folds ran with the old settings, and their attempts
        would steer the new ones (out-of-memory halvings, retry counts).

        Returns:
            How many folds of each status were discarded (started ones only:
            pending folds never attempted are not counted).
        """
        with self._transaction("discarding the folds of the old settings") as tx:
            counts: dict[FoldStatus, int] = {}
            for r in tx.execute("SELECT status FROM folds WHERE status != 'done' AND attempts > 0"):
                counts[FoldStatus(r["status"])] = counts.get(FoldStatus(r["status"]), 0) + 1
            tx.execute("DELETE FROM attempts WHERE task_id IN (SELECT task_id FROM folds WHERE status != 'done')")
            tx.execute("DELETE FROM folds WHERE status != 'done'")
            return counts

    # --- state changes -------------------------------------------------------------------

    def mark_running(
        self, task_id: str, batch_size: int, accumulation_steps: int, where: Placement | None = None
    ) -> int:
        """pending -> running; records a new attempt (on slot ``where``) and returns its number."""
        where = where or Placement("")
        with self._transaction("starting a fold") as tx:
            row = self._unfinished(tx, task_id)
            attempt = int(row["attempts"]) + 1
            now = time.time()
            tx.execute(
                "UPDATE folds SET status = 'running', attempts = ?, started_at = ? WHERE task_id = ?",
                (attempt, now, task_id),
            )
            tx.execute(
                "INSERT INTO attempts (task_id, attempt, batch_size, accumulation_steps, started_at, slot, device, "
                "host) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (task_id, attempt, batch_size, accumulation_steps, now, where.slot or None, where.device, where.host),
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
        with self._transaction("saving a fold's result", fault="store-commit") as tx:
            row = self._unfinished(tx, o.task_id)
            tx.execute(
                "UPDATE attempts SET outcome = ?, message = ?, error = ?, batch_size = ?, "
                "accumulation_steps = ?, peak_rss = ?, worker_id = ?, resumed_from_epoch = ?, "
                "finished_at = ?, device = coalesce(?, device), host = coalesce(?, host) "
                "WHERE task_id = ? AND attempt = ?",
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
                    o.device,  # what the worker saw wins over what the slot expected
                    o.host,
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

    def _unfinished(self, tx: sqlite3.Connection, task_id: str) -> sqlite3.Row:
        row = tx.execute("SELECT status, attempts FROM folds WHERE task_id = ?", (task_id,)).fetchone()
        if row is None:
            raise ResultsError(_missing(self.folder, task_id))
        if FoldStatus(row["status"]).is_finished():
            raise FinishedFoldError(f"fold {task_id} is already {row['status']}")
        return row

    # --- reading -------------------------------------------------------------------------

    def statuses(self) -> dict[str, FoldStatus]:
        """task id -> status, for every fold in the store (the refit included)."""
        return {r["task_id"]: FoldStatus(r["status"]) for r in self._rows("SELECT task_id, status FROM folds")}

    def status_of(self, task_id: str) -> FoldStatus:
        """The status of one fold."""
        rows = self._rows("SELECT status FROM folds WHERE task_id = ?", (task_id,))
        if not rows:
            raise ResultsError(_missing(self.folder, task_id))
        return FoldStatus(rows[0]["status"])

    def attempts_of(self, task_id: str) -> list[AttemptRow]:
        """The attempts at one fold, oldest first."""
        rows = self._rows("SELECT * FROM attempts WHERE task_id = ? ORDER BY attempt", (task_id,))
        return [AttemptRow.from_sql(r) for r in rows]

    def candidate_attempts(self, task_id: str) -> list[AttemptRow]:
        """The attempts at the other tasks of a task's candidate (its other folds and refits), oldest first.

        Each row carries its task's ``fold``: what one fold learnt of the
        candidate's memory need spares the others (see :func:`gridcv.runner.policy.retry_shape`).
        """
        rows = self._rows(
            "SELECT a.*, f.fold FROM attempts a JOIN folds f USING (task_id) WHERE a.task_id != ? "
            "AND f.candidate_id = (SELECT candidate_id FROM folds WHERE task_id = ?) ORDER BY a.started_at, a.attempt",
            (task_id, task_id),
        )
        return [AttemptRow.from_sql(r) for r in rows]

    def counts(self) -> dict[FoldStatus, int]:
        """How many cross-validation folds are in each state (every state present, zero included)."""
        counts = dict.fromkeys(FoldStatus, 0)
        for r in self._rows(f"SELECT status, count(*) AS n FROM folds WHERE fold != {REFIT_FOLD} GROUP BY status"):
            counts[FoldStatus(r["status"])] = r["n"]
        return counts

    def fold_rows(self) -> list[FoldRow]:
        """Every cross-validation fold with its candidate, in (candidate, fold) order."""
        return self._fold_rows(f"f.fold != {REFIT_FOLD}")

    def refit_rows(self) -> list[FoldRow]:
        """Every refit task, oldest first."""
        return self._fold_rows(f"f.fold = {REFIT_FOLD}", order="f.rowid")

    def refit_row(self, task_id: str) -> FoldRow | None:
        """One refit task, or None if it was never added."""
        rows = [r for r in self.refit_rows() if r.task_id == task_id]
        return rows[0] if rows else None

    def _fold_rows(self, where: str, order: str = "c.candidate_index, f.fold") -> list[FoldRow]:
        rows = self._rows(
            "SELECT f.*, c.candidate_index, c.params FROM folds f "
            f"JOIN candidates c USING (candidate_id) WHERE {where} ORDER BY {order}"
        )
        return [FoldRow.from_sql(r) for r in rows]

    def attempt_rows(self) -> list[AttemptRow]:
        """Every attempt at every fold, oldest first."""
        return [AttemptRow.from_sql(r) for r in self._rows("SELECT * FROM attempts ORDER BY started_at, attempt")]

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` answer (``ok`` when healthy)."""
        return str(self._rows("PRAGMA integrity_check")[0][0])


def _missing(folder: Path, task_id: str) -> str:
    return (
        f"{folder}: fold {task_id} is not in the results database, which changed under this run (was it replaced "
        "or restored from a copy?). Run the same command again: it reads the plan from the database afresh."
    )
