"""Progress display of a run: folds done / total, the fold in flight, elapsed time, ETA.

rich draws the live bar (it handles terminal width, redraws and the ETA
estimate better than hand-written carriage returns). Nothing is drawn when
stderr is not a terminal or with ``--quiet``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

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
        params = ", ".join(f"{k}={v}" for k, v in task.params.items())
        what = "refit" if task.fold == REFIT_FOLD else f"fold {task.fold + 1}"
        where = f"candidate {task.candidate_index + 1} {what} ({params})"
        if status is FoldStatus.DONE:
            scores = " ".join(f"{k}={v:.4f}" for k, v in outcome.scores.items())
            self.console.print(f"[green]done[/]   {where}: {scores} ({outcome.fit_time or 0:.1f}s)")
        elif status is FoldStatus.FAILED:
            self.console.print(f"[red]failed[/] {where}: {outcome.message}")
        else:
            self.console.print(f"[yellow]retry[/]  {where}: {outcome.kind.value}: {outcome.message}")
        if status.is_finished() and task.fold != REFIT_FOLD and self._bar is not None:
            self._progress.advance(self._bar)

    def message(self, text: str) -> None:
        self.console.print(text)

    def end(self) -> None:
        self._progress.stop()

    def _describe(self, text: str) -> None:
        if self._bar is not None:
            self._progress.update(self._bar, description=text)


def make_reporter(quiet: bool) -> Reporter:
    """A terminal progress bar when stderr is a terminal and not ``quiet``; else silence."""
    console = Console(stderr=True)
    if quiet or not console.is_terminal:
        return SilentReporter()
    return TerminalReporter(console)
