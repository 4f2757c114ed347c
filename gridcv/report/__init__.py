"""The cross-validation report: one self-contained HTML file, and its numbers as DataFrames.

- :func:`write_report` (``gridcv report FOLDER``; ``gridcv run`` writes one at the end).
- :func:`compare` (``gridcv.compare``): which candidates really differ from the best.
- :func:`load_history` (``gridcv.load_history``): the per-epoch metrics of every fold.

The only package besides :mod:`gridcv.results` that imports pandas, and the only
one that imports matplotlib (without pyplot: no GUI backend). Names are
imported on first use, so importing this package imports neither.

- :mod:`~gridcv.report.data`: the folder read once (store, experiment copy, lock).
- :mod:`~gridcv.report.stats`: the corrected t-test, Holm, the Bayesian probabilities (numpy, SciPy).
- :mod:`~gridcv.report.tables`: ``compare`` and ``load_history`` (pandas).
- :mod:`~gridcv.report.figures`, :mod:`~gridcv.report.figures_runs`: the plots (matplotlib).
- :mod:`~gridcv.report.page`, :mod:`~gridcv.report.sections`: the HTML.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gridcv.lazy import lazy_names

if TYPE_CHECKING:
    from gridcv.report.build import write_report
    from gridcv.report.tables import compare, load_history

_LAZY = {
    "write_report": "gridcv.report.build",
    "compare": "gridcv.report.tables",
    "load_history": "gridcv.report.tables",
}


__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals())


__all__ = ["compare", "load_history", "write_report"]
