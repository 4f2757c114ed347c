"""Which candidates really differ: paired statistics on the folds two candidates share. numpy + SciPy.

Every candidate is scored on the same splits, so its fold scores are paired
with the baseline's: a split that is easy for one is easy for all. The tests
work on the per-fold differences ``d_i = baseline_i - candidate_i`` (scores
are "higher is better", as every scikit-learn scorer is, ``neg_*`` ones
included).

- The corrected resampled t-test of Nadeau and Bengio (2003): the training sets
  of k-fold cross-validation overlap, so the folds' differences are correlated
  and the plain paired t-test's variance ``s²/k`` is too small. It is
  corrected to ``(1/k + n_test/n_train) s²``, with k - 1 degrees of freedom;
  the p-value is one-sided (H0: the candidate is at least as good as the
  baseline), as in scikit-learn's example "Statistical comparison of models
  using grid search".
- Holm's step-down correction over the candidates compared with one baseline.
- The Bayesian counterpart (Benavoli et al., 2017, as in the same example):
  the posterior of the mean difference is Student's t with k - 1 degrees of
  freedom, location ``mean(d)`` and the corrected scale, split into three
  probabilities by a region of practical equivalence ``[-rope, rope]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ROPE = 0.01  # scores closer than this are "practically equivalent" (scikit-learn's example)
ALPHA = 0.05  # Holm-adjusted p-values below this say "the baseline is better"
FEW_FOLDS = 10  # below this many folds the warning suggests repeated cross-validation


@dataclass(frozen=True)
class PairedTest:
    """The comparison of a baseline with one candidate on the folds both finished.

    Attributes:
        n_folds: Folds both finished (k); the test has k - 1 degrees of freedom.
        mean_difference: Mean of baseline minus candidate over those folds.
        corrected_std: ``sqrt((1/k + n_test/n_train) * var(d, ddof=1))``.
        t: The corrected t statistic (NaN with fewer than two folds).
        p_value: One-sided p-value of H0 "the candidate is at least as good".
        p_baseline_better: Posterior probability that the baseline is better by more than the ROPE.
        p_equivalent: Posterior probability that the difference lies within the ROPE.
        p_candidate_better: Posterior probability that the candidate is better by more than the ROPE.
    """

    n_folds: int
    mean_difference: float
    corrected_std: float
    t: float
    p_value: float
    p_baseline_better: float
    p_equivalent: float
    p_candidate_better: float


def corrected_std(differences: np.ndarray, n_train: float, n_test: float) -> float:
    """Nadeau and Bengio's standard deviation of the mean difference: ``sqrt((1/k + n_test/n_train) s²)``.

    Args:
        differences: The per-fold differences (k of them, k >= 2).
        n_train: Samples in a training split (the mean over the folds when they differ).
        n_test: Samples in a test split (likewise).
    """
    d = np.asarray(differences, dtype=float)
    return math.sqrt(float(np.var(d, ddof=1)) * (1.0 / len(d) + n_test / n_train))


def paired_test(
    baseline: np.ndarray, candidate: np.ndarray, n_train: float, n_test: float, rope: float = ROPE
) -> PairedTest:
    """Compares two candidates' scores on the folds both have (NaN marks a fold not finished).

    Args:
        baseline: The baseline's score per fold.
        candidate: The candidate's score per fold, same folds in the same order.
        n_train: Samples in a training split.
        n_test: Samples in a test split.
        rope: Half-width of the region of practical equivalence, in score units.

    Returns:
        The statistics; with fewer than two shared folds every statistic is NaN.
    """
    from scipy.stats import t as student  # SciPy only when statistics are computed

    a, b = np.asarray(baseline, dtype=float), np.asarray(candidate, dtype=float)
    both = ~np.isnan(a) & ~np.isnan(b)
    d = a[both] - b[both]
    k = len(d)
    if k < 2:
        nan = math.nan
        return PairedTest(k, float(d.mean()) if k else nan, nan, nan, nan, nan, nan, nan)
    mean, std = float(d.mean()), corrected_std(d, n_train, n_test)
    if np.ptp(d) <= 1e-12:  # every fold differs by the same amount (to rounding): a point mass at the mean
        p = 1.0 if mean <= 0 else 0.0
        where = 0 if mean > rope else (2 if mean < -rope else 1)
        probs = [float(i == where) for i in range(3)]
        return PairedTest(k, mean, 0.0, math.copysign(math.inf, mean) if mean else math.nan, p, *probs)
    t = mean / std
    posterior = student(k - 1, loc=mean, scale=std)
    below, above = float(posterior.cdf(-rope)), float(posterior.cdf(rope))
    return PairedTest(k, mean, std, t, float(student.sf(t, k - 1)), 1.0 - above, above - below, below)


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN entries are left out of the family and stay NaN).

    The i-th smallest of m p-values becomes ``max_{j <= i} min(1, (m - j + 1) p_(j))``.
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    present = np.flatnonzero(~np.isnan(p))
    m = len(present)
    order = present[np.argsort(p[present], kind="stable")]
    running = 0.0
    for i, index in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[index]))
        out[index] = running
    return out


def few_folds_warning(k: int, splitter: str | None) -> str | None:
    """The plain-words warning for a comparison on fewer than :data:`FEW_FOLDS` folds, or None."""
    if k >= FEW_FOLDS:
        return None
    repeated = "RepeatedStratifiedKFold" if splitter is None or "Stratified" in splitter else "RepeatedKFold"
    return (
        f"Only {k} folds: the t-test has {max(k - 1, 0)} degrees of freedom, so only large differences "
        "can be told apart and most candidates will look indistinguishable from the best. For a sharper "
        f"comparison, repeat the cross-validation: cv: {{splitter: {repeated}, n_splits: 5, n_repeats: 2}} "
        "(10 folds) or more repeats."
    )
