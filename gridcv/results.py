"""Results as pandas DataFrames: the only module that imports pandas.

:func:`load_results` lays candidates out exactly like scikit-learn's
``GridSearchCV.cv_results_`` (see :mod:`gridcv.cv_results`), then adds
gridcv's own columns. Every function reads the store read-only, so it works
while a run is writing: folds not finished yet are NaN.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gridcv.best_model import load_best_model
from gridcv.cv_results import param_arrays, param_names, scorer_keys, train_score
from gridcv.folders import BEST_JSON, BEST_MODEL, results_folder
from gridcv.plan import REFIT_FOLD
from gridcv.reading import read_folder
from gridcv.store import FoldRow, FoldStatus, ResultStore

# Defined in pandas-free modules (so `gridcv status` needs no pandas); kept importable from here.
__all__ = [
    "BEST_JSON",
    "BEST_MODEL",
    "format_table",
    "load_attempts",
    "load_best_model",
    "load_folds",
    "load_results",
    "results_folder",
]


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
        ``std_train_<s>``, then gridcv's ``n_folds_done``, ``n_folds_failed``, ``n_folds_pending``,
        ``n_folds_running`` and ``partial_mean_test_<s>`` (the mean over the folds done so far).
        Unfinished folds are NaN, so means are NaN until a candidate is complete.
        ``attrs["warnings"]`` lists what makes the scores less trustworthy (callbacks
        that monitored the test fold); ``gridcv results`` prints them.

    Raises:
        ResultsError: There are no results at ``path``.
    """
    read = read_folder(path)
    columns = read.cv_results()
    # scikit-learn's masked arrays, read by pandas as pandas reads GridSearchCV's cv_results_:
    # the same dtypes (int64, float64 with NaN where a candidate lacks the key, str, object).
    params = pd.DataFrame(param_arrays(columns["params"]), index=pd.RangeIndex(len(columns["params"])))
    results = pd.DataFrame(
        {k: params[k] if k.startswith("param_") else v for k, v in columns.items()},
        index=pd.RangeIndex(len(columns["params"])),
    )
    results.attrs["scoring"] = read.primary_scoring  # what ranked_table needs, without reopening the store
    results.attrs["warnings"] = read.warnings
    return results


def load_folds(path: str | Path) -> pd.DataFrame:
    """One row per fold task: parameters, fold, status, scores, timings, seed, error.

    Args:
        path: A results folder or the experiment file.

    Returns:
        Columns ``task_id``, ``candidate_index``, ``params``, ``param_<key>``,
        ``fold``, ``status``, ``attempts``, ``test_<scorer>`` per scorer,
        ``fit_time``, ``score_time``, ``epochs_run``, ``batch_size``,
        ``accumulation_steps``, ``effective_batch_size``, ``batch_lowered_by`` (when another
        fold of the candidate ran out of memory at a larger batch, so this one started
        smaller: ``fold 0 ran out of memory at batch 64``), ``seed``, ``cause``,
        ``error``, ``message``, ``peak_rss``, ``worker_id``, ``worker_folds``,
        ``started_at``, ``finished_at``; then the training details: ``train_<scorer>``
        (with ``return_train_score``), ``precision``, ``best_epoch`` and
        ``stopped_epoch`` (1-based; ``stopped_epoch`` is set when a callback ended
        training early), ``model_path`` (``model_checkpoint``), ``gpu_peak_memory``,
        ``n_fit_samples`` and ``n_monitored_samples`` (samples trained on and monitored
        by callbacks), ``monitored`` (``train_split``, ``test_fold`` or None: what
        callbacks monitored), ``notes`` (what the worker told of the fold's last attempt:
        an unusable checkpoint passed over, a callback a resume resets), and ``best_<metric>``
        per Keras metric of the history (``best_val_loss``, ...). ``attrs["warnings"]`` as
        in :func:`load_results`.
    """
    read = read_folder(path)
    rows, train, record = read.rows, read.return_train_score, read.monitoring
    names = [name for name, _ in scorer_keys(read.scoring or [])]
    keys = param_names([r.params for r in rows])
    metrics = sorted({m for r in rows for m in r.info.get("history_best", {})})
    folds = pd.DataFrame.from_records([_fold_record(r, names, keys, metrics, train, record) for r in rows])
    folds.attrs["warnings"] = read.warnings
    return folds


def _fold_record(
    r: FoldRow, names: list[str], keys: list[str], metrics: list[str], train: bool, record: dict[str, Any] | None
) -> dict[str, Any]:
    rec: dict[str, Any] = {"task_id": r.task_id, "candidate_index": r.candidate_index, "params": r.params}
    rec.update({f"param_{k}": r.params.get(k) for k in keys})
    rec.update({"fold": r.fold, "status": r.status.value, "attempts": r.attempts})
    rec.update({f"test_{n}": r.scores.get(n, np.nan) for n in names})
    for key in ("fit_time", "score_time", "epochs_run", "batch_size", "accumulation_steps"):
        rec[key] = getattr(r, key)
    b, a = r.batch_size, r.accumulation_steps
    rec["effective_batch_size"] = b * a if b and a else None
    rec["batch_lowered_by"] = _lowered_by(r.info.get("batch_lowered_by"))
    for key in ("seed", "cause", "error", "message", "peak_rss", "worker_id", "worker_folds", "started_at"):
        rec[key] = getattr(r, key)
    rec["finished_at"] = r.finished_at
    if train:
        rec.update({f"train_{n}": train_score(r, n) for n in names})
    rec.update({k: r.info.get(k) for k in ("precision", "best_epoch", "stopped_epoch", "model_path")})
    rec["gpu_peak_memory"] = r.info.get("gpu_peak_memory")
    rec.update({k: r.info.get(k) for k in ("n_fit_samples", "n_monitored_samples")})
    rec["monitored"] = r.info.get("monitored", _monitored_before_sizes(r, record))
    rec["notes"] = "; ".join(r.info.get("notes", [])) or None
    rec.update({f"best_{m}": r.info.get("history_best", {}).get(m, np.nan) for m in metrics})
    return rec


def _lowered_by(lowered: dict[str, Any] | None) -> str | None:
    """Which task of the candidate ran out of memory at the batch that set this fold's (its ``fold`` numbering)."""
    if not lowered:
        return None
    fold = lowered.get("fold")
    where = "the refit" if fold == REFIT_FOLD else f"fold {fold}"
    return f"{where} ran out of memory at batch {lowered.get('oom_batch_size')}"


def _monitored_before_sizes(r: FoldRow, record: dict[str, Any] | None) -> str | None:
    """What a fold done before rows recorded it monitored: the folder's choice, which never changes."""
    if r.status is not FoldStatus.DONE or record is None:
        return None
    return None if record["monitored"] == "nothing" else str(record["monitored"])


def load_attempts(path: str | Path) -> pd.DataFrame:
    """One row per attempt at a fold: outcome, batch size, memory, worker, times."""
    with ResultStore.open(results_folder(path), readonly=True) as store:
        rows = store.attempt_rows()
    records = [{**dataclasses.asdict(a), "outcome": None if a.outcome is None else a.outcome.value} for a in rows]
    return pd.DataFrame.from_records(records)


def format_table(table: pd.DataFrame) -> str:
    """A table as the terminal shows it: every row and column, no index."""
    with pd.option_context("display.max_rows", None, "display.max_columns", None, "display.width", 200):
        return table.to_string(index=False)
