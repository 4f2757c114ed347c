"""A finished, running or crashed search as scikit-learn names it: :class:`SearchResults`. No pandas.

``gridcv.run(...)`` returns one; :func:`load_search` reads one from any results
folder, read-only, so it works while a run is writing and after a crash. Its
attributes are a fitted ``GridSearchCV``'s: ``cv_results_`` (a dict of numpy
arrays, built by :mod:`gridcv.cv_results`, the same table :func:`gridcv.load_results`
makes a DataFrame of), ``best_index_``, ``best_score_``, ``best_params_``,
``n_splits_``, ``multimetric_``, ``refit_time_``, ``classes_`` and
``best_estimator_`` (the refit Keras model, loaded into this process on first
use). What scikit-learn would not define (``best_*`` with several scorers and
no refit; ``best_estimator_`` without refit) raises :class:`NotAvailableError`,
an ``AttributeError``, and so does what is not there yet (no candidate
finished, refit not run): the message says which.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gridcv.best_model import BestModelInfo, load_best_model, read_best_model_info
from gridcv.cv_results import param_arrays, scorer_keys
from gridcv.errors import NotAvailableError
from gridcv.folders import BEST_JSON, EXPERIMENT_COPY
from gridcv.reading import open_folder
from gridcv.store import FoldStatus, ResultStore

# gridcv's own per-candidate columns, kept out of cv_results_ (which holds scikit-learn's keys only).
_PROGRESS = ("n_folds_", "partial_mean_test_")


@dataclass
class SearchResults:
    """A snapshot of a results folder in scikit-learn's vocabulary (read :func:`load_search` again to refresh).

    Attributes:
        folder: The results folder.
        cv_results_: Exactly the keys and types of ``GridSearchCV.cv_results_``: timings,
            ``param_<name>`` (masked arrays), ``params``, ``split<k>_test_<s>``,
            ``mean_test_<s>``, ``std_test_<s>``, ``rank_test_<s>`` (and train scores with
            ``return_train_score``). ``<s>`` is ``score`` for one scorer. Folds not finished are NaN.
        progress_: gridcv's columns per candidate: ``n_folds_done``, ``n_folds_failed``,
            ``n_folds_pending``, ``n_folds_running`` and ``partial_mean_test_<s>``.
        scoring: The experiment's ``scoring:`` (a name, or a list whose first ranks).
        refit: The experiment's ``refit:`` (False, True, or a scorer name).
        n_splits_: Number of cross-validation splits.
        warnings: What makes the scores less trustworthy (callbacks that monitored the
            test fold), as ``load_results(...).attrs["warnings"]``.
        multimetric_: Whether there are several scorers.
    """

    folder: Path
    cv_results_: dict[str, Any]
    progress_: dict[str, np.ndarray]
    scoring: str | list[str]
    refit: bool | str
    n_splits_: int
    warnings: list[str] = field(default_factory=list)
    _refit_info: BestModelInfo | None = None
    _estimator: Any = field(default=None, repr=False)

    @property
    def multimetric_(self) -> bool:
        """Whether candidates were scored by several scorers."""
        return not isinstance(self.scoring, str)

    @property
    def n_candidates(self) -> int:
        """Candidates in the grid."""
        return len(self.cv_results_["params"])

    @property
    def refit_metric(self) -> str | None:
        """The ``cv_results_`` suffix that picks ``best_index_``: the refit scorer's, or ``score`` for one
        scorer without refit (as scikit-learn); None with several scorers and no refit."""
        names = dict(scorer_keys(self.scoring))
        if self.refit is False or self.refit is None:
            return None if self.multimetric_ else "score"
        return names[next(iter(names))] if self.refit is True else names.get(str(self.refit))

    @property
    def best_index_(self) -> int:
        """Index (into ``cv_results_``) of the candidate ranked first by the refit scorer.

        Mid-run, the best of the candidates that have a score on every fold.

        Raises:
            NotAvailableError: Several scorers and no ``refit:``; or no candidate is complete yet.
        """
        metric = self.refit_metric
        if metric is None:
            raise NotAvailableError(
                f"best_index_, best_score_ and best_params_ of {self.folder}: with several scorers "
                f"({', '.join(self.scoring)}) they need 'refit: <scorer>' in the experiment, as in "
                "scikit-learn's GridSearchCV. Rank by cv_results_['rank_test_<scorer>'] instead."
            )
        means = np.asarray(self.cv_results_[f"mean_test_{metric}"], dtype=float)
        if np.isnan(means).all():
            done = int(self.progress_["n_folds_done"].sum()) if self.n_candidates else 0
            raise NotAvailableError(
                f"no candidate of {self.folder} has a score on every fold yet ({done} of "
                f"{self.n_candidates * self.n_splits_} folds done); progress_['partial_mean_test_{metric}'] "
                "has the means so far."
            )
        return int(np.asarray(self.cv_results_[f"rank_test_{metric}"]).argmin())

    @property
    def best_score_(self) -> float:
        """Mean cross-validated score of the best candidate (by the refit scorer)."""
        index = self.best_index_  # first: it says why there is no best
        return float(self.cv_results_[f"mean_test_{self.refit_metric}"][index])

    @property
    def best_params_(self) -> dict[str, Any]:
        """Parameters of the best candidate."""
        return dict(self.cv_results_["params"][self.best_index_])

    @property
    def best_model_info_(self) -> BestModelInfo:
        """What ``best_model.json`` says of the refit model: its candidate, classes, inputs.

        Raises:
            NotAvailableError: No refit in the experiment, or the best candidate's refit has not finished.
        """
        if self.refit is False or self.refit is None:
            raise NotAvailableError(
                f"{self.folder} has no refit model: the experiment has no 'refit:' key. Set 'refit: "
                "<scorer>' (or true with one scorer) and run it again; only the refit is trained."
            )
        best = self.best_params_
        info = self._refit_info
        if info is None or info.params != best:
            what = "has not finished yet" if info is None else f"was made of another candidate ({info.params})"
            raise NotAvailableError(
                f"the refit of the best candidate of {self.folder} ({best}) {what}. Run the experiment "
                "(gridcv run) to the end to train it."
            )
        return info

    @property
    def refit_time_(self) -> float:
        """Seconds the refit of the best candidate trained for (over every attempt)."""
        return float(self.best_model_info_.refit.get("fit_time") or 0.0)

    @property
    def classes_(self) -> np.ndarray:
        """Class names in label order: output unit ``i`` of ``best_estimator_`` is ``classes_[i]``."""
        inputs = self.best_model_info_.inputs
        if inputs is None:
            raise NotAvailableError(
                f"{self.folder / BEST_JSON} was written by an older gridcv, without the class names; "
                "run the refit again (delete best_model.keras and run the experiment) to record them."
            )
        return np.asarray(inputs.classes)

    @property
    def best_estimator_(self) -> Any:
        """The refit ``keras.Model`` (loaded into this process, with Keras, on first use).

        Its ``gridcv_info`` attribute is :attr:`best_model_info_`.
        """
        if self._estimator is None:
            info = self.best_model_info_
            self._estimator = load_best_model(info.file)
        return self._estimator

    def to_frame(self) -> Any:
        """The results as :func:`gridcv.load_results`'s pandas DataFrame (read again from the folder)."""
        from gridcv.results import load_results  # pandas, only when asked

        return load_results(self.folder)

    def __repr__(self) -> str:
        done = int(self.progress_["n_folds_done"].sum()) if self.n_candidates else 0
        text = f"{self.n_candidates} candidates x {self.n_splits_} splits, {done} folds done"
        try:
            name = {suffix: name for name, suffix in scorer_keys(self.scoring)}[str(self.refit_metric)]
            text += f"; best {name} {self.best_score_:.4f} with {self.best_params_}"
        except NotAvailableError:
            pass
        return f"SearchResults('{self.folder}': {text})"


def load_search(path: str | Path) -> SearchResults:
    """A results folder as a :class:`SearchResults`, read without taking its lock.

    Args:
        path: A results folder (``results/<name>``) or the experiment file.

    Raises:
        ResultsError: There are no results at ``path``.
    """
    with open_folder(path) as (read, store):
        folder, scoring = read.folder, read.primary_scoring
        info = read_best_model_info(folder)
        if info is not None and not _refit_done(store, info):
            info = None  # written, but the refit was not recorded done (a crash in between)
    columns = read.cv_results()
    masked = param_arrays(columns["params"])
    layout: dict[str, Any] = {}
    for key, value in columns.items():
        if key.startswith("param_"):
            layout.update(masked)  # every param_ column where the first one is, as scikit-learn has them
        elif not key.startswith(_PROGRESS):
            layout[key] = value
    progress = {k: v for k, v in columns.items() if k.startswith(_PROGRESS)}
    splits = sum(1 for k in layout if k.startswith("split") and k.endswith(f"_test_{scorer_keys(scoring)[0][1]}"))
    return SearchResults(folder, layout, progress, scoring, _refit_setting(folder), splits, read.warnings, info)


def _refit_done(store: ResultStore, info: BestModelInfo) -> bool:
    """Whether the store recorded the refit that wrote ``best_model.json`` as done."""
    if info.task_id is None:  # written by gridcv 0.1, which kept the refit's state in metadata
        return bool((store.get_meta("refit") or {}).get("status") == "done")
    row = store.refit_row(info.task_id)
    return row is not None and row.status is FoldStatus.DONE


def columns_with_prefix(columns: dict[str, Any], prefix: str) -> list[str]:
    """Keys of ``columns`` that start with ``prefix``, in order."""
    return [k for k in columns if k.startswith(prefix)]


def _refit_setting(folder: Path) -> bool | str:
    """``refit:`` of the experiment the folder was last run with (from its copy of the file)."""
    import yaml

    copy = folder / EXPERIMENT_COPY
    try:
        raw = yaml.safe_load(copy.read_text(encoding="utf-8")) if copy.is_file() else None
    except (OSError, yaml.YAMLError):
        raw = None
    value = raw.get("refit", False) if isinstance(raw, dict) else False
    return value if isinstance(value, (bool, str)) else False


def format_ranked(search: SearchResults) -> str:
    """The table ``gridcv results`` prints: rank, parameters, mean and std per scorer, folds, fit time.

    Best first; candidates with the same rank by folds done. Formatted without pandas.
    """
    r, p = search.cv_results_, search.progress_
    keys = scorer_keys(search.scoring)
    header = ["rank", *(k.removeprefix("param_") for k in columns_with_prefix(r, "param_"))]
    header += [f"{part}_{name}" for name, _ in keys for part in ("mean", "std")]
    header += ["folds_done", "failed", "mean_fit_s"]
    order = sorted(range(search.n_candidates), key=lambda i: (r[f"rank_test_{keys[0][1]}"][i], -p["n_folds_done"][i]))
    rows = []
    for i in order:
        row = [str(r[f"rank_test_{keys[0][1]}"][i])]
        row += ["" if np.ma.is_masked(r[k][i]) else str(r[k][i]) for k in columns_with_prefix(r, "param_")]
        for _, suffix in keys:
            row += [_number(r[f"mean_test_{suffix}"][i], 4), _number(r[f"std_test_{suffix}"][i], 4)]
        row += [str(p["n_folds_done"][i]), str(p["n_folds_failed"][i]), _number(r["mean_fit_time"][i], 1)]
        rows.append(row)
    widths = [max(len(c) for c in column) for column in zip(header, *rows, strict=True)]
    return "\n".join(" ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in [header, *rows])


def _number(value: float, digits: int) -> str:
    return "NaN" if np.isnan(value) else f"{value:.{digits}f}"
