"""Running an experiment: the plan, the results store and an executor put together.

The runner decides nothing from memory that the store knows: what is left is
read from the store fold by fold, and a retry's batch size is worked out from
the attempts the store recorded, so a run killed at any moment and started
again carries on from the same state. Folds and the refit go through one
loop (:class:`~gridcv.runner.loop.TaskLoop`): one job builder, one policy.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gridcv.atomic import remove_temporary_files, write_atomic
from gridcv.config import Experiment, PythonData, load_experiment
from gridcv.config.tasks import DECLARED
from gridcv.data import open_source, prepare_data
from gridcv.data.cache import build_cache, check_space, plan_cache
from gridcv.data.inputs import InputFormat
from gridcv.data.python import resume_note
from gridcv.errors import AllFoldsFailed, RunInterrupted, RunStopped
from gridcv.execution import Executor, make_executor
from gridcv.execution.calls import call_in_child
from gridcv.folders import EXPERIMENT_COPY
from gridcv.monitoring import META_KEY, Monitoring
from gridcv.plan import Plan, make_plan
from gridcv.runner.changes import adopt_changes, fingerprint_meta
from gridcv.runner.checks import check_folder, execution_spec, labels_to_split, move_aside, resolve_task
from gridcv.runner.jobs import build_job, check_monitoring, fold_assignment
from gridcv.runner.loop import RunContext, TaskLoop, resume_hint
from gridcv.runner.progress import FinishedFold, Reporter, RunShape, SilentReporter
from gridcv.runner.refit import plan_refit
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
        report: Write ``<results>/report.html`` when the run ends (``gridcv run`` does unless
            ``--no-report``); a report that fails is a warning, never a failed run.
    """

    output: str | Path | None = None
    restart: bool = False
    retry_failed: bool = False
    execution: dict[str, Any] = field(default_factory=dict)
    debug: bool = False
    report: bool = False


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


def run_experiment(
    path: str | Path | Experiment, options: RunOptions | None = None, reporter: Reporter | None = None
) -> RunSummary:
    """Runs every fold of an experiment that is not finished yet.

    Args:
        path: The experiment file (or an :class:`~gridcv.config.Experiment` already loaded).
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
    experiment = path if isinstance(path, Experiment) else load_experiment(path)
    spec = experiment.spec
    execution = execution_spec(experiment, options.execution)
    prepare_data(spec.data, experiment.base_dir, experiment.where)
    call = call_in_child if execution.isolation == "process" else None  # kind: python's labels function
    source = open_source(spec.data, experiment.base_dir, experiment.where, spec.task, call)
    experiment = resolve_task(experiment, source)
    if spec.task is None and source.task in ("regression", "multilabel"):
        reporter.message(f"task: {source.task} ({getattr(source, 'task_origin', DECLARED).how})")
    spec = experiment.spec
    plan = make_plan(spec, labels_to_split(spec, source), source.groups(), experiment.where)
    folder = experiment.output_dir(options.output)
    cache = plan_cache(spec.data, source, experiment.base_dir, folder, experiment.where)
    if cache is not None:
        check_space(cache, experiment.where)  # before anything is written
    experiment.model.check(experiment.base_dir, experiment.where)
    monitoring = check_folder(folder, experiment, options.restart, plan.grouped)
    check_monitoring(spec, plan, monitoring, experiment.where)

    if isinstance(spec.data, PythonData):
        reporter.message(resume_note(spec.data, experiment.base_dir))
    reporter.message(f"checking the model builder {spec.model} ...")
    executor = make_executor(
        execution, spec.deterministic, None if options.debug else folder / "logs", experiment.where
    )
    try:
        _check_builder(experiment, plan, folder, executor, monitoring)
        if options.restart and (aside := move_aside(folder)) is not None:
            reporter.message(f"moved the previous results to {aside}")
        _make_folder(folder)
        lock = RunLock(folder)
        lock.acquire()
        ended = False  # the run came to its end, every fold done or failed: worth a report
        try:
            executor.set_log_dir(folder / "logs")
            if cache is not None:
                build_cache(cache, source, experiment.where, reporter.message)
            with ResultStore.open(folder, create=True) as store:
                run = RunContext(experiment, plan, folder, store, executor, execution, reporter, monitoring)
                try:
                    summary = _run(run, options, source.describe())
                except (AllFoldsFailed, RunStopped):
                    ended = True  # failures are what the report is for
                    raise
                ended = True
                return summary
        finally:
            lock.release()
            if ended:  # once the lock is released: the report must not say this run is still going
                _write_report(folder, options, reporter)
    finally:
        executor.close()


def _check_builder(
    experiment: Experiment, plan: Plan, folder: Path, executor: Executor, monitoring: Monitoring
) -> None:
    """Checks the first candidate whose builder builds (its first fold's data), before anything is written.

    A builder that raises for a candidate's parameters is left to that
    candidate's folds (scikit-learn's ``error_score``); if none builds, every
    fold records why.
    """
    spec = experiment.spec
    for task in plan.tasks:
        if task.fold == 0:
            work = fold_assignment(spec, plan, task)
            if executor.check(build_job(experiment, plan, work, folder, spec.fit.batch_size, 1, 0, monitoring)):
                return


def _run(run: RunContext, options: RunOptions, inputs: InputFormat) -> RunSummary:
    """Runs the folds, then the refit; ``inputs`` (what the data feeds a model) goes into ``best_model.json``."""
    reclaimed, monitoring = _start(run, options)
    run = replace(run, monitoring=monitoring)
    experiment, plan, store, folder = run.experiment, run.plan, run.store, run.folder
    scorer = experiment.spec.refit_scorer() or experiment.spec.scorers()[0]
    finished = _finished_folds(store, plan, scorer)
    shape = RunShape(
        experiment.spec.name,
        len(plan.tasks),
        len(finished),
        len(plan.candidates),
        plan.n_splits,
        run.executor.slot_names,
        scorer,
        finished,
    )
    run.reporter.begin(shape)
    attempts = 0
    try:
        with _stop_on_signals(run.executor, run.reporter) as stop:
            folds = [fold_assignment(experiment.spec, plan, task) for task in plan.tasks]
            attempts += TaskLoop(run, stop).run_all(folds)
            _fail_if_every_fold_failed(run)
            attempts += _refit(run, stop, inputs)
    finally:
        run.reporter.end()  # stops the live display, however the loop ended
    return RunSummary(folder=folder, counts=store.counts(), attempts=attempts, reclaimed=reclaimed)


def _finished_folds(store: ResultStore, plan: Plan, scorer: str) -> tuple[FinishedFold, ...]:
    """The plan's folds the store has finished, with their times and scores (for the ETA and the best so far)."""
    planned = {t.task_id for t in plan.tasks}
    out = []
    for r in store.fold_rows():
        if r.task_id in planned and r.status.is_finished():
            done = r.status is FoldStatus.DONE
            seconds = (r.fit_time or 0.0) + (r.score_time or 0.0) if done and r.fit_time is not None else None
            out.append(FinishedFold(r.candidate_index, r.params, seconds, r.scores.get(scorer) if done else None))
    return tuple(out)


def _write_report(folder: Path, options: RunOptions, reporter: Reporter) -> None:
    """Writes the folder's report; any error is a warning line: a report never fails a run."""
    if not options.report:
        return
    try:
        from gridcv.report import write_report  # matplotlib, only when a report is written

        path = write_report(folder)
    except Exception as exc:  # whatever breaks in the report, the run's results are safe and complete
        reporter.message(
            f"warning: the report could not be written ({type(exc).__name__}: {exc}); the results are not "
            f"affected. Try again with: gridcv report {folder}"
        )
        return
    reporter.message(f"report: {path}")


def _start(run: RunContext, options: RunOptions) -> tuple[tuple[str, ...], Monitoring]:
    """Records the experiment, its plan and what its folds monitor in the store; takes back folds
    a dead run left running. Returns those folds and what the folder's folds monitor."""
    experiment, plan, store = run.experiment, run.plan, run.store
    spec = experiment.spec
    monitoring, adopted = adopt_changes(store, experiment, run.folder, plan.grouped)  # under the lock
    if adopted:
        run.reporter.message(adopted)
    store.set_meta(
        **{META_KEY: monitoring.as_meta()},
        name=spec.name,
        **fingerprint_meta(experiment),
        scoring=spec.scoring,
        return_train_score=spec.return_train_score,
        candidates=[t.candidate_id for t in plan.tasks if t.fold == 0],
        n_splits=plan.n_splits,
        split_sizes=[[len(train), len(test)] for train, test in plan.splits],
        versions=package_versions(),
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
    if removed := remove_temporary_files(run.folder):
        run.reporter.message(f"removed {len(removed)} temporary file(s) left by writes a kill cut short")
    if (note := monitoring.run_message(run.folder, plan.grouped)) is not None:
        run.reporter.message(note)
    if options.retry_failed:
        store.reset_failed()
    return reclaimed, monitoring


def _fail_if_every_fold_failed(run: RunContext) -> None:
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


def _refit(run: RunContext, stop: threading.Event, inputs: InputFormat) -> int:
    """Refits the best candidate once every fold is finished; returns attempts made."""
    store, folder = run.store, run.folder
    planned = {t.task_id for t in run.plan.tasks}
    pending = any(s is FoldStatus.PENDING for t, s in store.statuses().items() if t in planned)
    if run.experiment.spec.refit_scorer() is None or pending:
        return 0
    refit = plan_refit(run.experiment, run.plan, store, folder, run.monitoring, inputs)
    if refit is None:
        return 0
    task = refit.work.task
    store.add_refit(task)
    run.reporter.message(
        f"refitting the best candidate by {refit.scorer} ({dict(task.params)}) on all {run.plan.n_samples} samples"
    )
    if stop.is_set():
        raise RunInterrupted(resume_hint(run.experiment.rerun, folder))
    made = TaskLoop(run, stop, on_done=lambda outcome: refit.write_summary(folder, outcome)).run_all([refit.work])
    if store.status_of(task.task_id) is FoldStatus.FAILED:
        message = store.attempts_of(task.task_id)[-1].message
        raise RunStopped(
            f"refit of candidate {dict(task.params)} failed ({message}); the search results in {folder} are "
            "complete. Run again with --retry-failed to retry the refit from its last checkpoint."
        )
    return made


def package_versions() -> dict[str, str]:
    """Versions of the packages that made the results, read from their metadata (nothing is imported)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("gridcv", "tensorflow", "keras", "scikit-learn", "numpy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


@contextmanager
def _stop_on_signals(executor: Executor, reporter: Reporter) -> Iterator[threading.Event]:
    """First Ctrl-C/SIGTERM: stop after the current batch, with a checkpoint there. Second: stop now."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handle(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        executor.request_stop()
        reporter.message("stopping after the current batch, with a checkpoint there (Ctrl-C again to stop now)")

    previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
