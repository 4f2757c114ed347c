"""Opening a results database: the schema, its migrations, and the driver's errors as messages;
and what a database file holds before a store is opened on it (:func:`holds_results`).

Part of the store, the only package that talks to SQLite; :mod:`gridcv.store.database`
holds the operations.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

DB_NAME = "results.sqlite"
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
    slot TEXT,
    device TEXT,
    host TEXT,
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


def add_missing_columns(conn: sqlite3.Connection) -> None:
    """Columns added after a results folder was created (``CREATE TABLE IF NOT EXISTS`` skips them)."""
    have = {r[1] for r in conn.execute("PRAGMA table_info(folds)")}
    if "info" not in have:  # training details (best epoch, train scores, precision...), JSON
        conn.execute("ALTER TABLE folds ADD COLUMN info TEXT")
    have = {r[1] for r in conn.execute("PRAGMA table_info(attempts)")}
    for column in ("slot", "device", "host"):  # where each attempt ran (several slots, Dask)
        if column not in have:
            conn.execute(f"ALTER TABLE attempts ADD COLUMN {column} TEXT")


def connect(db: Path, readonly: bool, untouched: bool) -> sqlite3.Connection:
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
        add_missing_columns(conn)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return conn


def holds_results(folder: Path) -> bool:
    """Whether the folder has a results database with something in it (read without touching it)."""
    db = folder / DB_NAME
    if not db.is_file():
        return False
    try:
        with contextlib.closing(connect(db, readonly=True, untouched=not Path(f"{db}-wal").exists())) as conn:
            return has_tables(conn)
    except sqlite3.Error:
        return True  # something is there; opening it properly says what is wrong


def has_tables(conn: sqlite3.Connection) -> bool:
    """Whether the database has any table (a run that created the file may have died before the schema)."""
    return bool(conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0])


def read_only_disk(folder: Path) -> bool:
    """Whether the folder is on a file system mounted read-only (then no run can be writing it)."""
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False
