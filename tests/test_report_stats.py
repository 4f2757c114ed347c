"""Which candidates really differ: the statistics against hand computations and scikit-learn's example.

The hand computations use the published formulas (Nadeau and Bengio's
corrected variance, Holm's step-down, the Student t posterior of Benavoli et
al.) with the closed form of Student's t distribution for 4 degrees of
freedom, so they need no SciPy: on the fold scores below the corrected t is
exactly 8/3 and its one-sided p-value exactly 0.028.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import gridcv
from gridcv.errors import NotAvailableError, ResultsError
from gridcv.report.stats import few_folds_warning, holm, paired_test
from tests.report_stores import SyntheticRun, fast_folder

BEST = [0.90, 0.85, 0.88, 0.92, 0.87]
OTHER = [0.88, 0.84, 0.85, 0.91, 0.86]  # differences 0.02, 0.01, 0.03, 0.01, 0.01


def t4_cdf(t: float) -> float:
    """Student's t CDF with 4 degrees of freedom, in closed form."""
    x = t / math.sqrt(1 + t * t / 4)
    return 0.5 + 3 / 8 * x * (1 - t * t / (12 * (1 + t * t / 4)))


def test_the_corrected_t_test_matches_the_formula_worked_by_hand():
    # mean d = 0.016; var(d, ddof=1) = 320e-6 / 4 = 80e-6; corrected by (1/5 + 20/80) = 0.45 -> 36e-6
    test = paired_test(np.array(BEST), np.array(OTHER), n_train=80, n_test=20)
    assert test.n_folds == 5
    assert test.mean_difference == pytest.approx(0.016)
    assert test.corrected_std == pytest.approx(0.006)
    assert test.t == pytest.approx(8 / 3)
    assert t4_cdf(8 / 3) == pytest.approx(0.972)  # the closed form: 1/2 + 3/8 * 8/5 * (1 - 2.56/12)
    assert test.p_value == pytest.approx(0.028)
    # Posterior t(4, loc 0.016, scale 0.006); ROPE +-0.01 -> standardised bounds -1 and -13/3.
    assert test.p_baseline_better == pytest.approx(t4_cdf(1.0))  # P(mu > 0.01) = P(T > -1)
    assert test.p_candidate_better == pytest.approx(1 - t4_cdf(13 / 3))  # P(mu < -0.01)
    assert test.p_equivalent == pytest.approx(t4_cdf(13 / 3) - t4_cdf(1.0))
    assert (round(test.p_baseline_better, 4), round(test.p_equivalent, 4)) == (0.8130, 0.1808)


def test_the_uncorrected_variance_would_be_smaller_by_the_overlap_term():
    d = np.array(BEST) - np.array(OTHER)
    naive = math.sqrt(np.var(d, ddof=1) / 5)
    test = paired_test(np.array(BEST), np.array(OTHER), n_train=80, n_test=20)
    assert test.corrected_std / naive == pytest.approx(math.sqrt((1 / 5 + 20 / 80) * 5))


def test_folds_not_finished_by_both_are_left_out_and_fewer_than_two_give_nan():
    best = np.array([0.9, np.nan, 0.88, 0.92, 0.87])
    other = np.array([0.88, 0.84, np.nan, 0.91, 0.86])
    test = paired_test(best, other, 80, 20)
    assert test.n_folds == 3
    assert test.mean_difference == pytest.approx(np.mean([0.02, 0.01, 0.01]))
    one = paired_test(np.array([0.9, np.nan]), np.array([0.8, 0.7]), 80, 20)
    assert one.n_folds == 1 and one.mean_difference == pytest.approx(0.1) and math.isnan(one.p_value)


def test_identical_differences_on_every_fold_are_a_point_mass():
    same = paired_test(np.array([0.9, 0.8, 0.7]), np.array([0.9, 0.8, 0.7]), 80, 20)
    assert (same.p_value, same.p_baseline_better, same.p_equivalent, same.p_candidate_better) == (1.0, 0, 1, 0)
    shifted = paired_test(np.array([0.9, 0.8, 0.7]), np.array([0.85, 0.75, 0.65]), 80, 20)
    assert (shifted.p_value, shifted.t, shifted.p_baseline_better) == (0.0, math.inf, 1.0)


def test_holm_adjusts_step_down_and_keeps_nan_out_of_the_family():
    # sorted 0.01, 0.03, 0.04, 0.5 -> 4*0.01, 3*0.03, max(0.09, 2*0.04), max(0.09, 0.5)
    adjusted = holm(np.array([0.01, 0.04, 0.03, np.nan, 0.5]))
    assert adjusted[[0, 1, 2, 4]] == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert math.isnan(adjusted[3])
    assert holm(np.array([0.4, 0.6])) == pytest.approx([0.8, 0.8])  # capped at 1 only when needed
    assert holm(np.array([0.7, 0.6])) == pytest.approx([1.0, 1.0])


def test_the_warning_for_few_folds_names_the_fix():
    assert few_folds_warning(10, "StratifiedKFold") is None
    assert few_folds_warning(5, "StratifiedKFold") == (
        "Only 5 folds: the t-test has 4 degrees of freedom, so only large differences can be told apart and "
        "most candidates will look indistinguishable from the best. For a sharper comparison, repeat the "
        "cross-validation: cv: {splitter: RepeatedStratifiedKFold, n_splits: 5, n_repeats: 2} (10 folds) or "
        "more repeats."
    )
    assert "cv: {splitter: RepeatedKFold," in str(few_folds_warning(3, "KFold"))


def test_scikit_learns_example_gives_its_published_numbers():
    """scikit-learn's "Statistical comparison of models using grid search", run as published: the rbf SVC
    against the linear one and the degree-3 polynomial one, on 10 x 10-fold repeated cross-validation."""
    from sklearn.datasets import make_moons
    from sklearn.model_selection import GridSearchCV, RepeatedStratifiedKFold
    from sklearn.svm import SVC

    X, y = make_moons(noise=0.352, random_state=1, n_samples=100)
    grid = [{"kernel": ["linear"]}, {"kernel": ["poly"], "degree": [2, 3]}, {"kernel": ["rbf"]}]
    cv = RepeatedStratifiedKFold(n_splits=10, n_repeats=10, random_state=0)
    search = GridSearchCV(SVC(random_state=0), grid, scoring="roc_auc", cv=cv).fit(X, y)
    r = search.cv_results_
    scores = {str(p): np.array([r[f"split{k}_test_score"][i] for k in range(100)]) for i, p in enumerate(r["params"])}
    train, test = next(cv.split(X, y))
    rbf, linear = scores["{'kernel': 'rbf'}"], scores["{'kernel': 'linear'}"]
    poly3 = scores["{'degree': 3, 'kernel': 'poly'}"]
    first = paired_test(rbf, linear, len(train), len(test))
    # The example prints "Corrected t-value: 0.750, Corrected p-value: 0.227" and says: rbf has about a 6.8%
    # chance of being worse than linear and 1.8% than 3_poly; 43% of being practically equivalent to linear,
    # 10% to 3_poly.
    assert (round(first.t, 3), round(first.p_value, 3)) == (0.750, 0.227)
    assert (round(first.p_candidate_better, 3), round(first.p_equivalent, 2)) == (0.068, 0.43)
    second = paired_test(rbf, poly3, len(train), len(test))
    assert (round(second.p_candidate_better, 3), round(second.p_equivalent, 2)) == (0.018, 0.10)


def _folder(tmp_path, split_sizes=((80, 20),) * 5, scoring="accuracy"):
    return SyntheticRun(tmp_path / "results", [{"units": u} for u in (4, 8, 16)], 5, scoring, list(split_sizes))


def test_compare_uses_the_real_split_sizes_and_ranks_by_the_best(tmp_path):
    sizes = [(80, 20), (79, 21), (81, 19), (80, 20), (80, 20)]  # means 80 and 20
    with fast_folder(tmp_path) as folder:
        run = _folder(folder, sizes)
        for f, noise in enumerate([0.05, -0.04, 0.03, -0.02, 0.0]):
            run.done(0, f, OTHER[f])
            run.done(1, f, BEST[f])
            run.done(2, f, BEST[f] - noise)  # mean difference 0.004: p about 0.44
        table = gridcv.compare(run.folder)
    assert table.attrs["baseline"] == 1 and table.attrs["baseline_params"] == {"units": 8}
    assert (table.attrs["n_train"], table.attrs["n_test"], table.attrs["scorer"]) == (80.0, 20.0, "accuracy")
    assert table["candidate"].tolist() == [2, 0]  # best first: 0.880, then 0.868
    assert table["t"][1] == pytest.approx(8 / 3) and table["p_value"][1] == pytest.approx(0.028)
    # Holm: the smaller p-value (0.028) is doubled, the larger one kept (it is above 0.056).
    assert table["p_holm"][1] == pytest.approx(2 * 0.028) and table["p_holm"][0] == table["p_value"][0]
    assert table["corrected_std"][0] == pytest.approx(math.sqrt(1330e-6 * 0.45))
    assert table["differs"].tolist() == [False, False]  # 0.056 >= 0.05: not told apart on 5 folds
    assert table.attrs["warnings"] == [few_folds_warning(5, "StratifiedKFold")]


def test_compare_estimates_split_sizes_for_an_older_folder_and_says_so(tmp_path):
    with fast_folder(tmp_path) as folder:
        run = SyntheticRun(folder / "results", [{"units": 4}, {"units": 8}], 5, split_sizes=None)
        for f in range(5):
            run.done(0, f, OTHER[f])
            run.done(1, f, BEST[f])
        table = gridcv.compare(run.folder)
    assert (table.attrs["n_train"], table.attrs["n_test"]) == (80.0, 20.0)  # 72 fit + 8 monitored; 1/(5-1)
    assert table.attrs["warnings"][1].startswith("this folder's gridcv did not record split sizes")


def test_compare_takes_any_baseline_and_any_higher_is_better_scorer(tmp_path):
    with fast_folder(tmp_path) as folder:
        run = _folder(folder, scoring=["neg_mean_squared_error", "r2"])
        for f in range(5):
            for c, shift in enumerate((0.0, -0.5, -0.02)):
                r2 = 0.5 - shift if c == 1 else 0.5 + shift  # by r2, candidate 1 is the best
                run.done(c, f, {"neg_mean_squared_error": -1.0 + shift + 0.01 * f, "r2": r2})
        table = gridcv.compare(run.folder, baseline=2)
        by_r2 = gridcv.compare(run.folder, scorer="r2")
        with pytest.raises(ResultsError) as unknown:
            gridcv.compare(run.folder, scorer="neg_mean_square_error")
        with pytest.raises(ResultsError) as bad:
            gridcv.compare(run.folder, baseline=7)
    assert table.attrs["baseline"] == 2 and table["candidate"].tolist() == [0, 1]
    assert table["mean_difference"].tolist() == pytest.approx([-0.02, 0.48])  # the baseline is worse than #0
    assert table["p_value"][0] == 1.0 and table["p_candidate_better"][0] == 1.0
    assert table["differs"].tolist() == [False, True]  # 0.48 worse on every fold: p = 0
    assert by_r2.attrs["baseline"] == 1 and by_r2.attrs["scorer"] == "r2"  # the best by the scorer compared
    assert by_r2["candidate"].tolist() == [0, 2]
    assert str(unknown.value) == (
        f"{run.folder.resolve()} has no scorer 'neg_mean_square_error' (did you mean 'neg_mean_squared_error'?); "
        "its scorers are neg_mean_squared_error, r2."
    )
    assert str(bad.value) == (
        f"baseline=7 is not a candidate of {run.folder.resolve()}: pass 'best' or a candidate's index "
        "(0 to 2, the rows of gridcv.load_results)."
    )


def test_compare_before_any_fold_is_done_says_so(tmp_path):
    with fast_folder(tmp_path) as folder:
        run = _folder(folder)
        with pytest.raises(NotAvailableError) as info:
            gridcv.compare(run.folder)
    assert str(info.value) == f"no fold of {run.folder.resolve()} is done yet, so there is nothing to compare."
