"""What a fold's training needs beyond the plan, worked out from the experiment. No Keras.

The runner (parent process) builds :class:`~gridcv.jobs.TrainingOptions` here;
the sample choices (monitoring split, train-score sample) are pure functions
of the fold's indices and seed, so a resumed fold makes the same choices.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gridcv.config import Experiment, ExperimentSpec
from gridcv.jobs import TrainingOptions


def requested_accumulation(spec: ExperimentSpec, params: Mapping[str, Any]) -> int | None:
    """``gradient_accumulation_steps`` from the grid, else from ``compile:``, else None."""
    value = params.get(
        "gradient_accumulation_steps", spec.compile.optimizer_kwargs().get("gradient_accumulation_steps")
    )
    return None if value is None else int(value)


def training_options(
    experiment: Experiment, folder: Path, params: Mapping[str, Any], save_model_to: Path | None = None
) -> TrainingOptions:
    """The training options of one fold (or of the refit, with ``save_model_to``).

    Args:
        experiment: The validated experiment.
        folder: The results folder.
        params: The candidate's grid values (``precision`` among them overrides ``fit.precision``).
        save_model_to: Where the refit saves its model; None for folds.

    Returns:
        The options a worker needs to compile, call back, and score the fold.
    """
    spec = experiment.spec
    callbacks = tuple({"name": c.name, **c.kwargs()} for c in spec.fit.callbacks)
    split = spec.fit.validation_split_from_train
    return TrainingOptions(
        compile=spec.compile.model_dump(),
        callbacks=callbacks,
        precision=str(params.get("precision", spec.fit.precision)),
        accumulation_explicit=requested_accumulation(spec, params) is not None,
        validate=bool(callbacks) or split is not None,
        validation_split_from_train=split,
        return_train_score=spec.return_train_score,
        train_score_max_samples=spec.train_score_max_samples,
        results_dir=folder,
        save_model_to=save_model_to,
    )


def monitoring_split(
    train_idx: np.ndarray, labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Splits a fold's training indices into (fit, monitor) parts, stratified when possible.

    Args:
        train_idx: The fold's training indices.
        labels: Labels of every sample.
        fraction: Share of ``train_idx`` held out for monitoring.
        seed: The fold's seed (the split is a pure function of it).

    Returns:
        Indices to train on and indices to monitor on, each sorted.
    """
    from sklearn.model_selection import train_test_split

    y = labels[train_idx]
    _, counts = np.unique(y, return_counts=True)
    n_monitor = max(1, round(fraction * len(train_idx)))
    stratify = y if counts.min() >= 2 and n_monitor >= len(counts) else None
    fit, monitor = train_test_split(train_idx, test_size=n_monitor, random_state=seed, stratify=stratify)
    return np.sort(fit), np.sort(monitor)


def train_score_sample(train_idx: np.ndarray, cap: int, seed: int) -> np.ndarray:
    """At most ``cap`` of the training indices, chosen from the fold's seed, sorted."""
    if len(train_idx) <= cap:
        return np.asarray(train_idx)
    rng = np.random.default_rng([seed, 1])
    return np.sort(rng.choice(train_idx, size=cap, replace=False))


def minimizes(monitor: str, mode: str = "auto") -> bool:
    """Whether lower is better for a Keras metric (``mode`` wins unless it is ``auto``)."""
    if mode in ("min", "max"):
        return mode == "min"
    name = monitor.removeprefix("val_")
    return any(word in name for word in ("loss", "error", "crossentropy", "hinge"))


def history_summary(history: Mapping[str, list[float]], monitor: str, mode: str = "auto") -> dict[str, Any]:
    """Best value of each Keras metric, and the best epoch (1-based) by ``monitor``.

    The best epoch falls back to ``val_loss``, then ``loss``, when the history
    has no ``monitor``; it is None for an empty history.
    """
    best = {
        k: (min(v) if minimizes(k) else max(v)) for k, v in history.items() if v and k not in ("learning_rate", "lr")
    }
    for name in (monitor, "val_loss", "loss"):
        values = history.get(name)
        if values:
            low = minimizes(name, mode if name == monitor else "auto")
            index = int(np.argmin(values) if low else np.argmax(values))
            return {"history_best": best, "monitor": name, "best_epoch": index + 1}
    return {"history_best": best, "monitor": None, "best_epoch": None}
