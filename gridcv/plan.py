"""Planning: an experiment and its labels become an ordered list of fold tasks.

Pure functions, no I/O: the caller hands in the labels (and groups) it read.
The plan is ``ParameterGrid(grid) x splitter.split(...)``, candidate-major,
in scikit-learn's order (ParameterGrid sorts keys), and every task has an id
derived from its content, so the same experiment always gives the same ids.
The samples a fold sets aside within its training split (to monitor, to
score training) are pure functions of the fold's seed, so a resumed fold
makes the same choices.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from gridcv.config.data import is_segmentation
from gridcv.config.schema import ExperimentSpec
from gridcv.errors import ConfigError

REFIT_FOLD = -1  # the fold index of a refit task (trained on every sample, scored on none)


@dataclass(frozen=True)
class FoldTask:
    """One (candidate, fold) pair to train and score.

    Attributes:
        task_id: Stable id derived from the candidate's parameters and the fold index.
        candidate_id: Stable id derived from the candidate's parameters alone.
        candidate_index: Position of the candidate in ``ParameterGrid`` order.
        fold: Index of the split, 0-based.
        params: The candidate's parameter combination (grid keys only).
        seed: Seed of this fold, derived from the experiment seed and ``task_id``.
    """

    task_id: str
    candidate_id: str
    candidate_index: int
    fold: int
    params: Mapping[str, Any]
    seed: int


@dataclass(frozen=True)
class Plan:
    """Every fold task of an experiment, and the splits they index.

    Attributes:
        tasks: Fold tasks, candidate-major, in a deterministic order.
        candidates: The distinct parameter combinations, in ``ParameterGrid`` order.
        splits: ``(train_indices, test_indices)`` per fold index.
        labels: The label of every sample, as the splitter saw them.
        groups: The group of every sample, or None.
        grouped: Whether the splitter uses groups (then no group is in two parts of a split).
    """

    tasks: tuple[FoldTask, ...]
    candidates: tuple[Mapping[str, Any], ...]
    splits: tuple[tuple[np.ndarray, np.ndarray], ...]
    labels: np.ndarray
    groups: np.ndarray | None = None
    grouped: bool = False

    @property
    def n_samples(self) -> int:
        """Number of samples."""
        return len(self.labels)

    @property
    def n_splits(self) -> int:
        """Number of folds per candidate."""
        return len(self.splits)


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: the form ids and the store use."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def content_id(value: Any) -> str:
    """A short, stable id of a JSON-able value."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:12]


def derive_seed(experiment_seed: int, task_id: str) -> int:
    """The seed of one fold: a pure function of the experiment seed and the task id."""
    digest = hashlib.sha256(f"{experiment_seed}:{task_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % (2**31 - 1)


def candidates(spec: ExperimentSpec) -> list[dict[str, Any]]:
    """The distinct parameter combinations of the grid, in ParameterGrid order."""
    from sklearn.model_selection import ParameterGrid  # here: `gridcv status` must not import scikit-learn

    seen: set[str] = set()
    out = []
    for params in ParameterGrid(spec.grid_dicts()):
        key = canonical_json(params)
        if key not in seen:  # a list of grids may repeat a combination
            seen.add(key)
            out.append(dict(params))
    return out


def make_splitter(spec: ExperimentSpec) -> Any:
    """Instantiates the splitter, seeding it from the experiment seed if it shuffles unseeded.

    A shuffling splitter without ``random_state`` would give different folds on
    every run, which would make resuming mix folds of different splits.
    """
    import sklearn.model_selection as ms

    cls = getattr(ms, spec.cv.splitter)
    kwargs = spec.cv.kwargs()
    accepted = inspect.signature(cls).parameters
    shuffles = kwargs.get("shuffle", "shuffle" not in accepted)
    if "random_state" in accepted and kwargs.get("random_state") is None and shuffles:
        kwargs["random_state"] = spec.seed
    return cls(**kwargs)


def make_plan(
    spec: ExperimentSpec,
    y: np.ndarray,
    groups: np.ndarray | None = None,
    source: str = "experiment file",
) -> Plan:
    """Expands the grid and the splitter into fold tasks.

    Args:
        spec: The validated experiment.
        y: Labels of every sample (what stratified splitters stratify on).
        groups: Group of every sample, for group-aware splitters.
        source: Name of the experiment file, for error messages.

    Returns:
        The plan.

    Raises:
        ConfigError: The splitter cannot split these labels as configured.
    """
    y = split_labels(spec.task, y)
    splits = _split(spec, y, groups, source)
    cands = candidates(spec)
    tasks = []
    for index, params in enumerate(cands):
        candidate_id = content_id(params)
        for fold in range(len(splits)):
            task_id = content_id({"params": params, "fold": fold})
            tasks.append(
                FoldTask(
                    task_id=task_id,
                    candidate_id=candidate_id,
                    candidate_index=index,
                    fold=fold,
                    params=params,
                    seed=derive_seed(spec.seed, task_id),
                )
            )
    grouped = groups is not None and bool(make_splitter(spec).get_metadata_routing().consumes("split", ["groups"]))
    return Plan(
        tasks=tuple(tasks),
        candidates=tuple(cands),
        splits=splits,
        labels=np.asarray(y),
        groups=None if groups is None else np.asarray(groups),
        grouped=grouped,
    )


def split_labels(task: str | None, targets: np.ndarray) -> np.ndarray:
    """What splitters and monitoring splits stratify by: one label per sample.

    Class ids (classification), the per-image label of segmentation as given;
    for multilabel the id of each sample's combination of labels (so a part of
    a training split keeps the mix of combinations where it can); for regression
    zeros: numbers have no classes (stratified splitters are refused for it).
    """
    if task == "regression":
        return np.zeros(len(targets), dtype=np.int64)
    if task == "multilabel":
        return np.unique(np.asarray(targets), axis=0, return_inverse=True)[1].reshape(-1).astype(np.int64)
    return np.asarray(targets)


def _split(
    spec: ExperimentSpec, y: np.ndarray, groups: np.ndarray | None, source: str
) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    splitter = make_splitter(spec)
    name = spec.cv.splitter
    if "Stratified" in name:
        _check_class_counts(spec, y, splitter, source)
    placeholder = np.zeros((len(y), 1), dtype=np.uint8)  # splitters only need len(X)
    try:
        splits = tuple(
            (np.asarray(tr, dtype=np.int64), np.asarray(te, dtype=np.int64))
            for tr, te in splitter.split(placeholder, y, groups)
        )
    except ValueError as exc:
        hint = (
            " Give each sample a group: data.groups (a .npy file, kind: arrays) or data.group_column (kind: csv)."
            if "group" in str(exc).lower()
            else ""
        )
        raise ConfigError(
            f"{source}: key 'cv' cannot split these {len(y)} samples with {name}: {exc}.{hint} "
            "Lower cv.n_splits or choose another splitter."
        ) from None
    if not splits:
        raise ConfigError(f"{source}: key 'cv' produced no splits; check cv.n_splits.")
    return splits


def _check_class_counts(spec: ExperimentSpec, y: np.ndarray, splitter: Any, source: str) -> None:
    n_splits = splitter.get_n_splits()
    classes, counts = np.unique(y, return_counts=True)
    if counts.min() < n_splits and is_segmentation(spec.data):
        worst = classes[counts.argmin()].item()
        raise ConfigError(
            f"{source}: key 'cv.n_splits' is {n_splits}, but only {counts.min()} image(s) have label {worst!r} (the "
            "dominant class of their mask, or their data.y_column label), which stratified splits keep in every "
            f"fold. Lower cv.n_splits to at most {counts.min()}, give the images labels to stratify by in a CSV "
            "column (kind: csv, data.y_column), or use KFold."
        )
    if counts.min() < n_splits:
        worst = classes[counts.argmin()].item()
        raise ConfigError(
            f"{source}: key 'cv.n_splits' is {n_splits}, but class {worst!r} has only "
            f"{counts.min()} samples, so some validation folds would not contain it. "
            f"Lower cv.n_splits to at most {counts.min()}, or use KFold if that is intended."
        )


def fold_batch_size(params: Mapping[str, Any], default: int) -> int:
    """The batch size a candidate asks for: its grid value, else the fit default."""
    return int(params.get("batch_size", default))


def refit_task(
    spec: ExperimentSpec, params: Mapping[str, Any], candidate_index: int, epochs: int, generation: int = 1
) -> FoldTask:
    """The task of retraining a candidate on every sample for ``epochs`` epochs.

    Its id names the candidate and the epochs, so a refit for other epochs (the
    folds' early stopping changed them) is a task of its own; ``generation``
    counts refits of the same candidate whose model was later replaced.
    """
    candidate_id = content_id(dict(params))
    task_id = f"refit-{candidate_id}-e{epochs}" + (f"-{generation}" if generation > 1 else "")
    return FoldTask(task_id, candidate_id, candidate_index, REFIT_FOLD, dict(params), derive_seed(spec.seed, task_id))


def monitoring_split(
    train_idx: np.ndarray, labels: np.ndarray, fraction: float, seed: int, groups: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Splits a fold's training indices into (fit, monitor) parts, stratified when possible.

    Args:
        train_idx: The fold's training indices.
        labels: Labels of every sample.
        fraction: Share of ``train_idx`` held out for monitoring.
        seed: The fold's seed (the split is a pure function of it).
        groups: Group of every sample, to keep each group in one part; None to split samples.

    Returns:
        Indices to train on and indices to monitor on, each sorted.

    Raises:
        ValueError: ``groups`` given and the training indices hold fewer than two groups.
    """
    if groups is not None:
        return _group_monitoring_split(train_idx, labels, fraction, seed, groups)
    from sklearn.model_selection import train_test_split

    y = labels[train_idx]
    _, counts = np.unique(y, return_counts=True)
    n_monitor = max(1, round(fraction * len(train_idx)))
    stratify = y if counts.min() >= 2 and n_monitor >= len(counts) else None
    fit, monitor = train_test_split(train_idx, test_size=n_monitor, random_state=seed, stratify=stratify)
    return np.sort(fit), np.sort(monitor)


def _group_monitoring_split(
    train_idx: np.ndarray, labels: np.ndarray, fraction: float, seed: int, groups: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Holds out whole groups, about ``fraction`` of the samples, stratified as far as groups allow.

    The monitored part is the first test fold of a shuffled ``StratifiedGroupKFold``
    with ``round(1 / fraction)`` folds (fewer when there are fewer groups).
    """
    import warnings

    from sklearn.model_selection import StratifiedGroupKFold

    g = groups[train_idx]
    n_groups = len(np.unique(g))
    if n_groups < 2:
        raise ValueError(f"the training split holds only {n_groups} group(s); at least 2 are needed")
    n_splits = min(n_groups, max(2, round(1 / fraction)))
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # "The least populated class has only k members": stratifying is best effort here.
        warnings.simplefilter("ignore", UserWarning)
        fit, monitor = next(splitter.split(train_idx, labels[train_idx], g))
    return np.sort(train_idx[fit]), np.sort(train_idx[monitor])


def train_score_sample(train_idx: np.ndarray, cap: int, seed: int) -> np.ndarray:
    """At most ``cap`` of the training indices, chosen from the fold's seed, sorted."""
    if len(train_idx) <= cap:
        return np.asarray(train_idx)
    rng = np.random.default_rng([seed, 1])
    return np.sort(rng.choice(train_idx, size=cap, replace=False))
