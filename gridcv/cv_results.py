"""What came out of a search, as scikit-learn lays it out: the ``cv_results_`` dict. Pure numpy.

:func:`cv_results` turns the store's fold rows into scikit-learn's
``GridSearchCV.cv_results_`` layout (same keys, same order, same ranking
rule); :mod:`gridcv.results` makes a DataFrame of it, and the refit picks
its candidate from it, so both agree on which candidate is best.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gridcv.store.rows import FoldRow, FoldStatus


def scorer_keys(scoring: str | Sequence[str]) -> list[tuple[str, str]]:
    """(scorer name, column suffix): ``score`` for a single string, as scikit-learn does."""
    if isinstance(scoring, str):
        return [(scoring, "score")]
    return [(name, name) for name in scoring]


def rank(means: np.ndarray) -> np.ndarray:
    """scikit-learn's ranking: best first, ties share the smallest rank, NaN last."""
    if np.isnan(means).all():
        return np.ones(len(means), dtype=np.int32)
    negated = -np.nan_to_num(means, nan=np.nanmin(means) - 1)
    # scipy's rankdata(method="min") without importing scipy: 1 + how many rank strictly better.
    return (np.searchsorted(np.sort(negated), negated, side="left") + 1).astype(np.int32)


def by_candidate(rows: Sequence[FoldRow], current: Sequence[str] | None) -> list[list[FoldRow]]:
    """Fold rows grouped per candidate, in grid order; only the current grid's candidates if given."""
    keep = set(current) if current else None
    groups: dict[str, list[FoldRow]] = {}
    for r in rows:
        if keep is None or r.candidate_id in keep:
            groups.setdefault(r.candidate_id, []).append(r)
    return sorted(groups.values(), key=lambda g: g[0].candidate_index)


def cv_results(
    groups: list[list[FoldRow]], scoring: str | Sequence[str], n_splits: int, train: bool = False
) -> dict[str, Any]:
    """The ``cv_results_`` dict: timings, ``param_<key>`` (lists), ``params``, per scorer the split,
    mean, std and rank columns (train columns with ``train``), then gridcv's fold counts and
    ``partial_mean_test_<s>``. Unfinished folds are NaN, so means are NaN until a candidate is complete."""
    n_splits = max([n_splits, *(r.fold + 1 for g in groups for r in g)])
    by_fold = [{r.fold: r for r in g} for g in groups]

    def matrix(pick: Callable[[FoldRow], float | None]) -> np.ndarray:
        out = np.full((len(groups), n_splits), np.nan)
        for i, folds in enumerate(by_fold):
            for k, r in folds.items():
                value = pick(r)
                out[i, k] = np.nan if value is None else value
        return out

    cols: dict[str, Any] = {}

    def finished(key: str) -> Callable[[FoldRow], float | None]:
        return lambda r: getattr(r, key) if r.status.is_finished() else None

    def scored(name: str, pick: Callable[[FoldRow, str], float | None]) -> Callable[[FoldRow], float | None]:
        return lambda r: pick(r, name) if r.status is FoldStatus.DONE else None

    for key in ("fit_time", "score_time"):
        cols[f"mean_{key}"], cols[f"std_{key}"] = _mean_std(matrix(finished(key)))
    params = [g[0].params for g in groups]
    for name in param_names(params):
        cols[f"param_{name}"] = [p.get(name) for p in params]
    cols["params"] = params
    partial = {}
    for name, suffix in scorer_keys(scoring):
        m = matrix(scored(name, lambda r, n: r.scores.get(n)))
        cols.update(_score_columns(m, "test", suffix))
        cols[f"rank_test_{suffix}"] = rank(cols[f"mean_test_{suffix}"])
        if train:
            t = matrix(scored(name, train_score))
            cols.update(_score_columns(t, "train", suffix))
        with np.errstate(all="ignore"):
            done = ~np.isnan(m)
            partial[f"partial_mean_test_{suffix}"] = np.where(
                done.any(axis=1), np.nansum(m, axis=1) / np.maximum(done.sum(axis=1), 1), np.nan
            )
    for status in (FoldStatus.DONE, FoldStatus.FAILED, FoldStatus.PENDING, FoldStatus.RUNNING):
        cols[f"n_folds_{status.value}"] = np.array([sum(1 for r in g if r.status is status) for g in groups])
    cols.update(partial)
    return cols


def param_names(params: Sequence[dict[str, Any]]) -> list[str]:
    """Parameter names in the order scikit-learn's ``cv_results_`` lists them: first seen first
    (sorted within one grid, since ``ParameterGrid`` sorts each candidate's keys)."""
    return list(dict.fromkeys(k for p in params for k in p))


def param_arrays(params: Sequence[dict[str, Any]]) -> dict[str, np.ma.MaskedArray]:
    """``param_<name>`` as scikit-learn's ``cv_results_`` holds it: a masked array per name, masked
    where a candidate has no such key; numeric dtype when numpy infers one, else object."""
    out = {}
    for name in param_names(params):
        present = {i: p[name] for i, p in enumerate(params) if name in p}
        try:
            inferred = np.array(list(present.values()))
        except ValueError:  # lists of different lengths
            dtype = np.dtype(object)
        else:
            dtype = inferred.dtype if inferred.dtype.kind != "U" and inferred.ndim == 1 else np.dtype(object)
        column = np.ma.MaskedArray(np.empty(len(params), dtype=dtype), mask=True)
        for i, value in present.items():
            column[i] = value  # setting a value unmasks it
        out[f"param_{name}"] = column
    return out


def _score_columns(m: np.ndarray, part: str, suffix: str) -> dict[str, np.ndarray]:
    cols = {f"split{k}_{part}_{suffix}": m[:, k] for k in range(m.shape[1])}
    cols[f"mean_{part}_{suffix}"], cols[f"std_{part}_{suffix}"] = _mean_std(m)
    return cols


def _mean_std(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's mean and standard deviation: NaN where a fold is NaN (as scikit-learn's would be),
    and NaN without numpy's "mean of empty slice" warning in a folder read before its plan was
    stored (no splits yet)."""
    if m.shape[1] == 0:
        return np.full(m.shape[0], np.nan), np.full(m.shape[0], np.nan)
    return m.mean(axis=1), m.std(axis=1)


def train_score(row: FoldRow, name: str) -> float | None:
    """A fold's training score by one scorer (``return_train_score``), or None."""
    value = row.info.get("train_scores", {}).get(name)
    return None if value is None else float(value)


def best_index(results: dict[str, Any], suffix: str) -> int | None:
    """The candidate ranked first by ``mean_test_<suffix>``, or None if none has a score on every fold."""
    means = np.asarray(results[f"mean_test_{suffix}"], dtype=float)
    if np.isnan(means).all():
        return None
    return int(np.asarray(results[f"rank_test_{suffix}"]).argmin())
