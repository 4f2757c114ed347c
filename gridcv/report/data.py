"""What a report is made of, read once from a results folder: read-only, mid-run or after a crash.

:func:`gather` reads the store (folds, attempts, metadata), the folder's copy
of the experiment file and the run lock, and lays the folds of the current
grid out as :mod:`gridcv.cv_results` does, so the report, ``gridcv.compare``
and ``gridcv results`` rank candidates the same way. No pandas, no matplotlib.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from gridcv.cv_results import scorer_keys
from gridcv.folders import EXPERIMENT_COPY
from gridcv.plan import content_id
from gridcv.reading import open_folder
from gridcv.store import AttemptRow, FoldRow, FoldStatus, LockHolder, RunLock


@dataclass(frozen=True)
class SplitSizes:
    """Samples in a training split and in a test split (means over the folds), and where they come from.

    Attributes:
        n_train: Mean size of the training splits.
        n_test: Mean size of the test splits.
        note: None when the runner recorded the sizes; else how they were estimated.
    """

    n_train: float
    n_test: float
    note: str | None = None


@dataclass(frozen=True)
class ReportData:
    """A snapshot of a results folder, as the report and ``gridcv.compare`` read it.

    Attributes:
        folder: The results folder.
        name: The experiment's name.
        experiment_file: The experiment file the folder was last run with (as the runner recorded it).
        experiment: That file's content, as the folder's copy has it (raw YAML, not validated).
        fingerprint: A short id of the folder's fingerprint (every section that changes results).
        versions: Package versions the run recorded (empty for folders of an older gridcv).
        scorers: Scorer names; ``primary`` ranks (the refit scorer, else the first).
        primary: The ranking scorer.
        rows: Cross-validation folds of the current grid, in (candidate, fold) order.
        refits: Refit tasks, oldest first.
        attempts: Every attempt at those folds and refits, oldest first.
        results: ``cv_results_`` as :func:`gridcv.cv_results.cv_results` lays it out.
        split_sizes: Training and test split sizes.
        holder: The live run holding the folder, or None.
        warnings: What makes the scores less trustworthy (as ``load_results(...).attrs``).
        read_at: When the folder was read (seconds since the epoch).
    """

    folder: Path
    name: str
    experiment_file: str | None
    experiment: dict[str, Any]
    fingerprint: str | None
    versions: dict[str, str]
    scoring: str | list[str]
    scorers: list[str]
    primary: str
    rows: list[FoldRow]
    refits: list[FoldRow]
    attempts: list[AttemptRow]
    results: dict[str, Any]
    split_sizes: SplitSizes
    holder: LockHolder | None
    warnings: list[str]
    read_at: float

    @property
    def suffix(self) -> str:
        """The ``cv_results_`` column suffix of the primary scorer."""
        return dict(scorer_keys(self.scoring))[self.primary]

    @property
    def n_candidates(self) -> int:
        """Candidates in the current grid."""
        return len(self.results["params"])

    @property
    def n_splits(self) -> int:
        """Folds per candidate."""
        return len([k for k in self.results if k.startswith("split") and k.endswith(f"_test_{self.suffix}")])

    def scores(self, scorer: str | None = None) -> np.ndarray:
        """Candidates x folds test scores by ``scorer`` (the primary one by default); NaN where not done."""
        suffix = dict(scorer_keys(self.scoring))[scorer or self.primary]
        return np.column_stack([self.results[f"split{k}_test_{suffix}"] for k in range(self.n_splits)])

    def means(self, scorer: str | None = None) -> np.ndarray:
        """Each candidate's mean over the folds done so far (NaN with none done)."""
        m = self.scores(scorer)
        with np.errstate(all="ignore"):
            done = ~np.isnan(m)
            return np.where(done.any(axis=1), np.nansum(m, axis=1) / np.maximum(done.sum(axis=1), 1), np.nan)

    def order(self, scorer: str | None = None) -> list[int]:
        """Candidates best first by ``scorer`` (the primary one by default): complete ones by their mean
        (scikit-learn's rank), then the others by their mean so far, then those with no fold done; ties by
        grid order."""
        complete = ~np.isnan(self.scores(scorer)).any(axis=1)
        means = self.means(scorer)
        return sorted(
            range(self.n_candidates),
            key=lambda i: (not complete[i], np.isnan(means[i]), -np.nan_to_num(means[i], nan=0.0), i),
        )

    def count(self, status: FoldStatus) -> int:
        """Folds of the current grid in ``status``."""
        return sum(1 for r in self.rows if r.status is status)


def gather(path: str | Path) -> ReportData:
    """Reads a results folder for a report (read-only, without its lock).

    Args:
        path: A results folder (``results/<name>``) or the experiment file.

    Raises:
        ResultsError: There are no results at ``path``.
    """
    with open_folder(path) as (read, store):
        refits = store.refit_rows()
        attempts = store.attempt_rows()
        meta = {k: store.get_meta(k) for k in ("name", "experiment_file", "fingerprint", "versions", "split_sizes")}
    folder, scoring = read.folder, read.primary_scoring
    experiment = _experiment_copy(folder)
    current = [r for g in read.groups for r in g]
    tasks = {r.task_id for r in current} | {r.task_id for r in refits}
    results = read.cv_results()
    names = [name for name, _ in scorer_keys(scoring)]
    refit = experiment.get("refit")
    return ReportData(
        folder=folder,
        name=str(meta["name"] or experiment.get("name") or folder.name),
        experiment_file=meta["experiment_file"],
        experiment=experiment,
        fingerprint=None if meta["fingerprint"] is None else content_id(meta["fingerprint"]),
        versions=dict(meta["versions"] or {}),
        scoring=scoring,
        scorers=names,
        primary=refit if isinstance(refit, str) and refit in names else names[0],
        rows=current,
        refits=refits,
        attempts=[a for a in attempts if a.task_id in tasks],
        results=results,
        split_sizes=_split_sizes(meta["split_sizes"], current, experiment),
        holder=RunLock(folder).holder(),
        warnings=read.warnings,
        read_at=time.time(),
    )


def _experiment_copy(folder: Path) -> dict[str, Any]:
    """The folder's copy of its experiment file, raw (its data need not exist where the report is made)."""
    try:
        raw = yaml.safe_load((folder / EXPERIMENT_COPY).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return raw if isinstance(raw, dict) else {}


def _split_sizes(recorded: Any, rows: list[FoldRow], experiment: dict[str, Any]) -> SplitSizes:
    """The recorded split sizes; for a folder of an older gridcv, an estimate that says so."""
    if recorded:
        sizes = np.asarray(recorded, dtype=float)
        return SplitSizes(float(sizes[:, 0].mean()), float(sizes[:, 1].mean()))
    cv = experiment.get("cv")
    k = cv.get("n_splits") if isinstance(cv, dict) else None
    k = k if isinstance(k, int) and k >= 2 else 5  # scikit-learn's default
    trained = [
        r.info["n_fit_samples"] + r.info.get("n_monitored_samples", 0) for r in rows if "n_fit_samples" in r.info
    ]
    n_train = float(np.mean(trained)) if trained else float(max(k - 1, 1))
    return SplitSizes(
        n_train,
        n_train / max(k - 1, 1),
        f"this folder's gridcv did not record split sizes: n_test/n_train is taken as 1/(n_splits - 1) = 1/{k - 1} "
        "(exact for KFold and its stratified and grouped kinds with equal folds)",
    )


def params_text(params: dict[str, Any]) -> str:
    """``filters=16, learning_rate=0.003``: a candidate's parameters on one line."""
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "(no parameters)"
