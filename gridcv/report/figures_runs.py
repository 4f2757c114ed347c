"""The report's plots of how folds trained and ran: learning curves, the attempts' timeline, memory.

Times are drawn on the run's clock with idle stretches (between a crash and
the run that resumed it, say) cut short and marked, so one timeline shows
several runs of the same folder without an empty day in the middle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from gridcv.report.data import ReportData
from gridcv.report.figures import HEAVY_POINTS, Plot, label, new_figure, render
from gridcv.store import AttemptRow, FoldRow

CURVES = 3  # candidates whose learning curves are drawn
IDLE = 300.0  # seconds without any attempt running that the timeline cuts short
IDLE_SHOWN = 30.0  # what such a stretch is drawn as

OUTCOME_COLOURS = {
    "done": "tab:green",
    "error": "tab:orange",
    "oom": "tab:red",
    "killed": "darkred",
    "fatal": "tab:purple",
    "interrupted": "tab:gray",
    "abandoned": "silver",
    "running": "tab:blue",
}


def _outcome(a: AttemptRow) -> str:
    return "running" if a.outcome is None else a.outcome.value


def learning_curves(data: ReportData, order: Sequence[int]) -> Plot | None:
    """Train and validation metrics per epoch of every fold of the top candidates, with the best
    epoch, early stopping and resumed attempts marked."""
    by_candidate: dict[int, list[FoldRow]] = {}
    for r in data.rows:
        if r.history:
            by_candidate.setdefault(r.candidate_index, []).append(r)
    top = [i for i in order if i in by_candidate][:CURVES]
    if not top:
        return None
    metrics = _curve_metrics([r for i in top for r in by_candidate[i]])
    resumed: dict[str, list[int]] = {}
    for a in data.attempts:
        if a.resumed_from_epoch:
            resumed.setdefault(a.task_id, []).append(a.resumed_from_epoch)
    fig = new_figure(3.1 * len(top) + 1.6, 2.5 * len(metrics))
    axes = fig.subplots(len(metrics), len(top), squeeze=False, sharex="col")
    for col, i in enumerate(top):
        for row, metric in enumerate(metrics):
            ax = axes[row][col]
            for r in by_candidate[i]:
                _fold_curves(ax, r, metric, resumed.get(r.task_id, []))
            ax.set_ylabel(metric if col == 0 else "")
            if row == 0:
                ax.set_title(f"candidate {label(i)}", fontsize=9)
            if row == len(metrics) - 1:
                ax.set_xlabel("epoch")
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    rows = [r for i in top for r in by_candidate[i]]
    shown = {
        "validation": any(f"val_{m}" in r.history for r in rows for m in metrics),
        "early stop": any(r.info.get("stopped_epoch") for r in rows),
        "resumed": any(r.task_id in resumed for r in rows),
    }
    fig.legend(handles=_legend(max(len(by_candidate[i]) for i in top), shown), loc="outside right center")
    caption = (
        f"Learning curves of every fold of the top {len(top)} candidates: training (solid) and validation "
        "(dashed, the samples callbacks monitored) per epoch. A dot marks each fold's best epoch, a cross the "
        "epoch where early stopping ended it, a dotted line the epoch an interrupted or retried attempt resumed from."
    )
    return render(fig, "learning-curves", caption)


def _curve_metrics(rows: list[FoldRow]) -> list[str]:
    """``loss``, and the first other metric Keras recorded (``accuracy``...), if any."""
    names = {m for r in rows for m in r.history if not m.startswith("val_") and m not in ("learning_rate", "lr")}
    out = ["loss"] if "loss" in names else []
    others = sorted(names - {"loss"})
    return out + others[:1] if out or others else []


def _fold_curves(ax: Axes, r: FoldRow, metric: str, resumed: list[int]) -> None:
    colour = f"C{r.fold % 10}"
    train, val = r.history.get(metric), r.history.get(f"val_{metric}")
    for values, style in ((train, "-"), (val, "--")):
        if values:
            ax.plot(range(1, len(values) + 1), values, style, color=colour, linewidth=1.1)
    marked = val or train
    if not marked:
        return
    best, stopped = r.info.get("best_epoch"), r.info.get("stopped_epoch")
    if best and best <= len(marked) and r.info.get("monitor") in (metric, f"val_{metric}"):
        ax.plot([best], [marked[best - 1]], "o", color=colour, markersize=4)
    if stopped and stopped <= len(marked):
        ax.plot([stopped], [marked[stopped - 1]], "x", color="black", markersize=6)
    for epoch in resumed:
        ax.axvline(epoch + 0.5, linestyle=":", color=colour, linewidth=1)


def _legend(n_folds: int, shown: dict[str, bool]) -> list[Line2D]:
    """Fold colours, then the line styles and marks (those in ``shown`` only when it says they are drawn)."""
    handles = [Line2D([], [], color=f"C{f % 10}", label=f"fold {f + 1}") for f in range(min(n_folds, 10))]
    marks = [
        Line2D([], [], color="black", linestyle="-", label="training"),
        Line2D([], [], color="black", linestyle="--", label="validation"),
        Line2D([], [], color="black", marker="o", linestyle="", label="best epoch"),
        Line2D([], [], color="black", marker="x", linestyle="", label="early stop"),
        Line2D([], [], color="black", linestyle=":", label="resumed"),
    ]
    return handles + [h for h in marks if shown.get(str(h.get_label()), True)]


@dataclass(frozen=True)
class Clock:
    """The run's wall clock with idle stretches cut short: seconds since the first attempt, compressed.

    Attributes:
        real: Breakpoints in seconds since the epoch.
        shown: Where each breakpoint is drawn, in seconds.
        gaps: (drawn position, idle seconds) of each stretch cut short.
    """

    real: np.ndarray
    shown: np.ndarray
    gaps: tuple[tuple[float, float], ...]

    def __call__(self, t: float) -> float:
        return float(np.interp(t, self.real, self.shown))


def run_clock(spans: Sequence[tuple[float, float]]) -> Clock:
    """The clock of attempts running over ``spans`` (start, end): idle stretches over :data:`IDLE` are
    drawn as :data:`IDLE_SHOWN` seconds."""
    merged: list[list[float]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1] + IDLE:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    real, shown, gaps = [merged[0][0]], [0.0], []
    for n, (start, end) in enumerate(merged):
        if n:
            gap_at = shown[-1] + IDLE_SHOWN
            gaps.append((shown[-1] + IDLE_SHOWN / 2, start - real[-1]))
            real.append(start)
            shown.append(gap_at)
        real.append(end)
        shown.append(shown[-1] + (end - start))
    return Clock(np.array(real), np.array(shown), tuple(gaps))


def _spans(data: ReportData) -> list[tuple[AttemptRow, float, float]]:
    """Each attempt with its start and end (attempts still running end when the folder was read)."""
    return [(a, a.started_at, a.finished_at or max(data.read_at, a.started_at)) for a in data.attempts]


def timeline(data: ReportData) -> Plot | None:
    """A lane per worker, a bar per attempt coloured by how it ended; idle stretches cut short."""
    spans = _spans(data)
    if not spans:
        return None
    clock = run_clock([(s, e) for _, s, e in spans])
    lanes = sorted({a.worker_id or "?" for a, _, _ in spans}, key=lambda w: (w == "?", w))
    fig = new_figure(9.0, 1.3 + 0.32 * len(lanes))
    ax = fig.add_subplot()
    ax.grid(axis="y", visible=False)
    for outcome, colour in OUTCOME_COLOURS.items():
        for lane, worker in enumerate(lanes):
            bars = [
                (clock(s) / 60, max(clock(e) - clock(s), 0.5) / 60)
                for a, s, e in spans
                if _outcome(a) == outcome and (a.worker_id or "?") == worker
            ]
            if bars:
                ax.broken_barh(bars, (lane - 0.38, 0.76), facecolors=colour, edgecolor="white", linewidth=0.3)
    resumed = [(clock(s) / 60, lanes.index(a.worker_id or "?")) for a, s, _ in spans if a.resumed_from_epoch]
    if resumed:
        ax.plot(*zip(*resumed, strict=True), "|", color="black", markersize=9)
    _mark_gaps(ax, clock)
    ax.set_yticks(range(len(lanes)), [w if w != "?" else "never reported" for w in lanes])
    ax.set_ylim(len(lanes) - 0.5, -0.5)
    ax.set_xlabel("minutes of running (idle stretches cut short)")
    present = {_outcome(a) for a, _, _ in spans}
    handles: list[Artist] = [Patch(color=c, label=o) for o, c in OUTCOME_COLOURS.items() if o in present]
    if resumed:
        handles.append(Line2D([], [], color="black", marker="|", linestyle="", markersize=9, label="resumed"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    caption = (
        "Every attempt at a fold (and the refit) on the worker that ran it, coloured by how it ended: oom and "
        "killed are out-of-memory retries, interrupted and abandoned attempts were resumed from their last "
        "checkpoint (a tick marks a resumed start). Idle stretches, such as the time between a crash and the "
        "run that resumed it, are cut short at the dashed lines."
    )
    return render(fig, "timeline", caption, png=len(spans) > HEAVY_POINTS // 4)


def _mark_gaps(ax: Axes, clock: Clock) -> None:
    for at, idle in clock.gaps:
        ax.axvline(at / 60, color="black", linestyle="--", linewidth=0.8)
        ax.annotate(
            f"idle {_duration(idle)}",
            (at / 60, 0),
            xycoords=("data", "axes fraction"),
            rotation=90,
            fontsize=7,
            va="bottom",
            ha="right",
        )


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def memory(data: ReportData) -> Plot | None:
    """Peak resident memory of every attempt that recorded one, on the timeline's clock."""
    spans = [(a, s, e) for a, s, e in _spans(data) if a.peak_rss]
    if not spans:
        return None
    clock = run_clock([(s, e) for _, s, e in _spans(data)])
    fig = new_figure(9.0, 2.6)
    ax = fig.add_subplot()
    for outcome, colour in OUTCOME_COLOURS.items():
        points = [(clock(e) / 60, (a.peak_rss or 0) / 2**20) for a, _, e in spans if _outcome(a) == outcome]
        if points:
            x, y = zip(*points, strict=True)
            ax.scatter(x, y, s=14, color=colour, label=outcome, lw=0)
    _mark_gaps(ax, clock)
    ax.set_ylim(0, max((a.peak_rss or 0) for a, _, _ in spans) / 2**20 * 1.15)
    ax.set_xlabel("minutes of running (idle stretches cut short)")
    ax.set_ylabel("peak memory (MiB)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    caption = (
        "Peak resident memory of the process that ran each attempt, when it ended, coloured by how it ended. "
        "Flat points over time mean no leak from fold to fold."
    )
    return render(fig, "memory", caption, png=len(spans) > HEAVY_POINTS // 2)


def outcome_counts(attempts: Sequence[AttemptRow]) -> dict[str, int]:
    """How many attempts ended each way (``running`` for those still going), in a fixed order."""
    counts = dict.fromkeys(OUTCOME_COLOURS, 0)
    for a in attempts:
        counts[_outcome(a)] += 1
    return {k: v for k, v in counts.items() if v}
