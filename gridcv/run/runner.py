"""Running an experiment: the plan, the results store and an executor put together.

The runner decides nothing from memory that the store knows: what is left is
read from the store fold by fold, and a retry's batch size is worked out from
the attempts the store recorded, so a run killed at any moment and started
again carries on from the same state. Folds and the refit go through one
loop (:func:`_run_task`): one job builder, one policy.
"""

from __future__ import annotations

import shutil
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gridcv.atomic import write_atomic
from gridcv.config import ExecutionSpec, Experiment, load_experiment
from gridcv.data import open_source, prepare_data
from gridcv.errors import AllFoldsFailed, RunInterrupted, RunStopped, UserError
from gridcv.execution import Executor, FoldOutcome, OutcomeKind, make_executor
from gridcv.plan import REFIT_FOLD, Plan, make_plan
from gridcv.run.checks import EXPERIMENT_COPY, adopt_changes, check_folder, execution_spec, fingerprint_meta, move_aside
from gridcv.run.jobs import Assignment, base_batch, build_job, fold_assignment, requested_accumulation
from gridcv.run.policy import Stop, decide, retry_shape
from gridcv.run.progress import Reporter, SilentReporter
from gridcv.run.refit import plan_refit
from gridcv.store import FoldStatus, ResultStore, RunLock
from gridcv.store.failures import store_error


@dataclass(frozen=True)
class RunOptions:
    """Choices made on the command line for one run.

    Attributes:
        output: Results folder, overriding the experiment file's.
        restart: Move an incompatible results folder aside and start afresh.
        retry_failed: Run failed folds again.
        execution: ``execution:`` keys given on the command line (they win).
        debug: Workers write their logs to this terminal instead of ``<results>/logs``.
    """

    output: str | Path | None = None
    restart: bool = False
    retry_failed: bool = False
    execution: dict[str, Any] = field(default_factory=dict)
    debug: bool = False


@dataclass(frozen=True)
class RunSummary:
    """What a run left behind."""

    folder: Path
    counts: dict[FoldStatus, int]
    attempts: int
    reclaimed: tuple[str, ...]

    @property
    def total(self) -> int:
        """Folds in the store."""
        return sum(self.counts.values())


@dataclass(frozen=True)
class _Run:
    """What one run works with, passed around as one value."""

    experiment: Experiment
    plan: Plan
    folder: Path
    store: ResultStore
    executor: Executor
    execution: ExecutionSpec
    reporter: Reporter


def run_experiment(path: str | Path, options: RunOptions | None = None, reporter: Reporter | None = None) -> RunSummary:
    """Runs every fold of an experiment that is not finished yet.

    Args:
        path: The experiment file.
        options: Command-line choices.
        reporter: Progress display; silent by default.

    Returns:
        The state of the results folder at the end.

    Raises:
        UserError: Bad input (nothing in an existing results folder is touched).
        RunInterrupted: Ctrl-C or SIGTERM; the fold in flight was checkpointed.
        RunStopped: ``on_oom: stop`` ended the run.
        AllFoldsFailed: Every fold failed.
    """
    options = options or RunOptions()
    reporter = reporter or SilentReporter()
    experiment = load_experiment(path)
    spec = experiment.spec
    execution = execution_spec(experiment, options.execution)
    prepare_data(spec.data, experiment.base_dir, experiment.where)
    source = open_source(spec.data, experiment.base_dir, experiment.where)
    plan = make_plan(spec, source.labels(), source.groups(), experiment.where)
    folder = experiment.output_dir(options.output)
    experiment.model.check(experiment.base_dir, experiment.where)
    check_folder(folder, experiment, options.restart)

    reporter.message(f"checking the model builder {spec.model} ...")
    executor = make_executor(execution, spec.deterministic, None if options.debug else folder / "logs")
    try:
        first = fold_assignment(spec, plan, plan.tasks[0])
        executor.check(build_job(experiment, plan, first, folder, spec.fit.batch_size, 1, 0))
        if options.restart and (aside := move_aside(folder)) is not None:
            reporter.message(f"moved the previous results to {aside}")
        _make_folder(folder)
        lock = RunLock(folder)
        lock.acquire()
        try:
            executor.set_log_dir(folder / "logs")
            with ResultStore.open(folder, create=True) as store:
                return _run(_Run(experiment, plan, folder, store, executor, execution, reporter), options)
        finally:
            lock.release()
    finally:
        executor.close()


def _run(run: _Run, options: RunOptions) -> RunSummary:
    experiment, plan, store, folder = run.experiment, run.plan, run.store, run.folder
    reclaimed = _start(run, options)
    statuses = store.statuses()
    done_before = sum(1 for t in plan.tasks if statuses[t.task_id].is_finished())
    run.reporter.begin(experiment.spec.name, len(plan.tasks), done_before, len(plan.candidates), plan.n_splits)
    attempts = 0
    try:
        with _stop_on_signals(run.executor, run.reporter) as stop:
            for task in plan.tasks:
                if store.status_of(task.task_id).is_finished():
                    continue
                if stop.is_set():
                    raise RunInterrupted(_resume_hint(experiment, folder))
                attempts += _run_task(run, fold_assignment(experiment.spec, plan, task))
            _fail_if_every_fold_failed(run)
            attempts += _refit(run)
    finally:
        run.reporter.end()  # stops the live display, however the loop ended
    return RunSummary(folder=folder, counts=store.counts(), attempts=attempts, reclaimed=reclaimed)


def _start(run: _Run, options: RunOptions) -> tuple[str, ...]:
    """Records the experiment and its plan in the store; takes back folds a dead run left running."""
    experiment, plan, store = run.experiment, run.plan, run.store
    spec = experiment.spec
    adopted = adopt_changes(store, experiment, run.folder)
    if adopted:
        run.reporter.message(adopted)
    store.set_meta(
        name=spec.name,
        **fingerprint_meta(experiment),
        scoring=spec.scoring,
        return_train_score=spec.return_train_score,
        candidates=[t.candidate_id for t in plan.tasks if t.fold == 0],
        n_splits=plan.n_splits,
        experiment_file=str(experiment.path),
    )
    try:
        write_atomic(run.folder / EXPERIMENT_COPY, experiment.text.encode())
    except OSError as exc:
        raise store_error(run.folder, exc, "copying the experiment file into it") from None
    store.add_tasks(plan.tasks)
    reclaimed = tuple(store.reclaim_stale())
    if reclaimed:
        run.reporter.message(f"taking back {len(reclaimed)} fold(s) left running by a run that ended")
    if options.retry_failed:
        store.reset_failed()
    return reclaimed


def _fail_if_every_fold_failed(run: _Run) -> None:
    planned = {t.task_id for t in run.plan.tasks}
    rows = [r for r in run.store.fold_rows() if r.task_id in planned]
    if rows and all(r.status is FoldStatus.FAILED for r in rows):
        raise AllFoldsFailed(
            f"every fold failed ({len(rows)} of {len(rows)}); the first: {rows[0].message}. "
            f"See gridcv.load_folds('{run.folder}') for each fold's error."
        )


def _make_folder(folder: Path) -> None:
    if folder.is_dir():
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise store_error(folder, exc, "creating the results folder") from None


def _refit(run: _Run) -> int:
    """Refits the best candidate once every fold is finished; returns attempts made."""
    store, folder = run.store, run.folder
    planned = {t.task_id for t in run.plan.tasks}
    pending = any(s is FoldStatus.PENDING for t, s in store.statuses().items() if t in planned)
    if run.experiment.spec.refit_scorer() is None or pending:
        return 0
    refit = plan_refit(run.experiment, run.plan, store, folder)
    if refit is None:
        return 0
    task = refit.work.task
    store.add_refit(task)
    run.reporter.message(
        f"refitting the best candidate by {refit.scorer} ({dict(task.params)}) on all {run.plan.n_samples} samples"
    )
    made = _run_task(run, refit.work, on_done=lambda outcome: refit.write_summary(folder, outcome))
    if store.status_of(task.task_id) is FoldStatus.FAILED:
        message = store.attempts_of(task.task_id)[-1].message
        raise RunStopped(
            f"refit of candidate {dict(task.params)} failed ({message}); the search results in {folder} are "
            "complete. Run again with --retry-failed to retry the refit from its last checkpoint."
        )
    return made


def _run_task(run: _Run, work: Assignment, on_done: Callable[[FoldOutcome], None] | None = None) -> int:
    """Attempts one task until it is finished (or the run must stop); returns attempts made.

    ``on_done`` runs after a successful attempt and before it is recorded, so a
    done task implies whatever it wrote (the refit's ``best_model.json``).
    """
    experiment, store, folder = run.experiment, run.store, run.folder
    task = work.task
    made = 0
    while True:
        earlier = store.attempts_of(task.task_id)
        batch, accumulation = retry_shape(base_batch(experiment.spec, task.params), earlier)
        accumulation *= requested_accumulation(experiment.spec, task.params) or 1
        attempt = store.mark_running(task.task_id, batch, accumulation)
        made += 1
        job = build_job(experiment, run.plan, work, folder, batch, accumulation, attempt)
        run.reporter.fold_started(task, attempt, batch)
        try:
            outcome = run.executor.run(job)
        except KeyboardInterrupt:
            outcome = FoldOutcome(
                task.task_id,
                OutcomeKind.INTERRUPTED,
                batch_size=batch,
                accumulation_steps=accumulation,
                message="stopped at once by a second Ctrl-C",
            )
            store.record(outcome, FoldStatus.PENDING)
            raise _stop_error(run, work, outcome, Stop.INTERRUPTED) from None
        decision = decide(outcome, earlier, run.execution)
        if decision.status is FoldStatus.DONE and on_done is not None:
            on_done(outcome)
        store.record(outcome, decision.status)
        run.reporter.fold_finished(task, outcome, decision.status)
        if decision.status is FoldStatus.DONE:
            shutil.rmtree(folder / "checkpoints" / task.task_id, ignore_errors=True)
        if decision.stop is not None:
            raise _stop_error(run, work, outcome, decision.stop)
        if decision.status.is_finished():
            return made


def _stop_error(run: _Run, work: Assignment, outcome: FoldOutcome, stop: Stop) -> Exception:
    """The exception that stops the run, with the message the user needs."""
    experiment = run.experiment
    if stop is Stop.INTERRUPTED:
        if work.task.fold == REFIT_FOLD:
            return RunInterrupted(f"Stopped during the refit; run `gridcv run {experiment.path}` again to resume it.")
        return RunInterrupted(_resume_hint(experiment, run.folder))
    if stop is Stop.USER_ERROR:
        return UserError(outcome.message or "the model builder failed")
    return RunStopped(
        f"fold {outcome.task_id} ran out of memory ({outcome.message}) and execution.on_oom "
        "is 'stop'. Lower the batch size or raise the memory limit, then run again to resume."
    )


def _resume_hint(experiment: Experiment, folder: Path) -> str:
    return (
        f"finished folds are saved in {folder} and the fold in flight resumes from its last "
        f"checkpoint. Run `gridcv run {experiment.path}` again to continue."
    )


@contextmanager
def _stop_on_signals(executor: Executor, reporter: Reporter) -> Iterator[threading.Event]:
    """First Ctrl-C/SIGTERM: stop after the current epoch's checkpoint. Second: stop now."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handle(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        executor.request_stop()
        reporter.message("stopping after the current epoch's checkpoint (Ctrl-C again to stop now)")

    previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
