"""``gridcv report``: a results folder becomes one self-contained HTML file."""

from __future__ import annotations

from pathlib import Path

from gridcv.atomic import write_atomic
from gridcv.report import figures, figures_runs, sections
from gridcv.report.data import ReportData, gather
from gridcv.report.page import page
from gridcv.report.tables import Comparison, comparison

REPORT_NAME = "report.html"


def write_report(path: str | Path, output: str | Path | None = None) -> Path:
    """Writes the HTML report of a results folder (read-only: it works mid-run and after a crash).

    Args:
        path: A results folder (``results/<name>``) or the experiment file.
        output: Where to write the report (default: ``<results>/report.html``).

    Returns:
        The path written.

    Raises:
        ResultsError: There are no results at ``path``.
    """
    data = gather(path)
    target = Path(output) if output is not None else data.folder / REPORT_NAME
    write_atomic(target, render_report(data).encode("utf-8"))
    return target


def render_report(data: ReportData) -> str:
    """The report's HTML."""
    order = data.order()
    compared = comparison(data)
    with figures.style():
        parts = _sections(data, order, compared)
    return page(f"{data.name}: gridcv report", parts, sections.header(data))


def _sections(data: ReportData, order: list[int], compared: Comparison | None) -> list[tuple[str, str, str]]:
    """(anchor, title, HTML) of each section after the header, plots drawn."""
    return [
        ("leaderboard", "Leaderboard", sections.leaderboard(data, order, compared)),
        ("comparison", "Which candidates really differ", sections.comparison_section(data, compared, order)),
        (
            "folds",
            "Folds",
            sections.figures(
                [figures.fold_paired(data, order), figures.fold_heatmap(data, order)], "No fold is done yet."
            ),
        ),
        (
            "hyperparameters",
            "Hyperparameters",
            sections.figures(
                [figures.param_effects(data), figures.param_heatmap(data)],
                "The grid has a single candidate, or no fold is done yet: no parameter's effect to show.",
            ),
        ),
        (
            "training",
            "Learning curves",
            sections.figures(
                [figures_runs.learning_curves(data, order)], "No fold has recorded its per-epoch history yet."
            ),
        ),
        (
            "reliability",
            "Reliability",
            sections.figures([figures_runs.timeline(data), figures_runs.memory(data)], "No attempt has started yet.")
            + sections.failures(data),
        ),
    ]
