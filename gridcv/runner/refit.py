"""Refit: the best candidate retrained on all the data after the search. No Keras, no pandas.

Like scikit-learn's ``refit``, the candidate ranked first by the refit scorer
is trained on every sample. It is a task like any fold: a row of the store
(fold -1) that goes pending -> running -> done | failed, a job built by
:func:`gridcv.runner.jobs.build_job`, run by the same loop and decided by the
same policy (an out-of-memory refit is retried with half the batch). Its
``best_model.keras`` and ``best_model.json`` are written atomically, the
JSON before the task is recorded done.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gridcv.atomic import write_atomic
from gridcv.config import Experiment, ExperimentSpec
from gridcv.cv_results import best_index, by_candidate, cv_results, scorer_keys
from gridcv.data.inputs import InputFormat
from gridcv.errors import RunStopped
from gridcv.execution.messages import FoldOutcome
from gridcv.folders import BEST_JSON, BEST_MODEL
from gridcv.monitoring import Monitored, Monitoring
from gridcv.plan import Plan, content_id, refit_task
from gridcv.runner.jobs import Assignment, candidate_epochs
from gridcv.store import FoldRow, FoldStatus, ResultStore
from gridcv.store.failures import store_error

# What best_model.json's "refit" entry takes from the refit's info.
_REFIT_INFO = (
    "precision",
    "effective_batch_size",
    "train_scores",
    "n_fit_samples",
    "n_monitored_samples",
    "monitored",
    "batch_lowered_by",
)


@dataclass(frozen=True)
class Refit:
    """The refit to run: its assignment, and what ``best_model.json`` will say of its candidate and inputs."""

    work: Assignment
    scorer: str
    cv: dict[str, Any]
    inputs: InputFormat

    def summary(self, outcome: FoldOutcome) -> dict[str, Any]:
        """The content of ``best_model.json`` once the refit is done."""
        task = self.work.task
        return {
            "task_id": task.task_id,
            "params": dict(task.params),
            "candidate_index": task.candidate_index,
            "refit_scorer": self.scorer,
            "cv_results": self.cv,
            "refit": {
                "epochs": self.work.epochs,
                "epochs_run": outcome.epochs_run,
                "resumed_from_epoch": outcome.resumed_from_epoch,
                "fit_time": outcome.fit_time,
                "batch_size": outcome.batch_size,
                "accumulation_steps": outcome.accumulation_steps,
                "n_samples": len(self.work.train_idx),
                **{k: outcome.info.get(k) for k in _REFIT_INFO},
            },
            "model": BEST_MODEL,
            "inputs": self.inputs.to_dict(),
        }

    def write_summary(self, folder: Path, outcome: FoldOutcome) -> None:
        """Writes ``best_model.json`` atomically."""
        try:
            write_atomic(folder / BEST_JSON, json.dumps(self.summary(outcome), indent=2, sort_keys=True).encode())
        except OSError as exc:
            raise store_error(folder, exc, f"writing {BEST_JSON}") from None


def plan_refit(
    experiment: Experiment,
    plan: Plan,
    store: ResultStore,
    folder: Path,
    monitoring: Monitoring,
    inputs: InputFormat,
) -> Refit | None:
    """The refit still to run, or None when it is off or already done.

    It monitors as the folder's folds did (see :func:`refit_epochs`). ``inputs`` (the
    source's :meth:`~gridcv.data.sources.Source.describe`) goes into ``best_model.json``.

    Raises:
        RunStopped: No candidate has a score on every fold, so none can be refit.
    """
    spec = experiment.spec
    scorer = spec.refit_scorer()
    if scorer is None:
        return None
    rows = store.fold_rows()
    results = cv_results(by_candidate(rows, [t.candidate_id for t in plan.tasks if t.fold == 0]), spec.scoring, 0)
    suffix = dict(scorer_keys(spec.scoring))[scorer]
    best = best_index(results, suffix)
    if best is None:
        raise RunStopped(
            f"refit: no candidate has a {scorer} score on every fold (see gridcv.load_folds('{folder}')), "
            "so there is no best candidate to refit. Fix the failures and run with --retry-failed."
        )
    params = dict(results["params"][best])
    epochs = refit_epochs(spec, rows, content_id(params), params, monitoring)
    if _already_refit(store, folder, content_id(params), scorer):
        return None
    task = refit_task(spec, params, best, epochs, _generation(store, spec, params, best, epochs))
    everything = np.arange(plan.n_samples)
    work = Assignment(task, everything, everything[:0], epochs, folder / BEST_MODEL)
    cv = {c: _plain(v[best]) for c, v in results.items() if c.split("_")[0] in ("mean", "std", "rank")}
    return Refit(work, scorer, cv, inputs)


def _generation(store: ResultStore, spec: ExperimentSpec, params: dict[str, Any], index: int, epochs: int) -> int:
    """The first refit of this candidate not done yet; a done one whose model was replaced or removed
    (another candidate was refit since, or the file was deleted) is done again as a new task."""
    generation = 1
    while True:
        row = store.refit_row(refit_task(spec, params, index, epochs, generation).task_id)
        if row is None or row.status is not FoldStatus.DONE:
            return generation
        generation += 1


def _already_refit(store: ResultStore, folder: Path, candidate_id: str, scorer: str) -> bool:
    """Whether ``best_model.keras`` is this candidate's finished refit (by this scorer)."""
    summary_file, model = folder / BEST_JSON, folder / BEST_MODEL
    if not (summary_file.is_file() and model.is_file()):
        return False
    summary = json.loads(summary_file.read_text())
    if content_id(summary.get("params")) != candidate_id or summary.get("refit_scorer") != scorer:
        return False
    if "task_id" not in summary:  # written by gridcv 0.1, which kept the refit's state in metadata
        return (store.get_meta("refit") or {}).get("status") == "done"
    row = store.refit_row(summary["task_id"])
    return row is not None and row.status is FoldStatus.DONE


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    return None if isinstance(value, float) and math.isnan(value) else value


def refit_epochs(
    spec: ExperimentSpec, rows: list[FoldRow], candidate_id: str, params: dict[str, Any], monitoring: Monitoring
) -> int:
    """Epochs of the refit.

    When the folds monitored a part of their training split, the refit monitors
    the same share of all the data and its own early stopping decides: the
    candidate's epochs. When they monitored the test fold, the refit has nothing
    to monitor, so if early stopping chose the folds' epochs the refit trains for
    the mean over its folds of the epochs whose weights were kept (the best epoch
    with ``restore_best_weights``, else the epochs run).
    """
    configured = candidate_epochs(spec, params)
    stopping = [c for c in spec.fit.callbacks if c.name == "early_stopping"]
    if not stopping or monitoring.monitored is Monitored.TRAIN_SPLIT:
        return configured
    restore = bool(stopping[0].arguments(params).get("restore_best_weights", False))
    mine = [r for r in rows if r.candidate_id == candidate_id and r.status is FoldStatus.DONE]
    found = [r.info.get("best_epoch") if restore else r.epochs_run for r in mine]
    kept = [int(k) for k in found if k]
    return max(1, min(configured, round(float(np.mean(kept))))) if kept else configured
