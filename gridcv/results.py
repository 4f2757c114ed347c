"""Results as pandas DataFrames: the only module that builds them.

:func:`load_results` lays candidates out exactly like scikit-learn's
``GridSearchCV.cv_results_`` (same column names, same order, same ranking
rule), then adds gridcv's own columns. It reads the store read-only, so it
works while a run is writing: folds not finished yet are NaN.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from gridcv.store import DB_NAME, ResultStore


def results_folder(path: str | Path) -> Path:
    """The results folder for a results folder or an experiment file."""
    p = Path(path).expanduser()
    if p.is_file() and p.suffix in {".yaml", ".yml"} and not (p.parent / DB_NAME).exists():
        from gridcv.config import load_experiment

        return load_experiment(p).output_dir()
    if p.is_file() and p.name == DB_NAME:
        return p.parent
    return p.resolve()


def _scorer_keys(scoring: str | list[str]) -> list[tuple[str, str]]:
    """(scorer name, column suffix): ``score`` for a single string, as scikit-learn does."""
    if isinstance(scoring, str):
        return [(scoring, "score")]
    return [(name, name) for name in scoring]


def _rank(means: np.ndarray) -> np.ndarray:
    """scikit-learn's ranking: best first, ties share the smallest rank, NaN last."""
    if np.isnan(means).all():
        return np.ones(len(means), dtype=np.int32)
    filled = np.nan_to_num(means, nan=np.nanmin(means) - 1)
    return rankdata(-filled, method="min").astype(np.int32)


def _param_column(values: list[Any]) -> pd.Series:
    """Numeric dtype when every candidate has a number (as scikit-learn >= 1.5 does), else object."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present) and len(present) == len(values):
        return pd.Series(values, dtype="int64")
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return pd.Series([np.nan if v is None else v for v in values], dtype=float)
    return pd.Series(values, dtype=object)


def load_results(path: str | Path) -> pd.DataFrame:
    """One row per candidate, laid out like scikit-learn's ``cv_results_``.

    Args:
        path: A results folder (``results/<name>``) or the experiment file.

    Returns:
        Columns ``mean_fit_time``, ``std_fit_time``, ``mean_score_time``,
        ``std_score_time``, ``param_<key>``, ``params``, then per scorer
        ``split<k>_test_<s>``, ``mean_test_<s>``, ``std_test_<s>``,
        ``rank_test_<s>`` (``<s>`` is ``score`` when scoring is one string),
        and with ``return_train_score`` ``split<k>_train_<s>``, ``mean_train_<s>``,
        ``std_train_<s>``, then gridcv's ``n_folds_done``, ``n_folds_failed``, ``n_folds_pending``
        and ``partial_mean_test_<s>`` (the mean over the folds done so far).
        Unfinished folds are NaN, so means are NaN until a candidate is complete.

    Raises:
        ResultsError: There are no results at ``path``.
    """
    folder = results_folder(path)
    with ResultStore.open(folder, readonly=True) as store:
        rows = store.fold_rows()
        scoring = store.get_meta("scoring")
        train = bool(store.get_meta("return_train_score"))
        current = store.get_meta("candidates")
        n_splits = int(store.get_meta("n_splits") or 0)
    keep = set(current) if current else None
    by_candidate: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if keep is None or r["candidate_id"] in keep:
            by_candidate.setdefault(r["candidate_id"], []).append(r)
    groups = sorted(by_candidate.values(), key=lambda g: g[0]["candidate_index"])
    n_splits = max([n_splits, *(r["fold"] + 1 for g in groups for r in g)])
    results = _cv_results(groups, _scorer_keys(scoring or "score"), n_splits, train)
    results.attrs["scoring"] = scoring or "score"  # what ranked_table needs, without reopening the store
    return results


def _cv_results(
    groups: list[list[dict[str, Any]]], scorers: list[tuple[str, str]], n_splits: int, train: bool = False
) -> pd.DataFrame:
    n = len(groups)
    by_fold = [{r["fold"]: r for r in g} for g in groups]

    def matrix(pick: Any) -> np.ndarray:
        out = np.full((n, n_splits), np.nan)
        for i, folds in enumerate(by_fold):
            for k, r in folds.items():
                value = pick(r)
                out[i, k] = np.nan if value is None else value
        return out

    cols: dict[str, Any] = {}
    for key in ("fit_time", "score_time"):
        m = matrix(lambda r, key=key: r[key] if r["status"] in ("done", "failed") else None)
        cols[f"mean_{key}"] = m.mean(axis=1)
        cols[f"std_{key}"] = m.std(axis=1)
    params = [g[0]["params"] for g in groups]
    for name in sorted({k for p in params for k in p}):
        cols[f"param_{name}"] = _param_column([p.get(name) for p in params])
    cols["params"] = params
    partial = {}
    for name, suffix in scorers:
        m = matrix(lambda r, name=name: r["scores"].get(name) if r["status"] == "done" else None)
        for k in range(n_splits):
            cols[f"split{k}_test_{suffix}"] = m[:, k]
        cols[f"mean_test_{suffix}"] = m.mean(axis=1)
        cols[f"std_test_{suffix}"] = m.std(axis=1)
        cols[f"rank_test_{suffix}"] = _rank(cols[f"mean_test_{suffix}"])
        if train:
            t = matrix(lambda r, name=name: _train_score(r, name) if r["status"] == "done" else None)
            for k in range(n_splits):
                cols[f"split{k}_train_{suffix}"] = t[:, k]
            cols[f"mean_train_{suffix}"] = t.mean(axis=1)
            cols[f"std_train_{suffix}"] = t.std(axis=1)
        with np.errstate(all="ignore"):
            done = ~np.isnan(m)
            partial[f"partial_mean_test_{suffix}"] = np.where(
                done.any(axis=1), np.nansum(m, axis=1) / np.maximum(done.sum(axis=1), 1), np.nan
            )
    for status in ("done", "failed", "pending", "running"):
        cols[f"n_folds_{status}"] = [sum(1 for r in g if r["status"] == status) for g in groups]
    cols.update(partial)
    return pd.DataFrame(cols)


def _train_score(row: dict[str, Any], name: str) -> float | None:
    value = (row.get("info") or {}).get("train_scores", {}).get(name)
    return None if value is None else float(value)


def load_folds(path: str | Path) -> pd.DataFrame:
    """One row per fold task: parameters, fold, status, scores, timings, seed, error.

    Args:
        path: A results folder or the experiment file.

    Returns:
        Columns ``task_id``, ``candidate_index``, ``params``, ``param_<key>``,
        ``fold``, ``status``, ``attempts``, ``test_<scorer>`` per scorer,
        ``fit_time``, ``score_time``, ``epochs_run``, ``batch_size``,
        ``accumulation_steps``, ``effective_batch_size``, ``seed``, ``cause``,
        ``error``, ``message``, ``peak_rss``, ``worker_id``, ``worker_folds``,
        ``started_at``, ``finished_at``; then the training details: ``train_<scorer>``
        (with ``return_train_score``), ``precision``, ``best_epoch`` and
        ``stopped_epoch`` (1-based; ``stopped_epoch`` is set when a callback ended
        training early), ``model_path`` (``model_checkpoint``), and
        ``best_<metric>`` per Keras metric of the history (``best_val_loss``, ...).
    """
    folder = results_folder(path)
    with ResultStore.open(folder, readonly=True) as store:
        rows = store.fold_rows()
        scoring = store.get_meta("scoring") or []
        train = bool(store.get_meta("return_train_score"))
    names = [scoring] if isinstance(scoring, str) else list(scoring)
    keys = sorted({k for r in rows for k in (r["params"] or {})})
    metrics = sorted({m for r in rows for m in (r.get("info") or {}).get("history_best", {})})
    records = []
    for r in rows:
        rec: dict[str, Any] = {"task_id": r["task_id"], "candidate_index": r["candidate_index"], "params": r["params"]}
        rec.update({f"param_{k}": r["params"].get(k) for k in keys})
        rec.update({k: r[k] for k in ("fold", "status", "attempts")})
        rec.update({f"test_{n}": r["scores"].get(n, np.nan) for n in names})
        rec.update({k: r[k] for k in ("fit_time", "score_time", "epochs_run", "batch_size", "accumulation_steps")})
        b, a = r["batch_size"], r["accumulation_steps"]
        rec["effective_batch_size"] = b * a if b and a else None
        rec.update(
            {
                k: r[k]
                for k in (
                    "seed",
                    "cause",
                    "error",
                    "message",
                    "peak_rss",
                    "worker_id",
                    "worker_folds",
                    "started_at",
                    "finished_at",
                )
            }
        )
        info = r.get("info") or {}
        if train:
            rec.update({f"train_{n}": _train_score(r, n) for n in names})
        rec.update({k: info.get(k) for k in ("precision", "best_epoch", "stopped_epoch", "model_path")})
        rec["gpu_peak_memory"] = info.get("gpu_peak_memory")
        rec.update({f"best_{m}": info.get("history_best", {}).get(m, np.nan) for m in metrics})
        records.append(rec)
    return pd.DataFrame.from_records(records)


def load_attempts(path: str | Path) -> pd.DataFrame:
    """One row per attempt at a fold: outcome, batch size, memory, worker, times."""
    with ResultStore.open(results_folder(path), readonly=True) as store:
        return pd.DataFrame.from_records(store.attempt_rows())


def ranked_table(results: pd.DataFrame) -> pd.DataFrame:
    """A compact view for the terminal: rank, params, mean ± std per scorer, folds done.

    ``results`` comes from :func:`load_results`, which records its scoring in ``attrs``.
    """
    keys = _scorer_keys(results.attrs["scoring"])
    first = keys[0][1]
    out = pd.DataFrame({"rank": results[f"rank_test_{first}"]})
    for c in [c for c in results.columns if c.startswith("param_")]:
        out[c.removeprefix("param_")] = results[c]
    for name, suffix in keys:
        out[f"mean_{name}"] = results[f"mean_test_{suffix}"].round(4)
        out[f"std_{name}"] = results[f"std_test_{suffix}"].round(4)
    out["folds_done"] = results["n_folds_done"]
    out["failed"] = results["n_folds_failed"]
    out["mean_fit_s"] = results["mean_fit_time"].round(1)
    return out.sort_values(["rank", "folds_done"], ascending=[True, False]).reset_index(drop=True)
