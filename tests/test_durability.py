"""What survives a power cut: every file and commit is on disk before it is reported done.

Cutting power is out of a test's reach, so these check what makes it safe, in the order it must
happen: a checkpoint (or the experiment copy, or the refit's model and JSON) is written to a
temporary file, fsynced, renamed into place and its folder fsynced, all before the epoch (or the
task) is reported; a fold's result is committed (SQLite in WAL mode with synchronous=FULL, which
fsyncs the log at every commit) before it is reported. Recorded in-process around os.fsync and
os.replace, and (where strace is installed) from the kernel's side, SQLite's own fsyncs included.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import gridcv
import gridcv.execution.executor as executor_module
from gridcv.atomic import remove_temporary_files, temporary_name
from gridcv.runner.progress import SilentReporter
from gridcv.store import DB_NAME, ResultStore
from gridcv.store.sqlite import connect

CHECKPOINT = re.compile(r"/checkpoints/([^/]+)/b\d+x\d+/epoch-(\d{5})\.npz$")


def record_durability(monkeypatch: pytest.MonkeyPatch, folder: Path) -> list[tuple]:
    """Records, in order: fsyncs (by path), renames, epochs reported by the worker code, tasks reported."""
    events: list[tuple] = []
    fsync, replace, attempt_fold = os.fsync, os.replace, executor_module.attempt_fold

    def recorded_fsync(fd: int) -> None:
        fsync(fd)
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))

    def recorded_replace(src, dst, *args, **kwargs) -> None:
        replace(src, dst, *args, **kwargs)
        events.append(("replace", os.fspath(src), os.fspath(dst)))

    def recorded_attempt(job, worker_id, folds, on_epoch):
        def told(epoch) -> None:  # what a worker sends the runner once an epoch is checkpointed
            events.append(("epoch", job.task.task_id, epoch.epoch))
            on_epoch(epoch)

        return attempt_fold(job, worker_id, folds, told)

    monkeypatch.setattr(os, "fsync", recorded_fsync)
    monkeypatch.setattr(os, "replace", recorded_replace)
    monkeypatch.setattr(executor_module, "attempt_fold", recorded_attempt)
    return events


class CommitChecker(SilentReporter):
    """On each reported fold, reads its status through a connection of its own: committed or not."""

    def __init__(self, folder: Path, events: list[tuple]) -> None:
        self.folder, self.events = folder, events

    def fold_finished(self, task, outcome, status) -> None:  # type: ignore[no-untyped-def]
        with ResultStore.open(self.folder, readonly=True) as store:
            self.events.append(("finished", task.task_id, status.value, store.status_of(task.task_id).value))


def durable_before(events: list[tuple], final: str, reported: int) -> None:
    """``final`` was fsynced under its temporary name, renamed, and its folder fsynced, in that order,
    before event ``reported``."""
    renamed = [i for i, e in enumerate(events) if e[0] == "replace" and e[2] == final]
    assert len(renamed) == 1, (final, renamed)
    i = renamed[0]
    tmp = events[i][1]
    assert Path(tmp).name.startswith(f".{Path(final).stem}.tmp-"), tmp
    assert events[i - 1] == ("fsync", tmp)
    assert events[i + 1] == ("fsync", str(Path(final).parent))
    assert i + 1 < reported


def test_every_write_is_fsynced_renamed_and_its_folder_fsynced_before_it_is_reported(make_experiment, monkeypatch):
    path = make_experiment(fit={"epochs": 2, "batch_size": 16}, refit=True)
    folder = path.parent / "results" / "tiny"
    events = record_durability(monkeypatch, folder)
    gridcv.run_experiment(path, reporter=CommitChecker(folder, events))

    epochs = [(i, e) for i, e in enumerate(events) if e[0] == "epoch"]
    assert len(epochs) == 5 * 2  # 4 folds and the refit, 2 epochs each
    for i, (_, task_id, epoch) in epochs:
        [final] = [
            e[2]
            for e in events[:i]
            if e[0] == "replace" and (m := CHECKPOINT.search(e[2])) and m.groups() == (task_id, f"{epoch:05d}")
        ]
        durable_before(events, final, i)
    finished = [(i, e) for i, e in enumerate(events) if e[0] == "finished"]
    assert [e[2:] for _, e in finished] == [("done", "done")] * 5  # each result committed before it was reported
    refit_reported = finished[-1][0]
    durable_before(events, str(folder / "best_model.keras"), refit_reported)
    durable_before(events, str(folder / "best_model.json"), refit_reported)
    durable_before(events, str(folder / "experiment.yaml"), epochs[0][0])


def test_the_store_runs_in_wal_mode_with_synchronous_full(tmp_path):
    with ResultStore.open(tmp_path, create=True):
        pass
    conn = connect(tmp_path / DB_NAME, readonly=False, untouched=False)  # how every writer connects
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        conn.close()
    with sqlite3.connect(tmp_path / DB_NAME) as plain:  # the mode is the file's, whoever opens it
        assert plain.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


TRACE = re.compile(r'^(fsync|fdatasync)\(\d+<(.*)>\)|^rename\w*\(.*?"(.*?)", .*?"(.*?)"|^write\(1<.*?>, "(.*)"')


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed: the kernel-side trace is skipped")
def test_the_kernel_sees_each_commit_and_checkpoint_fsynced_before_it_is_reported(make_experiment, tmp_path):
    """The same order from the kernel's side (SQLite's fsyncs are in C, out of os.fsync's reach):
    an inline run's main thread, which commits, checkpoints and prints, traced by strace."""
    path = make_experiment(fit={"epochs": 2, "batch_size": 16})
    trace = tmp_path / "trace.txt"
    command = [
        "strace",
        "-qq",
        "-y",
        "-s",
        "300",
        "-o",
        str(trace),
        "-e",
        "trace=fsync,fdatasync,rename,renameat,renameat2,write",
    ]
    done = subprocess.run(
        [*command, sys.executable, "-m", "gridcv.cli", "run", str(path)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    calls = []
    for line in trace.read_text().splitlines():
        if m := TRACE.match(line):
            sync, synced, old, new, text = m.groups()
            calls.append(("fsync", synced) if sync else ("rename", old, new) if old else ("print", text))
    wal = str(path.parent / "results" / "tiny" / f"{DB_NAME}-wal")
    printed = [i for i, c in enumerate(calls) if c[0] == "print" and "] done   " in c[1]]
    assert len(printed) == 4
    for before, i in zip([0, *printed], printed, strict=False):
        assert ("fsync", wal) in calls[before:i], calls[before:i]  # the commit reached the disk first
    renames = [i for i, c in enumerate(calls) if c[0] == "rename" and CHECKPOINT.search(c[2])]
    assert len(renames) == 4 * 2
    for i in renames:
        tmp, final = calls[i][1:]
        assert calls[i - 1] == ("fsync", tmp) and calls[i + 1] == ("fsync", str(Path(final).parent))
    assert renames[-1] < printed[-1]


def test_temporary_files_a_kill_left_are_found_and_only_they(tmp_path):
    cut = [
        temporary_name(tmp_path / "checkpoints" / "t1" / "b16x1" / "epoch-00003.npz"),
        temporary_name(tmp_path / "experiment.yaml"),
        tmp_path / ".best_model.tmp-4242.keras",
        tmp_path / "models" / ".t1.tmp-7.keras",
    ]
    kept = [
        tmp_path / "checkpoints" / "t1" / "b16x1" / "epoch-00002.npz",
        tmp_path / ".hidden",
        tmp_path / "notes.tmp-1",
        tmp_path / ".lock",
        tmp_path / DB_NAME,
    ]
    for p in [*cut, *kept]:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    assert remove_temporary_files(tmp_path) == sorted(cut)
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == sorted(kept)
