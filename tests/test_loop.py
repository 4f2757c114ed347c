"""The task loop over the executor's slots, driven by a scripted executor (no TensorFlow).

The executor is a small fake with the real interface (slots, start, poll, request_stop): each
job takes a scripted number of polls and ends with a scripted outcome, so the order of starts,
retries and stops is exact and the test runs in milliseconds. Real workers run in
tests/test_workers.py and tests/test_slots.py.
"""

from __future__ import annotations

import threading
from collections import deque
from pathlib import Path

import pytest

from gridcv.config import load_experiment
from gridcv.errors import RunInterrupted, UserError
from gridcv.execution.messages import (
    EpochEnded,
    Event,
    Finished,
    FoldJob,
    FoldOutcome,
    OutcomeKind,
    Placement,
    Progress,
)
from gridcv.monitoring import Monitoring
from gridcv.plan import make_plan
from gridcv.runner.jobs import fold_assignment
from gridcv.runner.loop import RunContext, TaskLoop
from gridcv.runner.progress import SilentReporter
from gridcv.store import FoldStatus, ResultStore

K = OutcomeKind


class ScriptedExecutor:
    """Runs nothing: each start() takes ``polls`` polls, sends one epoch, then ends as scripted."""

    def __init__(self, slots: int, script: dict[int, list[OutcomeKind]], polls: dict[int, int] | None = None) -> None:
        self.slots = slots
        self.slot_names = tuple(f"fake {i}" for i in range(slots))
        self.script = {fold: deque(kinds) for fold, kinds in script.items()}
        self.polls = polls or {}
        self.busy: dict[int, tuple[FoldJob, int]] = {}
        self.started: list[tuple[int, int, int, int]] = []  # (slot, fold, attempt, batch)
        self.stop_requests = 0
        self._stopping = False

    def start(self, slot: int, job: FoldJob) -> None:
        assert slot not in self.busy and 0 <= slot < self.slots
        self.busy[slot] = (job, self.polls.get(job.task.fold, 1))
        self.started.append((slot, job.task.fold, job.attempt, job.batch_size))

    def poll(self, timeout: float) -> list[Event]:
        events: list[Event] = []
        for slot, (job, left) in sorted(self.busy.items()):
            if left > 1:
                self.busy[slot] = (job, left - 1)
                continue
            kind = K.INTERRUPTED if self._stopping else self.script[job.task.fold].popleft()
            events.append(Progress(slot, EpochEnded(job.task.task_id, 1, job.epochs)))
            outcome = FoldOutcome(
                job.task.task_id, kind, batch_size=job.batch_size, accumulation_steps=job.accumulation_steps
            )
            if kind is K.FATAL:
                outcome = FoldOutcome(job.task.task_id, kind, batch_size=job.batch_size, message="broken builder")
            events.append(Finished(slot, outcome))
            del self.busy[slot]
        return events

    def request_stop(self) -> None:
        self.stop_requests += 1
        self._stopping = True

    def placement(self, slot: int) -> Placement:
        return Placement(self.slot_names[slot], f"fake device {slot}", "fakehost")

    def check(self, job: FoldJob) -> bool:
        return True

    def close(self) -> None:
        pass

    def set_log_dir(self, folder: Path) -> None:
        pass


class Recorder(SilentReporter):
    def __init__(self) -> None:
        self.epochs: list[tuple[int, int]] = []

    def epoch_ended(self, task, epoch):  # type: ignore[no-untyped-def]
        self.epochs.append((task.fold, epoch.epoch))


def loop_for(
    make_experiment, tmp_path: Path, executor: ScriptedExecutor, stop: threading.Event | None = None, **execution
):
    """A TaskLoop over a real experiment's 4 folds (2 candidates x 2 splits) and a real store."""
    path = make_experiment(
        grid={"units": [4, 8]}, fit={"epochs": 2, "batch_size": 16}, execution={"isolation": "inline", **execution}
    )
    experiment = load_experiment(path)
    labels = __import__("numpy").arange(60) % 3
    plan = make_plan(experiment.spec, labels)
    store = ResultStore.open(tmp_path / "store", create=True)
    store.add_tasks(plan.tasks)
    execution = experiment.spec.execution
    monitoring = Monitoring.of(experiment.spec, grouped=False)
    run = RunContext(experiment, plan, tmp_path / "store", store, executor, execution, Recorder(), monitoring)
    works = [fold_assignment(experiment.spec, plan, t) for t in plan.tasks]
    return TaskLoop(run, stop or threading.Event()), works, store, plan


def statuses(store: ResultStore, plan) -> list[str]:
    return [store.status_of(t.task_id).value for t in plan.tasks]


def test_two_slots_take_folds_in_plan_order_as_they_free_up(make_experiment, tmp_path):
    executor = ScriptedExecutor(2, {0: [K.DONE, K.DONE], 1: [K.DONE, K.DONE]}, polls={0: 1, 1: 3})
    loop, works, store, plan = loop_for(make_experiment, tmp_path, executor)
    assert loop.run_all(works) == 4
    # plan order is candidate-major: (candidate 1, fold 0), (c1, f1), (c2, f0), (c2, f1)
    assert [(slot, fold) for slot, fold, _, _ in executor.started] == [(0, 0), (1, 1), (0, 0), (0, 1)]
    assert statuses(store, plan) == ["done"] * 4
    assert loop.run.reporter.epochs == [(0, 1), (0, 1), (1, 1), (1, 1)]
    # each attempt records where it ran, as the executor placed it
    where = [(a.slot, a.device, a.host) for t in plan.tasks for a in store.attempts_of(t.task_id)]
    assert (
        where
        == [("fake 0", "fake device 0", "fakehost"), ("fake 1", "fake device 1", "fakehost")]
        + [("fake 0", "fake device 0", "fakehost")] * 2
    )


def test_a_retry_goes_before_the_next_fold_with_half_the_batch(make_experiment, tmp_path):
    executor = ScriptedExecutor(2, {0: [K.OOM, K.DONE, K.DONE], 1: [K.DONE, K.DONE]}, polls={0: 1, 1: 2})
    loop, works, store, plan = loop_for(make_experiment, tmp_path, executor)
    loop.run_all(works)
    assert executor.started[:3] == [(0, 0, 1, 16), (1, 1, 1, 16), (0, 0, 2, 8)]
    assert statuses(store, plan) == ["done"] * 4
    assert [(a.outcome, a.batch_size) for a in store.attempts_of(plan.tasks[0].task_id)] == [("oom", 16), ("done", 8)]


def test_a_user_error_on_one_slot_stops_the_other_after_its_checkpoint(make_experiment, tmp_path):
    executor = ScriptedExecutor(2, {0: [K.FATAL], 1: [K.DONE]}, polls={0: 1, 1: 5})
    loop, works, store, plan = loop_for(make_experiment, tmp_path, executor)
    with pytest.raises(UserError, match=r"^broken builder$"):
        loop.run_all(works)
    assert executor.stop_requests == 1
    assert [fold for _, fold, _, _ in executor.started] == [0, 1]  # nothing new started after the error
    assert statuses(store, plan) == ["pending", "pending", "pending", "pending"]
    interrupted = store.attempts_of(plan.tasks[1].task_id)
    assert [a.outcome for a in interrupted] == [K.INTERRUPTED]


def test_ctrl_c_lets_folds_in_flight_finish_and_starts_nothing_new(make_experiment, tmp_path):
    stop = threading.Event()
    executor = ScriptedExecutor(2, {0: [K.DONE, K.DONE], 1: [K.DONE, K.DONE]}, polls={0: 1, 1: 1})
    loop, works, store, plan = loop_for(make_experiment, tmp_path, executor, stop)
    stop.set()  # as the signal handler does
    with pytest.raises(RunInterrupted, match="again to continue"):
        loop.run_all(works)
    assert executor.started == [] and statuses(store, plan) == ["pending"] * 4


def test_finished_folds_are_not_started_again(make_experiment, tmp_path):
    executor = ScriptedExecutor(1, {0: [K.DONE, K.DONE], 1: [K.DONE, K.DONE]})
    loop, works, store, plan = loop_for(make_experiment, tmp_path, executor)
    store.mark_running(plan.tasks[0].task_id, 16, 1)
    store.record(FoldOutcome(plan.tasks[0].task_id, K.DONE), FoldStatus.DONE)
    assert loop.run_all(works) == 3
    assert [fold for _, fold, _, _ in executor.started] == [1, 0, 1]


def test_one_oom_per_candidate_its_next_fold_starts_at_the_batch_that_fit(make_experiment, tmp_path):
    executor = ScriptedExecutor(1, {0: [K.KILLED, K.DONE, K.DONE], 1: [K.DONE, K.DONE]})
    loop, works, store, _ = loop_for(make_experiment, tmp_path, executor)
    assert loop.run_all(works) == 5
    # candidate 1: fold 1 killed at 16, done at 8; fold 2 starts at 8. Candidate 2 is not affected.
    assert executor.started == [(0, 0, 1, 16), (0, 0, 2, 8), (0, 1, 1, 8), (0, 0, 1, 16), (0, 1, 1, 16)]
    rows = {(r.candidate_index, r.fold): r for r in store.fold_rows()}
    assert (rows[0, 1].batch_size, rows[0, 1].accumulation_steps, rows[0, 1].attempts) == (8, 2, 1)
    assert rows[0, 1].info["batch_lowered_by"] == {"fold": 0, "oom_batch_size": 16}
    assert "batch_lowered_by" not in rows[0, 0].info and "batch_lowered_by" not in rows[1, 1].info


def test_with_no_batch_left_a_candidates_next_fold_fails_without_training(make_experiment, tmp_path):
    executor = ScriptedExecutor(1, {0: [K.OOM, K.OOM, K.DONE], 1: [K.DONE]})
    loop, works, store, plan = loop_for(make_experiment, tmp_path, executor, min_batch_size=8)
    assert loop.run_all(works) == 4  # the run goes on
    # candidate 1 fold 1: out of memory at 16 and at 8, and 4 is below min_batch_size: failed
    assert executor.started == [(0, 0, 1, 16), (0, 0, 2, 8), (0, 0, 1, 16), (0, 1, 1, 16)]
    assert statuses(store, plan) == ["failed", "failed", "done", "done"]
    untried = store.attempts_of(plan.tasks[1].task_id)
    assert [(a.outcome, a.batch_size, a.message) for a in untried] == [
        (
            K.OOM,
            None,
            "not trained: fold 1 of this candidate ran out of memory at batch 8, and execution.min_batch_size is 8; "
            "lower it to let smaller batches be tried",
        )
    ]
