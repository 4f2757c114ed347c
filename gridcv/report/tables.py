"""``gridcv.compare`` and ``gridcv.load_history``: the report's numbers as pandas DataFrames.

The report package may import pandas (as :mod:`gridcv.results` does) because
these two public functions return DataFrames and the report is built from
them; ``gridcv status`` and ``gridcv results`` never import this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gridcv.cv_results import param_names
from gridcv.errors import NotAvailableError, ResultsError, did_you_mean
from gridcv.report.data import ReportData, gather
from gridcv.report.stats import ALPHA, ROPE, PairedTest, few_folds_warning, holm, paired_test

COMPARE_COLUMNS = (
    "candidate",
    "params",
    "mean_test",
    "n_folds",
    "mean_difference",
    "corrected_std",
    "t",
    "p_value",
    "p_holm",
    "differs",
    "p_baseline_better",
    "p_equivalent",
    "p_candidate_better",
)


@dataclass(frozen=True)
class Comparison:
    """Every candidate compared with a baseline (see :func:`compare` for the columns)."""

    baseline: int
    scorer: str
    table: pd.DataFrame
    n_train: float
    n_test: float
    rope: float
    alpha: float
    notes: list[str]


def _source(results: Any) -> ReportData:
    """A results folder, an experiment file, a ``SearchResults`` or data already read."""
    if isinstance(results, ReportData):
        return results
    folder = getattr(results, "folder", results)
    if not isinstance(folder, (str, Path)):
        raise TypeError(f"expected a results folder, an experiment file or SearchResults, got {type(results).__name__}")
    return gather(folder)


def compare(
    results: Any, baseline: str | int = "best", *, scorer: str | None = None, rope: float = ROPE, alpha: float = ALPHA
) -> pd.DataFrame:
    """Compares every candidate with a baseline on the folds both finished: which really differ.

    The corrected resampled t-test of Nadeau and Bengio (variance ``(1/k +
    n_test/n_train) s²`` of the per-fold differences, k - 1 degrees of freedom,
    the real split sizes), one-sided (H0: the candidate is at least as good as
    the baseline), Holm-corrected across the candidates; and the Bayesian
    probabilities of scikit-learn's example "Statistical comparison of models
    using grid search" (posterior Student's t, region of practical equivalence
    ``[-rope, rope]``). Scores are "higher is better", as scikit-learn's scorers are.

    Args:
        results: A results folder, the experiment file, or a ``SearchResults``.
        baseline: ``"best"`` (the best candidate by the ranking scorer: the refit scorer,
            else the first; by the mean so far while no candidate is complete) or a
            candidate's index (the row of :func:`gridcv.load_results`).
        scorer: The scorer to compare by (default: the ranking scorer).
        rope: Half-width of the region of practical equivalence, in score units.
        alpha: Level below which a Holm-adjusted p-value says the candidate ``differs``.

    Returns:
        One row per other candidate, best first: ``candidate`` (its index), ``params``,
        ``mean_test`` (mean over its folds done), ``n_folds`` (k, folds both finished),
        ``mean_difference`` (baseline minus candidate), ``corrected_std``, ``t``,
        ``p_value``, ``p_holm``, ``differs`` (``p_holm < alpha``), ``p_baseline_better``,
        ``p_equivalent`` and ``p_candidate_better`` (posterior probabilities that the
        difference is above ``rope``, within it, below ``-rope``). Fewer than two
        shared folds give NaN. ``attrs`` holds ``baseline``, ``baseline_params``,
        ``scorer``, ``n_train``, ``n_test``, ``rope``, ``alpha`` and ``warnings``
        (fewer than 10 folds, split sizes estimated).

    Raises:
        ResultsError: No results there, an unknown scorer, or a baseline that is not a candidate.
        NotAvailableError: No fold is done yet.
    """
    data = _source(results)
    found = comparison(data, baseline, scorer, rope, alpha)
    if found is None:
        raise NotAvailableError(f"no fold of {data.folder} is done yet, so there is nothing to compare.")
    table = found.table
    table.attrs.update(
        baseline=found.baseline,
        baseline_params=dict(data.results["params"][found.baseline]),
        scorer=found.scorer,
        n_train=found.n_train,
        n_test=found.n_test,
        rope=found.rope,
        alpha=found.alpha,
        warnings=found.notes,
    )
    return table


def comparison(
    data: ReportData, baseline: str | int = "best", scorer: str | None = None, rope: float = ROPE, alpha: float = ALPHA
) -> Comparison | None:
    """:func:`compare`'s statistics with what the report says of them; None when no fold is done."""
    scorer = scorer or data.primary
    if scorer not in data.scorers:
        raise ResultsError(
            f"{data.folder} has no scorer {scorer!r}{did_you_mean(scorer, data.scorers, aside=True)}; "
            f"its scorers are {', '.join(data.scorers)}."
        )
    scores = data.scores(scorer)
    means = data.means(scorer)
    if np.isnan(means).all():
        return None
    if baseline == "best":
        base = next(i for i in data.order(scorer) if not np.isnan(means[i]))
    elif isinstance(baseline, (int, np.integer)) and not isinstance(baseline, bool) and 0 <= baseline < len(means):
        base = int(baseline)
    else:
        raise ResultsError(
            f"baseline={baseline!r} is not a candidate of {data.folder}: pass 'best' or a candidate's index "
            f"(0 to {len(means) - 1}, the rows of gridcv.load_results)."
        )
    sizes = data.split_sizes
    others = [i for i in data.order(scorer) if i != base]
    tests = [paired_test(scores[base], scores[i], sizes.n_train, sizes.n_test, rope) for i in others]
    table = _table(data, others, means, tests, alpha)
    notes = [note for note in (few_folds_warning(data.n_splits, _splitter(data)), sizes.note) if note]
    if any(t.n_folds < data.n_splits for t in tests):
        notes.append(
            "Some candidates do not share every fold with the baseline yet (folds not finished or failed): "
            "they are compared on the folds both finished, and with fewer than two nothing is said of them."
        )
    return Comparison(base, scorer, table, sizes.n_train, sizes.n_test, rope, alpha, notes)


def _table(data: ReportData, others: list[int], means: np.ndarray, tests: list[PairedTest], alpha: float) -> Any:
    p_holm = holm(np.array([t.p_value for t in tests]))
    records = []
    for i, test, adjusted in zip(others, tests, p_holm, strict=True):
        records.append(
            {
                "candidate": i,
                "params": data.results["params"][i],
                "mean_test": means[i],
                "n_folds": test.n_folds,
                "mean_difference": test.mean_difference,
                "corrected_std": test.corrected_std,
                "t": test.t,
                "p_value": test.p_value,
                "p_holm": adjusted,
                "differs": bool(adjusted < alpha),
                "p_baseline_better": test.p_baseline_better,
                "p_equivalent": test.p_equivalent,
                "p_candidate_better": test.p_candidate_better,
            }
        )
    return pd.DataFrame.from_records(records, columns=list(COMPARE_COLUMNS))


def _splitter(data: ReportData) -> str | None:
    cv = data.experiment.get("cv")
    return str(cv.get("splitter", "StratifiedKFold")) if isinstance(cv, dict) else None


def load_history(results: Any) -> pd.DataFrame:
    """The per-epoch metrics of every fold that recorded them (Keras's history), one row per fold and epoch.

    Args:
        results: A results folder, the experiment file, or a ``SearchResults``.

    Returns:
        Columns ``task_id``, ``candidate``, ``params``, ``param_<key>``, ``fold``, ``status``,
        ``epoch`` (1-based), then one column per Keras metric of the history, sorted
        (``loss``, ``val_loss``, ``accuracy``, ``learning_rate``...; NaN where a fold did not
        record it). Folds of the current grid that are done, failed, or stopped after some
        epochs (a fold still training has no history in the store yet).
    """
    data = _source(results)
    keys = param_names([r.params for r in data.rows])
    metrics = sorted({m for r in data.rows for m in r.history})
    records = []
    for r in data.rows:
        length = max((len(v) for v in r.history.values()), default=0)
        for e in range(length):
            rec: dict[str, Any] = {"task_id": r.task_id, "candidate": r.candidate_index, "params": r.params}
            rec.update({f"param_{k}": r.params.get(k) for k in keys})
            rec.update({"fold": r.fold, "status": r.status.value, "epoch": e + 1})
            rec.update({m: _at(r.history.get(m), e) for m in metrics})
            records.append(rec)
    columns = ["task_id", "candidate", "params", *(f"param_{k}" for k in keys), "fold", "status", "epoch", *metrics]
    return pd.DataFrame.from_records(records, columns=columns)


def _at(values: list[float] | None, i: int) -> float:
    return float(values[i]) if values is not None and i < len(values) else np.nan
