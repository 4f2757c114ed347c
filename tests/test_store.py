"""The results store: state changes, immutability of done folds, reopening, locking, corruption."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import sqlite3

import numpy as np
import pytest

from gridcv.errors import FinishedFoldError, ResultsError, ResultsLockedError
from gridcv.execution.messages import FoldOutcome, OutcomeKind
from gridcv.plan import FoldTask
from gridcv.store import DB_NAME, FoldStatus, ResultStore, RunLock

TASKS = [
    FoldTask(task_id=f"t{c}{f}", candidate_id=f"c{c}", candidate_index=c, fold=f, params={"u": c}, seed=10 * c + f)
    for c in range(2)
    for f in range(2)
]


def done(task_id: str, score: float = 0.5) -> FoldOutcome:
    return FoldOutcome(
        task_id,
        OutcomeKind.DONE,
        scores={"accuracy": score},
        fit_time=1.0,
        score_time=0.1,
        epochs_run=2,
        batch_size=8,
        accumulation_steps=1,
    )


def test_fold_goes_pending_running_done_and_survives_reopening(tmp_path):
    with ResultStore.open(tmp_path, create=True) as store:
        assert store.add_tasks(TASKS) == 4
        assert store.add_tasks(TASKS) == 0
        assert store.mark_running("t00", 8, 1) == 1
        assert store.status_of("t00") is FoldStatus.RUNNING
        store.record(done("t00", 0.75), FoldStatus.DONE)
    with ResultStore.open(tmp_path, readonly=True) as store:
        counts = store.counts()
        rows = {r.task_id: r for r in store.fold_rows()}
    assert counts == {FoldStatus.PENDING: 3, FoldStatus.RUNNING: 0, FoldStatus.DONE: 1, FoldStatus.FAILED: 0}
    assert rows["t00"].scores == {"accuracy": 0.75}
    assert rows["t00"].params == {"u": 0}
    assert rows["t00"].attempts == 1


def test_done_folds_cannot_change(tmp_path):
    with ResultStore.open(tmp_path, create=True) as store:
        store.add_tasks(TASKS)
        store.mark_running("t00", 8, 1)
        store.record(done("t00"), FoldStatus.DONE)
        with pytest.raises(FinishedFoldError, match="fold t00 is already done"):
            store.mark_running("t00", 8, 1)
    # even raw SQL cannot change a done row: the database refuses
    conn = sqlite3.connect(tmp_path / DB_NAME)
    with pytest.raises(sqlite3.IntegrityError, match="a done fold cannot change"):
        conn.execute("UPDATE folds SET scores = '{}' WHERE task_id = 't00'")
    with pytest.raises(sqlite3.IntegrityError, match="a done fold cannot change"):
        conn.execute("DELETE FROM folds WHERE task_id = 't00'")


def test_stale_running_rows_are_taken_back_as_pending(tmp_path):
    with ResultStore.open(tmp_path, create=True) as store:
        store.add_tasks(TASKS)
        store.mark_running("t01", 8, 1)
    with ResultStore.open(tmp_path) as store:  # a new run, the old one died
        assert store.reclaim_stale() == ["t01"]
        assert store.status_of("t01") is FoldStatus.PENDING
        assert [a.outcome for a in store.attempts_of("t01")] == ["abandoned"]
        assert store.mark_running("t01", 8, 1) == 2


def test_retry_keeps_every_attempt(tmp_path):
    with ResultStore.open(tmp_path, create=True) as store:
        store.add_tasks(TASKS)
        store.mark_running("t10", 8, 1)
        store.record(
            FoldOutcome("t10", OutcomeKind.OOM, batch_size=8, accumulation_steps=1, message="oom"), FoldStatus.PENDING
        )
        store.mark_running("t10", 4, 2)
        store.record(done("t10"), FoldStatus.DONE)
        attempts = store.attempts_of("t10")
    assert [(a.attempt, a.outcome, a.batch_size, a.accumulation_steps) for a in attempts] == [
        (1, "oom", 8, 1),
        (2, "done", 8, 1),
    ]


def test_corrupt_database_is_reported_and_left_untouched(tmp_path):
    db = tmp_path / DB_NAME
    db.write_bytes(b"this is not sqlite" * 100)
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    with pytest.raises(ResultsError) as err:
        ResultStore.open(tmp_path)
    assert str(err.value).startswith(f"{db}: cannot be read as a gridcv results database (file is not a database)")
    assert "left untouched" in str(err.value)
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before


def test_truncated_database_is_reported(tmp_path):
    with ResultStore.open(tmp_path, create=True) as store:
        store.add_tasks(TASKS * 50)
    db = tmp_path / DB_NAME
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 3])
    with pytest.raises(ResultsError, match="cannot be read as a gridcv results database"):
        with ResultStore.open(tmp_path) as store:
            store.fold_rows()
            assert store.integrity_check() == "ok"


def _hold_lock(folder, ready, release):
    lock = RunLock(folder)
    lock.acquire()
    ready.set()
    release.wait(30)


def test_second_run_is_refused_naming_the_first(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(tmp_path, ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        assert RunLock(tmp_path).holder().pid == holder.pid
        with pytest.raises(ResultsLockedError) as err:
            RunLock(tmp_path).acquire()
        assert f"another gridcv run is using this results folder (pid {holder.pid} on " in str(err.value)
    finally:
        release.set()
        holder.join()
    # the holder is gone: the kernel dropped its lock
    assert RunLock(tmp_path).holder() is None
    RunLock(tmp_path).acquire()


def test_killed_holder_releases_the_lock(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(tmp_path, ready, release))
    holder.start()
    assert ready.wait(30)
    os.kill(holder.pid, 9)
    holder.join()
    assert RunLock(tmp_path).holder() is None


def test_integrity_check_is_ok_after_many_transactions(tmp_path):
    with ResultStore.open(tmp_path, create=True) as store:
        store.add_tasks(TASKS)
        for t in TASKS:
            store.mark_running(t.task_id, 8, 1)
            store.record(done(t.task_id, float(np.float32(0.25))), FoldStatus.DONE)
        assert store.integrity_check() == "ok"


def test_refusing_a_held_folder_never_takes_its_lock(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(tmp_path, ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        with pytest.raises(ResultsLockedError, match=f"pid {holder.pid} on "):
            RunLock(tmp_path).refuse_if_held()
    finally:
        release.set()
        holder.join()
    RunLock(tmp_path).refuse_if_held()  # free now: no error, and no lock taken ...
    lock = RunLock(tmp_path)
    lock.acquire()  # ... so this process's own run can take it
    lock.release()


def test_results_written_before_the_info_column_still_read(tmp_path):
    with ResultStore.open(tmp_path, create=True) as store:
        store.add_tasks(TASKS)
        store.mark_running("t00", 8, 1)
        store.record(done("t00"), FoldStatus.DONE)
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.execute("ALTER TABLE folds DROP COLUMN info")  # as a results folder from before the column was added
    conn.commit()
    conn.close()
    with ResultStore.open(tmp_path, readonly=True) as store:  # load_results and status open read-only
        rows = store.fold_rows()
    assert [r.info for r in rows] == [{}, {}, {}, {}]
    assert rows[0].scores == {"accuracy": 0.5}


def test_every_attempt_records_its_slot_device_and_host_and_older_folders_get_the_columns(tmp_path):
    from gridcv.execution.messages import Placement

    with ResultStore.open(tmp_path, create=True) as store:
        store.add_tasks(TASKS)
        store.mark_running("t00", 8, 1, Placement("GPU 1", "GPU 1", "node7"))
        store.record(done("t00"), FoldStatus.DONE)  # the outcome says nothing of where: the start's values stay
        store.mark_running("t01", 8, 1, Placement("dask tcp://10.0.0.5:40123"))
        store.record(FoldOutcome("t01", OutcomeKind.LOST, device="GPU 0", host="node9"), FoldStatus.PENDING)
        store.mark_running("t10", 8, 1)  # a folder's store used without an executor (tests, tools)
    conn = sqlite3.connect(tmp_path / DB_NAME)
    for column in ("slot", "device", "host"):  # as a results folder from before the columns were added
        conn.execute(f"ALTER TABLE attempts DROP COLUMN {column}")
    conn.commit()
    conn.close()
    with ResultStore.open(tmp_path, readonly=True) as store:  # read as it is: the columns are absent
        assert {(a.slot, a.device, a.host) for a in store.attempt_rows()} == {(None, None, None)}
    with ResultStore.open(tmp_path) as store:  # a run opens it for writing: the columns come back, empty
        store.mark_running("t11", 8, 1, Placement("cpu 2/2", "cpu", "node7"))
        rows = [(a.task_id, a.slot, a.device, a.host) for a in store.attempt_rows()]
    assert rows == [
        ("t00", None, None, None),
        ("t01", None, None, None),
        ("t10", None, None, None),
        ("t11", "cpu 2/2", "cpu", "node7"),
    ]


def test_load_attempts_shows_where_each_attempt_ran(tmp_path):
    import gridcv
    from gridcv.execution.messages import Placement

    with ResultStore.open(tmp_path, create=True) as store:
        store.add_tasks(TASKS)
        store.mark_running("t00", 8, 1, Placement("dask tcp://10.0.0.5:40123"))
        store.record(FoldOutcome("t00", OutcomeKind.LOST, device="GPU 0", host="node9"), FoldStatus.PENDING)
        store.mark_running("t00", 8, 1, Placement("GPU 1", "GPU 1", "node7"))
        store.record(done("t00"), FoldStatus.DONE)
    attempts = gridcv.load_attempts(tmp_path)
    assert attempts[["attempt", "outcome", "slot", "device", "host"]].values.tolist() == [
        [1, "lost", "dask tcp://10.0.0.5:40123", "GPU 0", "node9"],
        [2, "done", "GPU 1", "GPU 1", "node7"],
    ]


def test_candidate_attempts_are_the_other_tasks_of_the_same_candidate_with_their_fold(tmp_path):
    refit = FoldTask("r0", "c0", 0, -1, {"u": 0}, 99)
    with ResultStore.open(tmp_path, create=True) as store:
        store.add_tasks(TASKS)
        store.add_refit(refit)
        store.mark_running("t00", 16, 1)
        store.record(FoldOutcome("t00", OutcomeKind.KILLED, batch_size=16, accumulation_steps=1), FoldStatus.PENDING)
        store.mark_running("t00", 8, 2)
        store.record(done("t00"), FoldStatus.DONE)
        store.mark_running("t10", 16, 1)  # another candidate
        store.record(FoldOutcome("t10", OutcomeKind.OOM, batch_size=16), FoldStatus.PENDING)
        store.mark_running("r0", 8, 2)  # in flight: no outcome yet
        seen = [(a.task_id, a.fold, a.attempt, a.outcome, a.batch_size) for a in store.candidate_attempts("t01")]
        assert seen == [("t00", 0, 1, "killed", 16), ("t00", 0, 2, "done", 8), ("r0", -1, 1, None, 8)]
        assert [(a.task_id, a.fold) for a in store.candidate_attempts("r0")] == [("t00", 0), ("t00", 0)]
        assert [(a.task_id, a.outcome) for a in store.candidate_attempts("t11")] == [("t10", "oom")]
        assert store.attempts_of("t00")[0].fold is None  # only the candidate query joins the fold


def test_a_snapshot_reads_one_moment_while_a_run_commits(tmp_path):
    with ResultStore.open(tmp_path, create=True) as writer:
        writer.add_tasks(TASKS)
        writer.set_meta(n_splits=2)
        with ResultStore.open(tmp_path, readonly=True) as reader:
            with reader.snapshot():
                before = [r.status for r in reader.fold_rows()]
                writer.mark_running("t00", 8, 1)
                writer.record(done("t00"), FoldStatus.DONE)
                writer.set_meta(n_splits=3)
                # the commits above landed, but not for this read
                assert [r.status for r in reader.fold_rows()] == before == [FoldStatus.PENDING] * 4
                assert reader.get_meta("n_splits") == 2
            assert reader.fold_rows()[0].status is FoldStatus.DONE  # after it, the store as it is now
            assert reader.get_meta("n_splits") == 3
