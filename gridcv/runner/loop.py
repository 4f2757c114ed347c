"""Driving the executor's slots: tasks start in plan order, events come back, the store records them.

The parent process is the only writer of the store: a task is marked running
when it is handed to a slot, and its outcome is decided (by
:mod:`gridcv.runner.policy`) and recorded in one transaction when it comes back.
A task to retry goes back to the front of the queue, so with one slot the
order is exactly that of a plain loop over the plan. When the run must stop
(Ctrl-C, a user error, ``on_oom: stop``), no new task starts, every fold in
flight is asked to stop after its checkpoint, and the first reason to stop
is raised once they have all reported back.
"""

from __future__ import annotations

import shutil
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gridcv.config import ExecutionSpec, Experiment
from gridcv.errors import RunInterrupted, RunStopped, UserError
from gridcv.execution import Executor
from gridcv.execution.messages import Finished, FoldOutcome, OutcomeKind, Progress
from gridcv.monitoring import Monitoring
from gridcv.plan import REFIT_FOLD, FoldTask, Plan
from gridcv.runner.jobs import Assignment, base_batch, build_job, monitoring_info, requested_accumulation
from gridcv.runner.policy import Decision, Stop, decide, retry_shape
from gridcv.runner.progress import Reporter, fold_name
from gridcv.store import AttemptRow, FoldStatus, ResultStore

POLL_SECONDS = 0.5


@dataclass(frozen=True)
class RunContext:
    """What one run works with, passed around as one value."""

    experiment: Experiment
    plan: Plan
    folder: Path
    store: ResultStore
    executor: Executor
    execution: ExecutionSpec
    reporter: Reporter
    monitoring: Monitoring
    told: set[str] = field(default_factory=set)  # notes of workers already shown: each once per run


@dataclass(frozen=True)
class InFlight:
    """An attempt handed to a slot: what it runs, the attempts before it, and what its row records besides
    the outcome (its samples; the fold whose out-of-memory attempt set its batch)."""

    work: Assignment
    attempt: int
    batch: int
    accumulation: int
    earlier: tuple[AttemptRow, ...]
    samples: dict[str, Any]


class TaskLoop:
    """Runs tasks on the executor's slots until each is finished or the run must stop.

    Args:
        run: What the run works with (experiment, plan, folder, store, executor, reporter).
        stop: Set by the first Ctrl-C or SIGTERM: start nothing new, let folds checkpoint.
        on_done: Runs after a successful attempt and before it is recorded, so a done
            task implies whatever it wrote (the refit's ``best_model.json``).
    """

    def __init__(
        self, run: RunContext, stop: threading.Event, on_done: Callable[[FoldOutcome], None] | None = None
    ) -> None:
        self.run = run
        self.stop = stop
        self.on_done = on_done
        self.in_flight: dict[int, InFlight] = {}
        self.attempts = 0

    def run_all(self, works: Iterable[Assignment]) -> int:
        """Runs every unfinished task of ``works``; returns the attempts made.

        Raises:
            RunInterrupted: Ctrl-C or SIGTERM (folds in flight were checkpointed first).
            UserError: A fold hit an error every fold would hit.
            RunStopped: ``on_oom: stop``.
        """
        queue = deque(works)
        stopping: Exception | None = None
        try:
            while True:
                self._fill(queue, stopping)
                if not self.in_flight:
                    break
                for event in self.run.executor.poll(POLL_SECONDS):
                    reason = self._handle(event, queue)
                    if reason is not None and stopping is None:
                        stopping = reason
                        self.run.executor.request_stop()  # the other slots checkpoint and stop
        except KeyboardInterrupt:
            self._abandon_in_flight()
            raise RunInterrupted(resume_hint(self.run.experiment.rerun, self.run.folder)) from None
        if stopping is None and self.stop.is_set() and any(self._unfinished(w) for w in queue):
            stopping = RunInterrupted(resume_hint(self.run.experiment.rerun, self.run.folder))
        if stopping is not None:
            raise stopping
        return self.attempts

    def _fill(self, queue: deque[Assignment], stopping: Exception | None) -> None:
        """Starts queued tasks on free slots, in order, unless the run is stopping."""
        free = [s for s in range(self.run.executor.slots) if s not in self.in_flight]
        while free and queue and stopping is None and not self.stop.is_set():
            work = queue.popleft()
            if self._unfinished(work) and self._start(free[0], work):
                free.pop(0)

    def _unfinished(self, work: Assignment) -> bool:
        return not self.run.store.status_of(work.task.task_id).is_finished()

    def _start(self, slot: int, work: Assignment) -> bool:
        """Starts the task's next attempt on ``slot``; False if it failed at once (no batch left that fits)."""
        run = self.run
        spec, task = run.experiment.spec, work.task
        earlier = tuple(run.store.attempts_of(task.task_id))
        candidate = run.store.candidate_attempts(task.task_id)
        shape = retry_shape(base_batch(spec, task.params), earlier, candidate, run.execution.on_oom)
        batch, accumulation = shape.batch, shape.accumulation * (requested_accumulation(spec, task.params) or 1)
        attempt = run.store.mark_running(task.task_id, batch, accumulation, run.executor.placement(slot))
        if not shape.fits(run.execution.min_batch_size):
            message = shape.unfit_message(run.execution.min_batch_size)
            outcome = FoldOutcome(task.task_id, OutcomeKind.OOM, message=message, info=shape.info())
            run.store.record(outcome, FoldStatus.FAILED)
            run.reporter.fold_finished(task, outcome, FoldStatus.FAILED)
            return False
        self.attempts += 1
        job = build_job(run.experiment, run.plan, work, run.folder, batch, accumulation, attempt, run.monitoring)
        run.reporter.fold_started(task, attempt, batch, slot)
        samples = {**monitoring_info(job, run.monitoring), **shape.info()}
        self.in_flight[slot] = InFlight(work, attempt, batch, accumulation, earlier, samples)
        run.executor.start(slot, job)
        return True

    def _handle(self, event: Progress | Finished, queue: deque[Assignment]) -> Exception | None:
        """Shows progress, or decides and records a finished attempt; returns a reason to stop, if any."""
        if isinstance(event, Progress):
            if event.slot in self.in_flight:
                self._tell(self.in_flight[event.slot].work.task, event.epoch.notes)
                self.run.reporter.epoch_ended(self.in_flight[event.slot].work.task, event.epoch)
            return None
        current = self.in_flight.pop(event.slot)
        self._tell(current.work.task, event.outcome.info.get("notes", ()))
        outcome = replace(event.outcome, info={**event.outcome.info, **current.samples})
        decision = self._record(current, outcome)
        if decision.stop is not None:
            return stop_error(self.run, current.work, outcome, decision.stop)
        if decision.status is FoldStatus.PENDING:
            queue.appendleft(current.work)  # a retry goes first
        return None

    def _tell(self, task: FoldTask, notes: Iterable[str]) -> None:
        """Shows each note of a worker once per run (an unusable checkpoint passed over, a stateless callback)."""
        for note in notes:
            if note not in self.run.told:
                self.run.told.add(note)
                self.run.reporter.message(f"{fold_name(task)}: {note}")

    def _record(self, current: InFlight, outcome: FoldOutcome) -> Decision:
        run = self.run
        decision = decide(outcome, current.earlier, run.execution)
        if decision.status is FoldStatus.DONE and self.on_done is not None:
            self.on_done(outcome)
        run.store.record(outcome, decision.status)
        run.reporter.fold_finished(current.work.task, outcome, decision.status)
        if decision.status is FoldStatus.DONE:
            shutil.rmtree(run.folder / "checkpoints" / outcome.task_id, ignore_errors=True)
        return decision

    def _abandon_in_flight(self) -> None:
        """A second Ctrl-C: every fold in flight is recorded as interrupted, to be resumed."""
        for current in self.in_flight.values():
            outcome = FoldOutcome(
                current.work.task.task_id,
                OutcomeKind.INTERRUPTED,
                batch_size=current.batch,
                accumulation_steps=current.accumulation,
                message="stopped at once by a second Ctrl-C",
            )
            self.run.store.record(outcome, FoldStatus.PENDING)
        self.in_flight.clear()


def stop_error(run: RunContext, work: Assignment, outcome: FoldOutcome, stop: Stop) -> Exception:
    """The exception that stops the run, with the message the user needs."""
    if stop is Stop.INTERRUPTED:
        if work.task.fold == REFIT_FOLD:
            return RunInterrupted(f"Stopped during the refit; run {run.experiment.rerun} again to resume it.")
        return RunInterrupted(resume_hint(run.experiment.rerun, run.folder))
    if stop is Stop.USER_ERROR:
        return UserError(outcome.message or "the model builder failed")
    return RunStopped(
        f"fold {outcome.task_id} ran out of memory ({outcome.message}) and execution.on_oom "
        "is 'stop'. Lower the batch size or raise the memory limit, then run again to resume."
    )


def resume_hint(rerun: str, folder: Path) -> str:
    """What to do after a stop: where the folds are, and ``rerun`` (:attr:`Experiment.rerun`), what resumes."""
    return (
        f"finished folds are saved in {folder} and the fold in flight resumes from its last "
        f"checkpoint. Run {rerun} again to continue."
    )
