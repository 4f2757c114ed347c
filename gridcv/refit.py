"""Refit: the best candidate retrained on all the data after the search. No Keras here.

Like scikit-learn's ``refit``, the candidate ranked first by the refit scorer
is trained on every sample. It runs through the same executor as folds (a
worker, epoch checkpoints), and its state is kept in the store's ``refit``
metadata: a run that dies during the refit resumes it from its checkpoint,
and a finished refit is not done again. ``best_model.keras`` and
``best_model.json`` are written atomically.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from gridcv.checkpoint import write_atomic
from gridcv.config import Experiment
from gridcv.errors import ResultsError, RunInterrupted, RunStopped, UserError
from gridcv.execute import Executor
from gridcv.jobs import DataRef, FoldJob, OutcomeKind
from gridcv.options import requested_accumulation, training_options
from gridcv.plan import FoldTask, Plan, content_id, derive_seed, fold_batch_size
from gridcv.progress import Reporter
from gridcv.results import load_results, results_folder
from gridcv.store import ResultStore

BEST_MODEL = "best_model.keras"
BEST_JSON = "best_model.json"


def run_refit(
    experiment: Experiment, plan: Plan, folder: Path, store: ResultStore, executor: Executor, reporter: Reporter
) -> dict[str, Any] | None:
    """Retrains the best candidate on all the data, unless that is already done.

    Args:
        experiment: The experiment (its ``refit`` names the scorer).
        plan: The plan (for the number of samples).
        folder: The results folder.
        store: The open results store.
        executor: Where to train.
        reporter: Progress display.

    Returns:
        The content of ``best_model.json``, or None when refit is off.

    Raises:
        RunInterrupted: Stopped by the user; the next run resumes the refit.
        RunStopped: No candidate has a score on every fold, or the refit failed.
    """
    spec = experiment.spec
    scorer = spec.refit_scorer()
    if scorer is None:
        return None
    results = load_results(folder)
    suffix = "score" if isinstance(spec.scoring, str) else scorer
    if results[f"mean_test_{suffix}"].isna().all():
        raise RunStopped(
            f"refit: no candidate has a {scorer} score on every fold (see gridcv.load_folds('{folder}')), "
            "so there is no best candidate to refit. Fix the failures and run with --retry-failed."
        )
    best = int(results[f"rank_test_{suffix}"].to_numpy().argmin())
    params = dict(results["params"][best])
    candidate_id = content_id(params)
    previous = store.get_meta("refit") or {}
    if (
        previous.get("status") == "done"
        and previous.get("candidate_id") == candidate_id
        and previous.get("scorer") == scorer
        and (folder / BEST_MODEL).is_file()
    ):
        return json.loads((folder / BEST_JSON).read_text())
    epochs = refit_epochs(experiment, store, candidate_id, params)
    job = _refit_job(experiment, plan, folder, params, candidate_id, best, epochs)
    store.set_meta(
        refit={"status": "running", "candidate_id": candidate_id, "scorer": scorer, "started_at": time.time()}
    )
    reporter.message(f"refitting the best candidate by {scorer} ({params}) on all {len(job.train_idx)} samples")
    outcome = executor.run(job)
    failed = {"candidate_id": candidate_id, "scorer": scorer, "message": outcome.message}
    if outcome.kind is OutcomeKind.INTERRUPTED:
        store.set_meta(refit={**failed, "status": "pending"})
        raise RunInterrupted(f"Stopped during the refit; run `gridcv run {experiment.path}` again to resume it.")
    if outcome.kind is OutcomeKind.FATAL:
        store.set_meta(refit={**failed, "status": "failed"})
        raise UserError(outcome.message or "the model builder failed during the refit")
    if outcome.kind is not OutcomeKind.DONE:
        store.set_meta(refit={**failed, "status": "failed"})
        raise RunStopped(
            f"refit of candidate {params} failed ({outcome.kind.value}: {outcome.message}); the search "
            f"results in {folder} are complete. Run again to retry the refit from its last checkpoint."
        )
    cv = {c: _plain(results[c][best]) for c in results.columns if c.split("_")[0] in ("mean", "std", "rank")}
    summary = {
        "params": params,
        "candidate_index": best,
        "refit_scorer": scorer,
        "cv_results": cv,
        "refit": {
            "epochs": epochs,
            "epochs_run": outcome.epochs_run,
            "resumed_from_epoch": outcome.resumed_from_epoch,
            "fit_time": outcome.fit_time,
            "batch_size": outcome.batch_size,
            "accumulation_steps": outcome.accumulation_steps,
            "n_samples": len(job.train_idx),
            **{k: outcome.info.get(k) for k in ("precision", "effective_batch_size", "train_scores")},
        },
        "model": BEST_MODEL,
    }
    write_atomic(folder / BEST_JSON, json.dumps(summary, indent=2, sort_keys=True).encode())
    store.set_meta(refit={"status": "done", "candidate_id": candidate_id, "scorer": scorer, "finished_at": time.time()})
    shutil.rmtree(folder / "checkpoints" / "refit", ignore_errors=True)
    return summary


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    return None if isinstance(value, float) and np.isnan(value) else value


def refit_epochs(experiment: Experiment, store: ResultStore, candidate_id: str, params: dict[str, Any]) -> int:
    """Epochs of the refit.

    The candidate's epochs, except when early stopping chose them per fold and
    the refit has nothing to monitor (no ``validation_split_from_train``):
    then the mean over its folds of the epochs whose weights were kept (the
    best epoch with ``restore_best_weights``, else the epochs run).
    """
    spec = experiment.spec
    configured = int(params.get("epochs", spec.fit.epochs))
    stopping = [c for c in spec.fit.callbacks if c.name == "early_stopping"]
    if not stopping or spec.fit.validation_split_from_train is not None:
        return configured
    restore = bool(stopping[0].kwargs().get("restore_best_weights", False))
    rows = [r for r in store.fold_rows() if r["candidate_id"] == candidate_id and r["status"] == "done"]
    found = [(r["info"] or {}).get("best_epoch") if restore else r["epochs_run"] for r in rows]
    kept = [int(k) for k in found if k]
    return max(1, min(configured, round(float(np.mean(kept))))) if kept else configured


def _refit_job(
    experiment: Experiment,
    plan: Plan,
    folder: Path,
    params: dict[str, Any],
    candidate_id: str,
    candidate_index: int,
    epochs: int,
) -> FoldJob:
    spec = experiment.spec
    task_id = f"refit-{candidate_id}"
    task = FoldTask(task_id, candidate_id, candidate_index, -1, params, derive_seed(spec.seed, task_id))
    batch = fold_batch_size(params, spec.fit.batch_size)
    accumulation = requested_accumulation(spec, params) or 1
    everything = np.sort(np.concatenate(plan.splits[0]))
    return FoldJob(
        task=task,
        train_idx=everything,
        test_idx=everything[:0],
        data=DataRef(spec.data.model_dump(), experiment.base_dir, str(experiment.path)),
        model_ref=spec.model,
        base_dir=experiment.base_dir,
        params={"epochs": spec.fit.epochs, "batch_size": spec.fit.batch_size, **params},
        epochs=epochs,
        batch_size=batch,
        accumulation_steps=accumulation,
        shuffle=spec.fit.shuffle,
        scorers=tuple(spec.scorers()),
        deterministic=spec.deterministic,
        checkpoint_dir=folder / "checkpoints" / "refit" / f"{candidate_id}-e{epochs}" / f"b{batch}x{accumulation}",
        training=training_options(experiment, folder, params, save_model_to=folder / BEST_MODEL),
    )


def load_best_model(path: str | Path, custom_objects: dict[str, Any] | None = None, compile: bool = True) -> Any:
    """Loads the refit model (``best_model.keras``) of a results folder.

    Imports Keras when called (importing gridcv does not).

    Args:
        path: The results folder, the experiment file, or the ``.keras`` file itself.
        custom_objects: Custom layers or functions the model uses, by name.
        compile: Restore the optimizer and loss too.

    Returns:
        The ``keras.Model``.

    Raises:
        ResultsError: There is no refit model at ``path``.
    """
    p = Path(path).expanduser()
    file = p if p.suffix == ".keras" else results_folder(p) / BEST_MODEL
    if not file.is_file():
        raise ResultsError(
            f"{path}: no refit model here (expected {file}). Set 'refit:' in the experiment file "
            "(a scorer name, or true with one scorer) and run it to completion."
        )
    import keras

    # A mixed-float16 model was compiled with a loss-scale optimizer; loading it under
    # the same policy restores that optimizer's variables too.
    summary = file.with_name(BEST_JSON)
    precision = json.loads(summary.read_text()).get("refit", {}).get("precision") if summary.is_file() else None
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(precision or previous)
    try:
        return keras.saving.load_model(file, custom_objects=custom_objects, compile=compile)
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
