"""Which scorers, splitters and class balancing fit a task. Parent side, pure: no Keras, no data.

The task (``classification``, ``regression``, ``segmentation``, ``multilabel``)
is declared with ``task:`` or inferred from the data
(:mod:`gridcv.data.targets`). A declared task is checked when the file is
loaded; an inferred one once the data is opened; both before anything is
written or trained, so ``accuracy`` on float targets stops the run at once.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from gridcv.config.data import SEGMENTATION_SCORERS
from gridcv.config.schema import ExperimentSpec
from gridcv.errors import ConfigError, did_you_mean

TASKS = ("classification", "regression", "segmentation", "multilabel")
# scikit-learn's scorers that score a multilabel indicator matrix (checked against scikit-learn by a test).
MULTILABEL_SCORERS = (
    "accuracy",
    "average_precision",
    "roc_auc",
    *(f"{m}_{a}" for m in ("f1", "precision", "recall", "jaccard") for a in ("micro", "macro", "weighted", "samples")),
)
# Regression scorers whose metric takes one target only (scikit-learn raises "Multioutput not supported").
SINGLE_TARGET_SCORERS = ("neg_max_error", "neg_mean_gamma_deviance", "neg_mean_poisson_deviance")
_SHOWN = {
    "classification": "accuracy, balanced_accuracy, f1_macro, roc_auc, neg_log_loss",
    "regression": "r2, neg_mean_squared_error, neg_root_mean_squared_error, neg_mean_absolute_error",
    "multilabel": "f1_samples, f1_macro, roc_auc, average_precision, accuracy (every label right)",
}


@dataclass(frozen=True)
class TaskOrigin:
    """How the task became known, for messages.

    Attributes:
        how: ``declared with task:``, or what of the data it was inferred from.
        alternative: What to do if the inference is wrong (e.g. whole numbers saved as floats), or None.
    """

    how: str
    alternative: str | None = None


DECLARED = TaskOrigin("declared with 'task:'")


@functools.cache
def regression_scorers() -> tuple[str, ...]:
    """scikit-learn's scorers of predicted numbers (their metric lives in ``sklearn.metrics._regression``)."""
    from sklearn.metrics import get_scorer, get_scorer_names

    return tuple(n for n in get_scorer_names() if _metric_module(get_scorer(n)).endswith("._regression"))


def _metric_module(scorer: object) -> str:
    return str(getattr(getattr(scorer, "_score_func", None), "__module__", ""))


def scorers_of(task: str) -> tuple[str, ...]:
    """The scorer names that fit a task."""
    from sklearn.metrics import get_scorer_names

    if task == "segmentation":
        return SEGMENTATION_SCORERS
    if task == "regression":
        return regression_scorers()
    if task == "multilabel":
        return MULTILABEL_SCORERS
    return tuple(n for n in get_scorer_names() if n not in regression_scorers())


def stratifies(spec: ExperimentSpec) -> bool:
    """Whether the splitter stratifies by label (StratifiedKFold, StratifiedGroupKFold, ...)."""
    return "Stratified" in spec.cv.splitter


def check_task(path: str | Path, spec: ExperimentSpec, task: str, origin: TaskOrigin, n_outputs: int = 1) -> None:
    """The scorers, the splitter and class balancing fit the task.

    Args:
        path: The experiment file, for messages.
        spec: The experiment.
        task: The declared or inferred task.
        origin: How the task is known.
        n_outputs: Targets per sample (regression with several targets refuses single-target scorers).

    Raises:
        ConfigError: A scorer, the splitter or ``balance`` does not fit the task.
    """
    if task == "segmentation":
        return  # checked with the data section (checks._check_segmentation): masks say it
    for name in spec.scorers():
        _check_scorer(path, spec, name, task, origin, n_outputs)
    if task in ("regression", "multilabel") and stratifies(spec):
        raise ConfigError(
            f"{path}: key 'cv.splitter' is {spec.cv.splitter}, which stratifies by class, but the task is {task} "
            f"({origin.how}): {_no_classes(task)}. Use KFold, RepeatedKFold, ShuffleSplit, or GroupKFold for groups."
        )
    balances = {getattr(spec.data, "balance", "none"), *(v for g in spec.grid_dicts() for v in g.get("balance", []))}
    if task in ("regression", "multilabel") and balances - {"none"}:
        raise ConfigError(
            f"{path}: key 'data.balance' (or grid key 'balance') asks for class balancing, which works on one "
            f"class per sample, but the task is {task} ({origin.how}). Use balance: none."
        )


def _no_classes(task: str) -> str:
    if task == "regression":
        return "numeric targets have no classes to stratify by"
    return "a sample has several labels, not one class to stratify by"


def _check_scorer(path: str | Path, spec: ExperimentSpec, name: str, task: str, origin: TaskOrigin, n: int) -> None:
    fits = scorers_of(task)
    if name in fits and not (task == "regression" and n > 1 and name in SINGLE_TARGET_SCORERS):
        return
    if "scoring" in spec.model_fields_set:
        said = f"key 'scoring' names {name!r}"
    else:
        said = f"key 'scoring' is not set, so it is {name!r} (the default)"
    if task == "regression" and name in fits:
        scores = f"which scores one target, but the task is regression with {n} targets per sample ({origin.how})"
    else:
        scores = f"which {_scores(name, task)}, but the task is {task} ({origin.how})"
    hint = "" if name in fits else did_you_mean(name, fits)
    fix = f"Set scoring to {task} scorers ({_SHOWN[task]}, ...).{hint}"
    if origin.alternative:
        fix += f" Or, {origin.alternative}."
    elif task == "classification" and name in regression_scorers():
        fix += " Or declare task: regression if the labels are numeric targets."
    raise ConfigError(f"{path}: {said}, {scores}. {fix}")


def _scores(name: str, task: str) -> str:
    if name in regression_scorers():
        return "scores predicted numbers"
    if name in SEGMENTATION_SCORERS:
        return "scores per-pixel masks"
    if task == "multilabel":
        return "scores one class per sample, not several labels"
    return "scores predicted classes"
