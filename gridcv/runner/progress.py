"""Progress display of a run: folds done / total, the fold in flight, elapsed time, ETA.

On a terminal, rich draws the live bar (it handles terminal width, redraws
and the ETA estimate better than hand-written carriage returns). Anywhere
else (``> run.log``, nohup, Slurm, CI, a notebook) :class:`LineReporter`
prints plain lines to stdout: one per finished, failed or retried fold, and
one every few minutes per fold in flight with the epoch it reached.
``--quiet`` shows nothing.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from gridcv.execution.messages import EpochEnded, FoldOutcome
from gridcv.plan import REFIT_FOLD, FoldTask
from gridcv.store import FoldStatus

HEARTBEAT_SECONDS = 300.0  # a line this often per fold in flight, when not on a terminal


@dataclass(frozen=True)
class RunShape:
    """What a run is about to do, as a display needs it.

    Attributes:
        name: The experiment's name.
        total: Folds in the plan.
        done: Folds already finished (a resumed run).
        n_candidates: Candidates in the grid.
        n_splits: Folds per candidate.
        slots: What each of the executor's slots is (``cpu``, ``GPU 0``, ``inline``...).
    """

    name: str
    total: int
    done: int
    n_candidates: int
    n_splits: int
    slots: tuple[str, ...] = ("cpu",)


class Reporter(Protocol):
    """Receives a run's events, to show them."""

    def begin(self, shape: RunShape) -> None:
        """The run starts (some folds may be finished already)."""
        ...

    def fold_started(self, task: FoldTask, attempt: int, batch_size: int, slot: int) -> None:
        """A fold attempt starts on one of the executor's slots."""
        ...

    def epoch_ended(self, task: FoldTask, epoch: EpochEnded) -> None:
        """A fold in flight finished (and checkpointed) an epoch."""
        ...

    def fold_finished(self, task: FoldTask, outcome: FoldOutcome, status: FoldStatus) -> None:
        """A fold attempt ended; ``status`` is what the fold became."""
        ...

    def message(self, text: str) -> None:
        """A one-line note for the user."""
        ...

    def end(self) -> None:
        """The run ends."""
        ...


class SilentReporter:
    """Shows nothing."""

    def begin(self, shape: RunShape) -> None:
        pass

    def fold_started(self, task: FoldTask, attempt: int, batch_size: int, slot: int) -> None:
        pass

    def epoch_ended(self, task: FoldTask, epoch: EpochEnded) -> None:
        pass

    def fold_finished(self, task: FoldTask, outcome: FoldOutcome, status: FoldStatus) -> None:
        pass

    def message(self, text: str) -> None:
        pass

    def end(self) -> None:
        pass


class TerminalReporter:
    """A live progress bar on stderr, with one line per finished or failed fold."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._progress = Progress(
            TextColumn("[bold]{task.fields[name]}[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("folds"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.description}"),
            console=self.console,
            transient=False,
        )
        self._bar: TaskID | None = None
        self._retry: dict[str, str] = {}
        self._n_candidates = 0
        self._n_splits = 0

    def begin(self, shape: RunShape) -> None:
        self._n_candidates, self._n_splits = shape.n_candidates, shape.n_splits
        if shape.done:
            self.console.print(f"{shape.name}: {shape.done} of {shape.total} folds already finished; resuming")
        self._progress.start()
        self._bar = self._progress.add_task("", total=shape.total, completed=shape.done, name=shape.name)

    def fold_started(self, task: FoldTask, attempt: int, batch_size: int, slot: int) -> None:
        self._retry[task.task_id] = f" (attempt {attempt}, batch {batch_size})" if attempt > 1 else ""
        self._describe(self._where(task))

    def epoch_ended(self, task: FoldTask, epoch: EpochEnded) -> None:
        self._describe(f"{self._where(task)} epoch {epoch.epoch}/{epoch.epochs}")

    def _where(self, task: FoldTask) -> str:
        retry = self._retry.get(task.task_id, "")
        if task.fold == REFIT_FOLD:
            return f"refit of candidate {task.candidate_index + 1}{retry}"
        return f"candidate {task.candidate_index + 1}/{self._n_candidates} fold {task.fold + 1}/{self._n_splits}{retry}"

    def fold_finished(self, task: FoldTask, outcome: FoldOutcome, status: FoldStatus) -> None:
        label = {FoldStatus.DONE: "[green]done[/]  ", FoldStatus.FAILED: "[red]failed[/]"}.get(
            status, "[yellow]retry[/] "
        )
        self.console.print(f"{label} {fold_name(task)}: {outcome_text(outcome, status)}")
        if status.is_finished() and task.fold != REFIT_FOLD and self._bar is not None:
            self._progress.advance(self._bar)

    def message(self, text: str) -> None:
        self.console.print(text)

    def end(self) -> None:
        self._progress.stop()

    def _describe(self, text: str) -> None:
        if self._bar is not None:
            self._progress.update(self._bar, description=text)


def fold_name(task: FoldTask) -> str:
    """``candidate 2 fold 1 (units=8)``, or ``candidate 2 refit (units=8)``."""
    params = ", ".join(f"{k}={v}" for k, v in task.params.items())
    what = "refit" if task.fold == REFIT_FOLD else f"fold {task.fold + 1}"
    return f"candidate {task.candidate_index + 1} {what} ({params})"


def outcome_text(outcome: FoldOutcome, status: FoldStatus) -> str:
    """What an attempt came to: its scores and fit time, or why it failed or is retried."""
    if status is FoldStatus.DONE:
        scores = " ".join(f"{k}={v:.4f}" for k, v in outcome.scores.items()) or "trained"  # a refit has no scores
        return f"{scores} ({outcome.fit_time or 0:.1f}s)"
    if status is FoldStatus.FAILED:
        return str(outcome.message)
    return f"{outcome.kind.value}: {outcome.message}"


@dataclass
class _Flight:
    """A fold attempt in flight, as the log reports it."""

    task: FoldTask
    slot: int
    started: float
    epoch: EpochEnded | None = None


class LineReporter:
    """Plain lines for a log: one per finished, failed or retried fold, and a heartbeat during folds.

    Args:
        stream: Where lines go (default: ``sys.stdout`` as it is when a line is written), flushed per line.
        heartbeat: Seconds between two lines about each fold in flight (the epoch it reached).
        clock: Seconds since the epoch (tests pass a fake one); lines start with its local time.
    """

    def __init__(
        self, stream: TextIO | None = None, heartbeat: float = HEARTBEAT_SECONDS, clock: Callable[[], float] = time.time
    ) -> None:
        self._stream, self._heartbeat, self._clock = stream, heartbeat, clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._total = self._finished = 0
        self._slots: tuple[str, ...] = ()
        self._flights: dict[str, _Flight] = {}

    def begin(self, shape: RunShape) -> None:
        self._total, self._finished, self._slots = shape.total, shape.done, shape.slots
        resumed = f", {shape.done} already finished" if shape.done else ""
        slots = f", on {len(shape.slots)} slots ({', '.join(shape.slots)})" if len(shape.slots) > 1 else ""
        self._print(
            f"{shape.name}: {shape.total} folds ({shape.n_candidates} candidates x {shape.n_splits} splits)"
            f"{resumed}{slots}"
        )
        self._stop = threading.Event()  # a reporter may serve several runs
        self._thread = threading.Thread(target=self._beat, name="gridcv-heartbeat", daemon=True)
        self._thread.start()

    def fold_started(self, task: FoldTask, attempt: int, batch_size: int, slot: int) -> None:
        with self._lock:
            self._flights[task.task_id] = _Flight(task, slot, self._clock())

    def epoch_ended(self, task: FoldTask, epoch: EpochEnded) -> None:
        with self._lock:
            if task.task_id in self._flights:
                self._flights[task.task_id].epoch = epoch

    def fold_finished(self, task: FoldTask, outcome: FoldOutcome, status: FoldStatus) -> None:
        with self._lock:
            self._flights.pop(task.task_id, None)
        if status.is_finished() and task.fold != REFIT_FOLD:
            self._finished += 1
        label = {FoldStatus.DONE: "done  ", FoldStatus.FAILED: "failed"}.get(status, "retry ")
        self._print(f"{label} {self._finished}/{self._total} {fold_name(task)}: {outcome_text(outcome, status)}")

    def message(self, text: str) -> None:
        self._print(text)

    def end(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def heartbeat(self) -> None:
        """Prints a line per fold in flight (the timer thread calls it every ``heartbeat`` seconds)."""
        with self._lock:
            flights = sorted(self._flights.values(), key=lambda f: f.slot)
        for f in flights:
            reached = (
                "no epoch finished yet" if f.epoch is None else f"epoch {f.epoch.epoch}/{f.epoch.epochs} checkpointed"
            )
            where = f" on {self._slots[f.slot]}" if len(self._slots) > 1 else ""
            minutes, seconds = divmod(int(self._clock() - f.started), 60)
            since = f"{minutes}m{seconds:02d}s in"
            self._print(f"running {self._finished}/{self._total} {fold_name(f.task)}{where}: {reached}, {since}")

    def _beat(self) -> None:
        while not self._stop.wait(self._heartbeat):
            self.heartbeat()

    def _print(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(self._clock()))
        stream = self._stream or sys.stdout
        with self._lock:
            stream.write(f"[{stamp}] {text}\n")
            stream.flush()  # a log file is block-buffered: show each line as it happens


def make_reporter(quiet: bool) -> Reporter:
    """Nothing when ``quiet``; a live bar when stdout and stderr are terminals; else plain lines on stdout."""
    if quiet:
        return SilentReporter()
    console = Console(stderr=True)
    if console.is_terminal and sys.stdout.isatty():
        return TerminalReporter(console)
    return LineReporter()
