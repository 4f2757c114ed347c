"""The report's plots of scores: folds paired across candidates, fold x candidate, hyperparameters.

matplotlib without pyplot: every figure is a :class:`matplotlib.figure.Figure`
saved by the SVG or Agg backend directly, so no GUI backend is ever loaded
and a notebook's own pyplot backend is left alone. Figures become inline SVG
(text kept as text, ids salted per figure so several can share one page), or
PNG where an SVG would be heavy (many points).
"""

from __future__ import annotations

import base64
import io
import math
import re
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from html import escape
from typing import Any

import numpy as np
from matplotlib import colormaps, rc_context
from matplotlib.figure import Figure

from gridcv.report.data import ReportData

STYLE: dict[Any, Any] = {
    "font.size": 9,
    "font.family": "sans-serif",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.frameon": False,
    "legend.fontsize": 8,
    "svg.fonttype": "none",  # text stays text: smaller, and the browser's font
    "image.cmap": "viridis",
}
CMAP = colormaps["viridis"].with_extremes(bad="#eeeeee")  # cells of folds not finished are light grey
TOP = 10  # candidates in the fold-paired plot and the learning curves' pool
HEATMAP_ROWS = 40  # candidates in the fold x candidate heatmap
HEAVY_POINTS = 4000  # above this many marks a figure is a PNG


@dataclass(frozen=True)
class Plot:
    """A rendered figure: its HTML (an inline ``<svg>`` or an ``<img>``) and what it shows."""

    key: str
    html: str
    caption: str


def style() -> AbstractContextManager[None]:
    """The report's matplotlib settings, for as long as figures are drawn (axes read them when made)."""
    return rc_context(STYLE)


def new_figure(width: float, height: float) -> Figure:
    """A figure of ``width`` x ``height`` inches, laid out with constrained layout."""
    return Figure(figsize=(width, height), layout="constrained")


def render(fig: Figure, key: str, caption: str, png: bool = False) -> Plot:
    """The figure as inline SVG (ids salted with ``key``) or, with ``png``, an embedded PNG."""
    with rc_context({**STYLE, "svg.hashsalt": key}):
        if png:
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=110)
            data = base64.b64encode(buffer.getvalue()).decode()
            html = f'<img alt="{escape(caption)}" src="data:image/png;base64,{data}">'
        else:
            text = io.StringIO()
            fig.savefig(text, format="svg", metadata={"Date": None})
            svg = text.getvalue()
            html = svg[svg.index("<svg") :]
            html = re.sub(r"<!--.*?-->", "", html, flags=re.S)  # matplotlib's comments
    return Plot(key, html, caption)


def label(i: int) -> str:
    """How plots name candidate ``i`` (0-based): ``#3``, the leaderboard's candidate number."""
    return f"#{i + 1}"


def fold_paired(data: ReportData, order: Sequence[int]) -> Plot | None:
    """One line per fold across the top candidates (best first): folds that move together are paired."""
    means = data.means()
    top = [i for i in order if not np.isnan(means[i])][:TOP]
    if not top:
        return None
    scores = data.scores()[top]
    k = scores.shape[1]
    fig = new_figure(7.0, 3.4)
    ax = fig.add_subplot()
    x = np.arange(len(top))
    thin = k > 12
    for fold in range(k):
        ax.plot(
            x,
            scores[:, fold],
            marker="o",
            markersize=3,
            linewidth=0.8 if thin else 1.2,
            alpha=0.35 if thin else 0.85,
            label=None if thin else f"fold {fold + 1}",
        )
    ax.plot(x, means[top], color="black", linewidth=2.2, label="mean", zorder=5)
    ax.set_xticks(x, [label(i) for i in top])
    ax.set_xlabel("candidate, best first")
    ax.set_ylabel(data.primary)
    if not thin:
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
    caption = (
        f"{data.primary} of each fold (one line per fold) across the top {len(top)} candidates; the black line is "
        "their mean. Lines that move together mean the folds, not the candidates, make most of the spread."
    )
    return render(fig, "fold-paired", caption)


def fold_heatmap(data: ReportData, order: Sequence[int]) -> Plot | None:
    """Fold x candidate scores for the top candidates; folds not finished are left blank."""
    rows = list(order)[:HEATMAP_ROWS]
    if not rows or np.isnan(data.scores()).all():
        return None
    m = data.scores()[rows]
    k = m.shape[1]
    fig = new_figure(min(2.0 + 0.45 * k, 9.0), min(1.2 + 0.22 * len(rows), 10.0))
    ax = fig.add_subplot()
    ax.grid(False)
    image = ax.imshow(np.ma.masked_invalid(m), aspect="auto", interpolation="nearest", cmap=CMAP)
    ax.set_yticks(range(len(rows)), [label(i) for i in rows])
    step = max(1, math.ceil(k / 20))
    ax.set_xticks(range(0, k, step), [str(f + 1) for f in range(0, k, step)])
    ax.set_xlabel("fold")
    ax.set_ylabel("candidate, best first")
    annotate(ax, m)
    fig.colorbar(image, ax=ax, label=data.primary, shrink=0.8)
    shown = (
        f"the top {len(rows)} of {data.n_candidates} candidates" if len(rows) < data.n_candidates else "every candidate"
    )
    caption = (
        f"{data.primary} per fold and candidate ({shown}); grey cells are folds not finished "
        "(pending, running or failed)."
    )
    return render(fig, "fold-heatmap", caption, png=m.size > HEAVY_POINTS)


def annotate(ax: Any, m: np.ndarray) -> None:
    """Writes each cell's value on a heatmap small enough to read them (white on the dark end of viridis)."""
    if m.size > 150 or np.isnan(m).all():
        return
    low, high = np.nanmin(m), np.nanmax(m)
    for (r, c), value in np.ndenumerate(m):
        if not np.isnan(value):
            dark = high == low or (value - low) / (high - low) < 0.6
            ax.text(c, r, f"{value:.3f}", ha="center", va="center", fontsize=7, color="white" if dark else "black")


def varying_params(data: ReportData) -> list[str]:
    """Parameters that take more than one value in the grid, in ``cv_results_`` order."""
    names = [k.removeprefix("param_") for k in data.results if k.startswith("param_")]
    return [n for n in names if len({_key(p.get(n)) for p in data.results["params"]}) > 1]


def _key(value: Any) -> str:
    return repr(value)


def _sorted_values(values: list[Any]) -> list[Any]:
    """Distinct values: numbers in numeric order, then the others in order of their text (None last)."""
    distinct = list({_key(v): v for v in values}.values())

    def order(v: Any) -> tuple[int, float, str]:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return 0, float(v), ""
        return (2 if v is None else 1), 0.0, str(v)

    return sorted(distinct, key=order)


def _ticks(ax: Any, axis: str, values: list[Any]) -> None:
    """Tick labels for categorical positions, at most 12 of them (every n-th when there are more)."""
    step = max(1, math.ceil(len(values) / 12))
    positions = list(range(0, len(values), step))
    labels = [_short(values[i]) for i in positions]
    rotation = 30 if len(positions) > 4 else 0
    if axis == "x":
        ax.set_xticks(positions, labels, rotation=rotation, ha="right" if rotation else "center")
    else:
        ax.set_yticks(positions, labels)


def param_effects(data: ReportData) -> Plot | None:
    """Score against each parameter's values: every fold as a dot, the mean of candidates' means as a line."""
    names = varying_params(data)
    scores, means = data.scores(), data.means()
    if not names or np.isnan(means).all():
        return None
    cols = min(len(names), 3)
    rows = math.ceil(len(names) / cols)
    most = max(len({_key(p.get(n)) for p in data.results["params"]}) for n in names)
    fig = new_figure(min(3.0 + 0.08 * most, 6.0) * cols + 0.4, 2.6 * rows)
    rng = np.random.default_rng(0)  # jitter, the same on every report
    params = data.results["params"]
    for n, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, n + 1)
        values = _sorted_values([p.get(name) for p in params])
        mean_line = []
        for x, value in enumerate(values):
            members = [i for i, p in enumerate(params) if _key(p.get(name)) == _key(value)]
            folds = scores[members].ravel()
            folds = folds[~np.isnan(folds)]
            ax.scatter(x + rng.uniform(-0.12, 0.12, len(folds)), folds, s=12, alpha=0.5, color="tab:blue", lw=0)
            candidate_means = means[members][~np.isnan(means[members])]
            mean_line.append(candidate_means.mean() if len(candidate_means) else np.nan)
        ax.plot(range(len(values)), mean_line, color="black", marker="o", markersize=4, linewidth=1.5)
        _ticks(ax, "x", values)
        ax.set_xlabel(name)
        ax.set_ylabel(data.primary if n % cols == 0 else "")
    caption = (
        f"{data.primary} against each parameter's values: a dot per fold of every candidate with that value, "
        "the line through the mean of those candidates' means (a marginal mean over the other parameters)."
    )
    heavy = int(np.count_nonzero(~np.isnan(scores))) * len(names) > HEAVY_POINTS
    return render(fig, "param-effects", caption, png=heavy)


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 14 else text[:13] + "…"


def param_heatmap(data: ReportData) -> Plot | None:
    """Mean score over a grid of two parameters (when exactly two vary and every candidate has both)."""
    names = varying_params(data)
    params = data.results["params"]
    if len(names) != 2 or any(n not in p for p in params for n in names):
        return None
    a, b = names
    rows, cols = _sorted_values([p[a] for p in params]), _sorted_values([p[b] for p in params])
    grid = np.full((len(rows), len(cols)), np.nan)
    means = data.means()
    for i, p in enumerate(params):
        r = [_key(v) for v in rows].index(_key(p[a]))
        c = [_key(v) for v in cols].index(_key(p[b]))
        grid[r, c] = means[i]  # one candidate per pair: the other parameters do not vary
    if np.isnan(grid).all():
        return None
    fig = new_figure(min(2.5 + 0.8 * len(cols), 9.0), min(1.5 + 0.45 * len(rows), 8.0))
    ax = fig.add_subplot()
    ax.grid(False)
    image = ax.imshow(np.ma.masked_invalid(grid), aspect="auto", interpolation="nearest", cmap=CMAP)
    _ticks(ax, "x", cols)
    _ticks(ax, "y", rows)
    ax.set_xlabel(b)
    ax.set_ylabel(a)
    annotate(ax, grid)
    fig.colorbar(image, ax=ax, label=f"mean {data.primary}", shrink=0.8)
    caption = f"Mean {data.primary} (over the folds done) for each pair of {a} and {b}."
    return render(fig, "param-heatmap", caption)
