"""Running an experiment: the plan, the results store and an executor put together.

The runner decides nothing from memory that the store knows: what is left is
read from the store fold by fold, and a retry's batch size is worked out from
the attempts the store recorded, so a run killed at any moment and started
again carries on from the same state.
"""

from __future__ import annotations

import shutil
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gridcv.checkpoint import write_atomic
from gridcv.config import ExecutionSpec, Experiment, load_experiment
from gridcv.data import open_source, prepare_data
from gridcv.errors import (
    AllFoldsFailed,
    ConfigError,
    ExperimentChangedError,
    RunInterrupted,
    RunStopped,
    UserError,
)
from gridcv.execute import ExecutionSettings, Executor, make_executor
from gridcv.jobs import DataRef, FoldJob, FoldOutcome, FoldStatus, OutcomeKind
from gridcv.options import requested_accumulation, training_options
from gridcv.plan import FoldTask, Plan, fold_batch_size, make_plan
from gridcv.progress import Reporter, SilentReporter
from gridcv.refit import run_refit
from gridcv.store import DB_NAME, ResultStore, RunLock

EXPERIMENT_COPY = "experiment.yaml"
OOM_OUTCOMES = {OutcomeKind.OOM.value, OutcomeKind.KILLED.value}


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


def execution_spec(experiment: Experiment, overrides: dict[str, Any], where: str) -> ExecutionSpec:
    """The ``execution:`` section with command-line values applied (command line wins)."""
    merged = {**experiment.spec.execution.model_dump(exclude_none=True), **overrides}
    try:
        return ExecutionSpec.model_validate(merged)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        raise ConfigError(
            f"{where}: execution.{key} (from the file or the command line) is {err['input']!r}: "
            f"{err['msg']}. Fix the value, e.g. --max-worker-memory 4GiB."
        ) from None


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
    where = str(path)
    experiment = load_experiment(path)
    spec = experiment.spec
    execution = execution_spec(experiment, options.execution, where)
    data_spec = spec.data.model_dump()
    prepare_data(data_spec, experiment.base_dir, where)
    source = open_source(data_spec, experiment.base_dir, where)
    plan = make_plan(spec, source.labels(), source.groups(), where)
    folder = experiment.output_dir(options.output)
    _check_model_reference(experiment, where)
    _check_folder(folder, experiment, options, where)

    settings = ExecutionSettings(
        isolation=execution.isolation,
        max_worker_memory=int(execution.max_worker_memory) if execution.max_worker_memory else None,
        folds_per_worker=execution.folds_per_worker,
        deterministic=spec.deterministic,
        log_dir=None if options.debug else folder / "logs",
    )
    reporter.message(f"checking the model builder {spec.model} ...")
    executor = make_executor(settings)
    try:
        executor.check(_job(experiment, plan, plan.tasks[0], folder, spec.fit.batch_size, 1, 0))
        if options.restart:
            _move_aside(folder, reporter)
        folder.mkdir(parents=True, exist_ok=True)
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


def _run(run: _Run, options: RunOptions) -> RunSummary:
    experiment, plan, store, folder = run.experiment, run.plan, run.store, run.folder
    spec = experiment.spec
    _check_compatible(store, experiment, folder, str(experiment.path))
    store.set_meta(
        name=spec.name,
        fingerprint=experiment.fingerprint(),
        scoring=spec.scoring,
        return_train_score=spec.return_train_score,
        candidates=[t.candidate_id for t in plan.tasks if t.fold == 0],
        n_splits=plan.n_splits,
        experiment_file=str(experiment.path),
    )
    write_atomic(folder / EXPERIMENT_COPY, experiment.text.encode())
    store.add_tasks(plan.tasks)
    reclaimed = tuple(store.reclaim_stale())
    if reclaimed:
        run.reporter.message(f"taking back {len(reclaimed)} fold(s) left running by a run that ended")
    if options.retry_failed:
        store.reset_failed()

    statuses = store.statuses()
    done_before = sum(1 for t in plan.tasks if statuses[t.task_id].is_finished())
    run.reporter.begin(spec.name, len(plan.tasks), done_before, len(plan.candidates), plan.n_splits)
    attempts = 0
    try:
        with _stop_on_signals(run.executor, run.reporter) as stop:
            for task in plan.tasks:
                if store.status_of(task.task_id).is_finished():
                    continue
                if stop.is_set():
                    raise RunInterrupted(_resume_hint(experiment, folder))
                attempts += _run_task(run, task)
    finally:
        run.reporter.end()  # stops the live display, however the loop ended
    planned = {t.task_id for t in plan.tasks}
    rows = [r for r in store.fold_rows() if r["task_id"] in planned]
    if rows and all(r["status"] == FoldStatus.FAILED for r in rows):
        raise AllFoldsFailed(
            f"every fold failed ({len(rows)} of {len(rows)}); the first: {rows[0]['message']}. "
            f"See gridcv.load_folds('{folder}') for each fold's error."
        )
    if spec.refit_scorer() is not None and not any(r["status"] == FoldStatus.PENDING for r in rows):
        run_refit(experiment, plan, folder, store, run.executor, run.reporter)
    return RunSummary(folder=folder, counts=store.counts(), attempts=attempts, reclaimed=reclaimed)


def _run_task(run: _Run, task: FoldTask) -> int:
    """Attempts one fold until it is finished (or the run must stop); returns attempts made."""
    experiment, store, folder = run.experiment, run.store, run.folder
    made = 0
    base_batch = fold_batch_size(task.params, experiment.spec.fit.batch_size)
    while True:
        batch, accumulation = retry_shape(base_batch, store.attempts_of(task.task_id))
        accumulation *= requested_accumulation(experiment.spec, task.params) or 1
        attempt = store.mark_running(task.task_id, batch, accumulation)
        made += 1
        job = _job(experiment, run.plan, task, folder, batch, accumulation, attempt)
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
            raise RunInterrupted(_resume_hint(experiment, folder)) from None
        status, stop = decide(outcome, store.attempts_of(task.task_id), run.execution, experiment, folder)
        store.record(outcome, status)
        run.reporter.fold_finished(task, outcome, status)
        if status is FoldStatus.DONE:
            shutil.rmtree(folder / "checkpoints" / task.task_id, ignore_errors=True)
        if stop is not None:
            raise stop
        if status.is_finished():
            return made


def retry_shape(base_batch: int, attempts: list[dict[str, Any]]) -> tuple[int, int]:
    """Batch size and gradient accumulation for the next attempt at a fold.

    Every earlier out-of-memory attempt halves the batch and doubles the
    accumulation, so the effective batch size (their product) stays the same.
    """
    batch, accumulation = base_batch, 1
    for a in attempts:
        if a["outcome"] in OOM_OUTCOMES:
            batch, accumulation = max(1, batch // 2), accumulation * 2
    return batch, accumulation


def decide(
    outcome: FoldOutcome,
    attempts: list[dict[str, Any]],
    execution: ExecutionSpec,
    experiment: Experiment,
    folder: Path,
) -> tuple[FoldStatus, BaseException | None]:
    """What an attempt's outcome means for the fold, and whether the run must stop.

    ``attempts`` are the fold's attempts before this outcome is recorded (the
    last one is the attempt that produced it).
    """
    kind = outcome.kind
    if kind is OutcomeKind.DONE:
        return FoldStatus.DONE, None
    if kind is OutcomeKind.INTERRUPTED:
        return FoldStatus.PENDING, RunInterrupted(_resume_hint(experiment, folder))
    if kind is OutcomeKind.FATAL:
        return FoldStatus.PENDING, UserError(outcome.message or "the model builder failed")
    if kind.value in OOM_OUTCOMES:
        if execution.on_oom == "skip":
            return FoldStatus.FAILED, None
        if execution.on_oom == "stop":
            return FoldStatus.PENDING, RunStopped(
                f"fold {outcome.task_id} ran out of memory ({outcome.message}) and execution.on_oom "
                "is 'stop'. Lower the batch size or raise the memory limit, then run again to resume."
            )
        smaller = (outcome.batch_size or 1) // 2
        if smaller < execution.min_batch_size:
            return FoldStatus.FAILED, None
        return FoldStatus.PENDING, None
    errors = sum(1 for a in attempts[:-1] if a["outcome"] == OutcomeKind.ERROR.value) + 1
    return (FoldStatus.PENDING if errors <= execution.max_retries else FoldStatus.FAILED), None


def _job(
    experiment: Experiment,
    plan: Plan,
    task: FoldTask,
    folder: Path,
    batch: int,
    accumulation: int,
    attempt: int,
) -> FoldJob:
    spec = experiment.spec
    train_idx, test_idx = plan.splits[task.fold]
    params = {"epochs": spec.fit.epochs, "batch_size": spec.fit.batch_size, **task.params}
    return FoldJob(
        task=task,
        train_idx=train_idx,
        test_idx=test_idx,
        data=DataRef(spec.data.model_dump(), experiment.base_dir, str(experiment.path)),
        model_ref=spec.model,
        base_dir=experiment.base_dir,
        params=params,
        epochs=int(params["epochs"]),
        batch_size=batch,
        accumulation_steps=accumulation,
        shuffle=spec.fit.shuffle,
        scorers=tuple(spec.scorers()),
        deterministic=spec.deterministic,
        checkpoint_dir=folder / "checkpoints" / task.task_id / f"b{batch}x{accumulation}",
        attempt=attempt,
        training=training_options(experiment, folder, task.params),
    )


def _resume_hint(experiment: Experiment, folder: Path) -> str:
    return (
        f"finished folds are saved in {folder} and the fold in flight resumes from its last "
        f"checkpoint. Run `gridcv run {experiment.path}` again to continue."
    )


# --- checks before anything is written ------------------------------------------------


def _check_model_reference(experiment: Experiment, where: str) -> None:
    """Finds the builder without importing it (importing it would import Keras here)."""
    import ast
    import importlib.util

    module, _, function = experiment.spec.model.partition(":")
    if module.endswith(".py"):
        file = experiment.resolve(module)
        if not file.is_file():
            raise ConfigError(
                f"{where}: key 'model' names {module}, but {file} does not exist. Give the builder's "
                "file relative to the experiment file, e.g. 'models.py:build'."
            )
        try:
            tree = ast.parse(file.read_text(encoding="utf-8"), str(file))
        except SyntaxError as exc:
            raise ConfigError(
                f"{where}: key 'model': {file} has a syntax error at line {exc.lineno}: {exc.msg}."
            ) from None
        defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        defined |= {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
        defined |= {a.asname or a.name for n in tree.body if isinstance(n, ast.ImportFrom) for a in n.names}
        if function not in defined:
            raise ConfigError(
                f"{where}: key 'model' names {function}() in {file}, which defines no such function "
                f"(it defines {', '.join(sorted(defined)) or 'nothing'}). Fix the name after the colon."
            )
    else:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise ConfigError(
                f"{where}: key 'model' names module {module!r}, which is not importable. Install it, "
                "or use 'path/to/file.py:function' relative to the experiment file."
            )


def _check_folder(folder: Path, experiment: Experiment, options: RunOptions, where: str) -> None:
    """Refuses early, without writing, if the folder is busy or holds other results."""
    RunLock(folder).refuse_if_held()
    if (folder / DB_NAME).exists() and not options.restart:
        # No run holds the folder: read it without creating SQLite's side files, so a
        # refused run leaves the folder exactly as it was (the check is redone under the lock).
        with ResultStore.open(folder, untouched=True) as store:
            _check_compatible(store, experiment, folder, where)


def _check_compatible(store: ResultStore, experiment: Experiment, folder: Path, where: str) -> None:
    old = store.get_meta("fingerprint")
    if old is None:
        return
    new = experiment.fingerprint()
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if changed:
        raise ExperimentChangedError(
            f"{where}: the experiment changed since {folder} was started: {', '.join(changed)} "
            "differ (only adding grid values is compatible). The finished folds were computed "
            "with the old settings, so they are not mixed with new ones. Pass --restart to move "
            "the old results aside (they are kept) and start again, or --output DIR to write to "
            "another folder."
        )


def _move_aside(folder: Path, reporter: Reporter) -> None:
    if not folder.exists():
        return
    RunLock(folder).refuse_if_held()
    aside = folder.with_name(f"{folder.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
    folder.rename(aside)
    reporter.message(f"moved the previous results to {aside}")


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
