"""The live display of a run on a terminal: candidate -> fold -> epoch, the best score so far, an ETA.

Redrawn by rich twice a second; every line is cut to the terminal's width
(with an ellipsis), so nothing wraps on an 80-column terminal. The ETA and the
best score start from what the store knew when the run began
(:attr:`RunShape.finished`), so a resumed run shows them at once and the
first run from its first finished fold::

    digits-cnn ━━━━━━━━━━━━━━━━━━━━━━━━━━━─────── 5/12 folds  0:01:02  ETA 0:01:10
      best accuracy 0.9521 candidate 3/4: filters=16, learning_rate=0.003
      candidate 4/4  fold 2/3  epoch 5/8 ━━━━━━━╸────  filters=16, learning_rate=0.01

With several slots there is one line per slot in flight, named by the slot.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.text import Text

from gridcv.execution.messages import EpochEnded, FoldOutcome
from gridcv.plan import REFIT_FOLD, FoldTask
from gridcv.runner.progress import FinishedFold, RunShape, fold_name, outcome_text
from gridcv.store import FoldStatus


def estimate_remaining(
    seconds: Mapping[int, Sequence[float]],
    left: Mapping[int, int],
    running: Sequence[tuple[int, float]],
    slots: int,
) -> float | None:
    """Seconds until every fold left has finished, or None before any fold's time is known.

    A fold left takes its candidate's mean time when some of its folds have
    finished (candidates differ most), else the mean over every finished fold;
    the slots share the work; what folds in flight have already run is taken off.

    Args:
        seconds: Candidate index -> the times of its finished folds.
        left: Candidate index -> its folds not finished (those in flight included).
        running: (candidate index, seconds it has run) per fold in flight.
        slots: Folds that run at once.
    """
    every = [s for times in seconds.values() for s in times]
    if not every:
        return None
    overall = sum(every) / len(every)

    def expected(candidate: int) -> float:
        times = seconds.get(candidate)
        return sum(times) / len(times) if times else overall

    work = sum(n * expected(c) for c, n in left.items())
    work -= sum(min(elapsed, expected(c)) for c, elapsed in running)
    return max(work, 0.0) / max(slots, 1)


def clock_text(seconds: float | None) -> str:
    """``1:02:03``; ``-:--:--`` when unknown."""
    if seconds is None:
        return "-:--:--"
    minutes, s = divmod(round(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{s:02d}"


def bar(done: float, total: float, width: int) -> Text:
    """A bar of ``width`` cells filled in proportion to ``done / total`` (``━`` done, ``─`` not yet: told
    apart without colours too)."""
    cells = (0.0 if total <= 0 else min(max(done / total, 0.0), 1.0)) * width
    full = int(cells)
    text = Text("━" * full, style="bar.complete")
    if full < width:
        text.append("╸" if cells - full >= 0.5 else "─", style="bar.complete" if cells - full >= 0.5 else "bar.back")
        text.append("─" * (width - full - 1), style="bar.back")
    return text


@dataclass
class _Flight:
    """A fold attempt on a slot."""

    task: FoldTask
    attempt: int
    batch: int
    started: float
    epoch: int = 0
    epochs: int | None = None


class LiveState:
    """What the display shows, updated by the run's events (any thread) and read by rich's redraws."""

    def __init__(self, shape: RunShape, now: float) -> None:
        self.shape = shape
        self.started = now
        self.finished = shape.done
        self.seconds: dict[int, list[float]] = {}
        self.scores: dict[int, list[float]] = {}
        self.closed: dict[int, int] = {}  # folds finished (done or failed) per candidate
        self.params: dict[int, Mapping[str, Any]] = {}
        self.flights: dict[int, _Flight] = {}
        for fold in shape.finished:
            self._add(fold)

    def _add(self, fold: FinishedFold) -> None:
        c = fold.candidate_index
        self.closed[c] = self.closed.get(c, 0) + 1
        self.params[c] = fold.params
        if fold.seconds is not None:
            self.seconds.setdefault(c, []).append(fold.seconds)
        if fold.score is not None:
            self.scores.setdefault(c, []).append(fold.score)

    def fold_done(self, task: FoldTask, outcome: FoldOutcome, status: FoldStatus) -> None:
        """Records a finished fold (``status`` done or failed)."""
        self.finished += 1
        seconds = None if outcome.fit_time is None else outcome.fit_time + (outcome.score_time or 0.0)
        score = outcome.scores.get(self.shape.scorer) if self.shape.scorer else None
        if status is not FoldStatus.DONE:
            seconds = score = None
        self._add(FinishedFold(task.candidate_index, dict(task.params), seconds, score))

    def eta(self, now: float) -> float | None:
        """Seconds left, from fold times (see :func:`estimate_remaining`)."""
        n = self.shape.n_splits
        left = {c: n - self.closed.get(c, 0) for c in range(self.shape.n_candidates)}
        running = [
            (f.task.candidate_index, now - f.started) for f in self.flights.values() if f.task.fold != REFIT_FOLD
        ]
        return estimate_remaining(self.seconds, left, running, len(self.shape.slots))

    def best(self) -> tuple[int, float, int] | None:
        """(candidate, mean score, folds scored) of the best candidate: complete ones first, else
        the best mean so far; None before any score."""
        if not self.scores:
            return None
        n = self.shape.n_splits
        complete = {c: s for c, s in self.scores.items() if len(s) >= n}
        pool = complete or self.scores
        c = max(sorted(pool), key=lambda i: sum(pool[i]) / len(pool[i]))
        return c, sum(pool[c]) / len(pool[c]), len(pool[c])

    def lines(self, width: int, now: float) -> list[Text]:
        """The display, each line at most ``width`` cells."""
        s = self.shape
        counts = f" {self.finished}/{s.total} folds  {clock_text(now - self.started)}  ETA {clock_text(self.eta(now))}"
        name = Text(s.name if len(s.name) <= 24 else s.name[:23] + "…", style="bold")
        room = width - len(name) - len(counts) - 1
        head = name + Text(" ") + bar(self.finished, s.total, min(room, 40)) if room >= 8 else name
        out = [head + Text(counts)]
        best = self.best()
        if best is not None and s.scorer:
            c, mean, k = best
            so_far = "" if k >= s.n_splits else f" ({k}/{s.n_splits} folds)"
            params = _params(self.params.get(c, {}))
            out.append(Text(f"  best {s.scorer} {mean:.4f}{so_far} candidate {c + 1}/{s.n_candidates}: {params}"))
        for slot in sorted(self.flights):
            out.append(self._flight_line(slot, self.flights[slot], width))
        for line in out:
            line.truncate(width, overflow="ellipsis")
            line.no_wrap = True
        return out

    def _flight_line(self, slot: int, f: _Flight, width: int) -> Text:
        s, task = self.shape, f.task
        where = f"  {s.slots[slot]}:" if len(s.slots) > 1 and slot < len(s.slots) else " "
        if task.fold == REFIT_FOLD:
            what = f"{where} refit of candidate {task.candidate_index + 1}"
        else:
            what = f"{where} candidate {task.candidate_index + 1}/{s.n_candidates}  fold {task.fold + 1}/{s.n_splits}"
        epoch = f"  epoch {f.epoch}/{f.epochs}" if f.epochs else "  first epoch"
        retry = f" (attempt {f.attempt}, batch {f.batch})" if f.attempt > 1 else ""
        line = Text(what + epoch + retry + " ")
        if f.epochs:
            line += bar(f.epoch, f.epochs, 12) + Text(" ")
        return line + Text(" " + _params(task.params), style="dim")


def _params(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())


class _Renderable:
    """What rich redraws: the state's lines at the console's width."""

    def __init__(self, reporter: TerminalReporter) -> None:
        self.reporter = reporter

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield from self.reporter.lines(options.max_width)


class TerminalReporter:
    """The live display on stderr, and one line per finished, failed or retried fold above it.

    Args:
        console: Where to draw (default: stderr).
        clock: Monotonic seconds (tests pass a fake one).
        refresh_per_second: Redraws per second.
    """

    def __init__(
        self, console: Console | None = None, clock: Callable[[], float] = time.monotonic, refresh_per_second: float = 2
    ) -> None:
        self.console = console or Console(stderr=True)
        self._clock = clock
        self._lock = threading.Lock()
        self._state: LiveState | None = None
        self._live = Live(
            _Renderable(self), console=self.console, refresh_per_second=refresh_per_second, transient=False
        )

    def begin(self, shape: RunShape) -> None:
        if shape.done:
            self._print(Text(f"{shape.name}: {shape.done} of {shape.total} folds already finished; resuming"))
        with self._lock:
            self._state = LiveState(shape, self._clock())
        self._live.start()

    def lines(self, width: int | None = None) -> list[Text]:
        """The display as it is now (what the next redraw shows)."""
        with self._lock:
            if self._state is None:
                return []
            return self._state.lines(width or self.console.width, self._clock())

    def fold_started(self, task: FoldTask, attempt: int, batch_size: int, slot: int) -> None:
        with self._lock:
            if self._state is not None:
                self._state.flights[slot] = _Flight(task, attempt, batch_size, self._clock())

    def epoch_ended(self, task: FoldTask, epoch: EpochEnded) -> None:
        with self._lock:
            for f in self._state.flights.values() if self._state else ():
                if f.task.task_id == task.task_id:
                    f.epoch, f.epochs = epoch.epoch, epoch.epochs

    def fold_finished(self, task: FoldTask, outcome: FoldOutcome, status: FoldStatus) -> None:
        label = {FoldStatus.DONE: "[green]done[/]  ", FoldStatus.FAILED: "[red]failed[/]"}.get(
            status, "[yellow]retry[/] "
        )
        with self._lock:
            state = self._state
            if state is not None:
                state.flights = {k: f for k, f in state.flights.items() if f.task.task_id != task.task_id}
                if status.is_finished() and task.fold != REFIT_FOLD:
                    state.fold_done(task, outcome, status)
        self._print(Text.from_markup(label) + Text(f" {fold_name(task)}: {outcome_text(outcome, status)}"))

    def message(self, text: str) -> None:
        self._print(Text(text))

    def end(self) -> None:
        if self._state is not None:  # begun: draw the final state once more, and leave it on screen
            self._live.refresh()
        self._live.stop()

    def _print(self, text: Text) -> None:
        text.no_wrap = True
        self.console.print(text, overflow="ellipsis", no_wrap=True, crop=True)
