"""Checks of the experiment file that its schema cannot express.

Each raises a :class:`~gridcv.errors.ConfigError` whose one paragraph names
the file, the key and the fix. Nothing here imports Keras: optimizer and
callback names are checked against :mod:`gridcv.config.training`'s lists;
splitters and scorers against scikit-learn.
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any, get_args

from pydantic import ValidationError

from gridcv.config.data import (
    SEGMENTATION_SCORERS,
    AugmentSpec,
    DataSection,
    ImagesData,
    PythonData,
    is_segmentation,
)
from gridcv.config.explain import unknown_key
from gridcv.config.schema import CVSpec, ExperimentSpec
from gridcv.config.tasks import DECLARED, check_task
from gridcv.config.training import ARGUMENT_TYPES, CALLBACKS, OPTIMIZERS, PRECISIONS
from gridcv.errors import ConfigError, did_you_mean
from gridcv.refs import Ref

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def check_experiment(path: str | Path, spec: ExperimentSpec) -> None:
    """Every check below, in the order a user would fix them."""
    if not _NAME.match(spec.name):
        raise ConfigError(
            f"{path}: key 'name' is {spec.name!r}; it names the results folder, so use letters, "
            "digits, '.', '_' and '-' only (for example 'digits-cnn')."
        )
    Ref.parse(spec.model, "model", str(path), role="builder")
    if spec.data.prepare:
        Ref.parse(spec.data.prepare, "data.prepare", str(path))
    if isinstance(spec.data, PythonData):
        _check_python_data(path, spec, spec.data)
    _check_grid(path, spec)
    _check_splitter(path, spec.cv)
    _check_task_fits_the_data(path, spec)
    _check_scorers(path, spec.scorers(), segmentation=is_segmentation(spec.data))
    _check_segmentation(path, spec)
    if spec.task is not None:
        check_task(path, spec, spec.task, DECLARED)
    _check_refit(path, spec.refit, spec.scorers())
    check_optimizer(path, "compile.optimizer", spec.compile.optimizer)
    _check_callbacks(path, spec)
    _check_monitoring(path, spec)


def check_splitter_arguments(path: str | Path, cv: dict[str, Any]) -> None:
    """The splitter exists and takes the given arguments (checked on the raw section, before validation)."""
    name = cv.get("splitter", "StratifiedKFold")
    cls = _splitter_class(str(name))
    if cls is None:
        names = _splitter_names()
        raise ConfigError(
            f"{path}: key 'cv.splitter' is {name!r}, which is not a scikit-learn splitter.{did_you_mean(name, names)} "
            f"Use one of {', '.join(names)}."
        )
    accepted = [p for p in inspect.signature(cls).parameters if p not in {"self"}]
    for key in cv:
        if key != "splitter" and key not in accepted:
            raise ConfigError(
                f"{path}: {unknown_key(key, 'cv', ['splitter', *accepted])} "
                f"({name} takes {', '.join(accepted) or 'no arguments'})."
            )


def check_optimizer(path: str | Path, key: str, name: Any) -> None:
    """The optimizer is one of Keras's, by name."""
    if isinstance(name, str) and name.lower() in OPTIMIZERS:
        return
    hint = did_you_mean(str(name).lower(), OPTIMIZERS)
    raise ConfigError(
        f"{path}: key '{key}' is {name!r}, which is not a Keras optimizer.{hint} "
        f"Use one of {', '.join(OPTIMIZERS)} (case does not matter)."
    )


# --- grid ---------------------------------------------------------------------------------


def _check_grid(path: str | Path, spec: ExperimentSpec) -> None:
    grids = spec.grid_dicts()
    if not grids:
        raise ConfigError(f"{path}: key 'grid' is an empty list; give at least one dict of lists.")
    for i, grid in enumerate(grids):
        where = "grid" if isinstance(spec.grid, dict) else f"grid[{i}]"
        for key, values in grid.items():
            _check_grid_values(path, f"{where}.{key}", key, values)
            _check_callback_grid_key(path, spec, f"{where}.{key}", key, values)


def _check_grid_values(path: str | Path, where: str, key: str, values: list[Any]) -> None:
    if not values:
        raise ConfigError(f"{path}: key '{where}' is an empty list; give at least one value or remove the key.")
    try:
        json.dumps(values)
    except TypeError:
        raise ConfigError(
            f"{path}: key '{where}' holds values that are not plain numbers, "
            "strings, booleans, null or lists of those; use plain YAML values."
        ) from None
    _check_data_grid_key(path, where, key, values)
    if key in ("epochs", "batch_size", "gradient_accumulation_steps"):
        if not all(isinstance(v, int) and v > 0 for v in values):
            owner = "compile" if key == "gradient_accumulation_steps" else "fit"
            raise ConfigError(
                f"{path}: key '{where}' overrides {owner}.{key} and must hold positive integers, got {values!r}."
            )
    if key == "precision" and not all(v in PRECISIONS for v in values):
        raise ConfigError(
            f"{path}: key '{where}' overrides fit.precision and must hold {', '.join(PRECISIONS)}, got {values!r}."
        )
    if key == "optimizer":
        for value in values:
            check_optimizer(path, where, value)


def _check_data_grid_key(path: str | Path, where: str, key: str, values: list[Any]) -> None:
    """Grid keys ``augment`` and ``balance`` override ``data.augment`` and ``data.balance``."""
    if key == "balance":
        allowed = get_args(DataSection.model_fields["balance"].annotation)
        bad = [v for v in values if v not in allowed]
        if bad:
            raise ConfigError(
                f"{path}: key '{where}' overrides data.balance and must hold values from "
                f"{', '.join(repr(a) for a in allowed)}, got {bad[0]!r}."
            )
    if key == "augment":
        for value in values:
            if isinstance(value, bool):
                continue
            try:
                AugmentSpec.model_validate(value)
            except ValidationError as exc:
                raise ConfigError(
                    f"{path}: key '{where}' overrides data.augment and must hold true (data.augment as "
                    "declared), false (no augmentation) or a mapping of augment keys "
                    f"({', '.join(AugmentSpec.model_fields)}); {value!r} is none of those "
                    f"({exc.errors()[0]['msg']})."
                ) from None


# --- data, splitter, scorers --------------------------------------------------------------


def _check_segmentation(path: str | Path, spec: ExperimentSpec) -> None:
    data = spec.data
    if not is_segmentation(data):
        return
    mask_key = "data.masks" if isinstance(data, ImagesData) else "data.mask_column"
    if getattr(data, "n_classes", None) is None:
        raise ConfigError(
            f"{path}: key 'data.n_classes' is missing; with {mask_key} set, the data is a segmentation "
            "task and masks hold class ids 0 .. n_classes-1, so give their number (e.g. n_classes: 3)."
        )
    balances = {getattr(data, "balance", "none"), *(v for g in spec.grid_dicts() for v in g.get("balance", []))}
    if balances - {"none"}:
        raise ConfigError(
            f"{path}: key 'data.balance' (or grid key 'balance') asks for class balancing, which "
            f"works on one class per sample; with {mask_key} set, labels are per-pixel masks. "
            "Use balance: none (or weight classes in the model's loss)."
        )


def _check_python_data(path: str | Path, spec: ExperimentSpec, data: PythonData) -> None:
    """The references of ``kind: python`` are well formed; gridcv's batch options are not its."""
    Ref.parse(data.factory, "data.factory", str(path))
    for key in ("labels", "groups"):
        text = getattr(data, key)
        if text is not None and not text.endswith(".npy"):
            Ref.parse(text, f"data.{key}", str(path))
    for key in ("augment", "balance"):
        if any(key in grid for grid in spec.grid_dicts()):
            raise ConfigError(
                f"{path}: grid key '{key}' overrides data.{key} of gridcv's own batches, but data: kind: python "
                f"makes its batches with data.factory. Remove the key, or take a grid key of your own in the factory "
                "(it gets the candidate's parameters as params= when it names that parameter)."
            )


def _check_task_fits_the_data(path: str | Path, spec: ExperimentSpec) -> None:
    """A declared ``task:`` fits the kind of data: segmentation with masks, classes for class folders."""
    task, data = spec.task, spec.data
    if task is None:
        return
    masks = is_segmentation(data)
    if masks != (task == "segmentation"):
        mask_key = "data.masks" if isinstance(data, ImagesData) else "data.mask_column"
        raise ConfigError(
            f"{path}: key 'task' is {task}, but "
            + (
                f"{mask_key} is set: images paired with per-pixel masks are a segmentation task. Set task: "
                f"segmentation, or remove {mask_key}."
                if masks
                else "the data has no masks: segmentation takes images with masks (kind: images with data.masks, "
                "or kind: csv with data.mask_column). Set them, or another task."
            )
        )
    if isinstance(data, ImagesData) and not masks and task != "classification":
        raise ConfigError(
            f"{path}: key 'task' is {task}, but data: kind: images gives each image the class of its folder. Use "
            "task: classification, or a CSV manifest (kind: csv) with numeric or 0/1 label columns."
        )


def _splitter_class(name: str) -> type | None:
    import sklearn.model_selection as ms

    cls = getattr(ms, name, None)
    return cls if inspect.isclass(cls) and hasattr(cls, "split") and hasattr(cls, "get_n_splits") else None


def _splitter_names() -> list[str]:
    import sklearn.model_selection as ms

    return sorted(n for n in dir(ms) if n[0].isupper() and _splitter_class(n) and "Base" not in n)


def _check_splitter(path: str | Path, cv: CVSpec) -> None:
    cls = _splitter_class(cv.splitter)
    assert cls is not None  # checked before validation
    try:
        cls(**cv.kwargs())
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: key 'cv' does not make a valid {cv.splitter}: {exc}.") from None


def _check_scorers(path: str | Path, names: list[str], segmentation: bool = False) -> None:
    from sklearn.metrics import get_scorer_names

    known = list(SEGMENTATION_SCORERS) if segmentation else get_scorer_names()
    if not names:
        raise ConfigError(f"{path}: key 'scoring' is an empty list; name at least one scorer.")
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: key 'scoring' names a scorer twice ({names}); list each once.")
    for name in names:
        if segmentation and name not in known:
            raise ConfigError(
                f"{path}: key 'scoring' names {name!r}, but the data is a segmentation task (per-pixel "
                f"masks), which is scored with {' or '.join(repr(k) for k in known)}. "
                "Set scoring to one or both of them."
            )
        if name in SEGMENTATION_SCORERS and not segmentation:
            raise ConfigError(
                f"{path}: key 'scoring' names {name!r}, which scores per-pixel masks, but the data has "
                "one class per sample. Set data.masks (or data.mask_column) for segmentation, or use "
                "a classification scorer such as 'accuracy'."
            )
        if name not in known:
            raise ConfigError(
                f"{path}: key 'scoring' names {name!r}, which is not a scikit-learn scorer."
                f"{did_you_mean(name, known, n=3)} See sklearn.metrics.get_scorer_names() for the full list."
            )


# --- training -----------------------------------------------------------------------------


def _check_refit(path: str | Path, refit: bool | str, scorers: list[str]) -> None:
    """Refit names one of the scorers, or is true with a single scorer."""
    if refit is True and len(scorers) > 1:
        raise ConfigError(
            f"{path}: key 'refit' is true but 'scoring' names {len(scorers)} scorers "
            f"({', '.join(scorers)}); with several scorers, set refit to the one that picks the "
            f"best candidate, e.g. 'refit: {scorers[0]}'."
        )
    if isinstance(refit, str) and refit not in scorers:
        raise ConfigError(
            f"{path}: key 'refit' is {refit!r}, which is not one of the scorers in 'scoring' "
            f"({', '.join(scorers)}).{did_you_mean(refit, scorers)} Set refit to one of them, true (one scorer) "
            "or false."
        )


def _check_monitoring(path: str | Path, spec: ExperimentSpec) -> None:
    """``fit.monitor_test_fold`` and ``fit.validation_split_from_train`` name different samples to monitor."""
    fit = spec.fit
    if fit.monitor_test_fold and fit.validation_split_from_train is not None:
        raise ConfigError(
            f"{path}: keys 'fit.monitor_test_fold' and 'fit.validation_split_from_train' are both set, but "
            "callbacks monitor either each fold's test split or a part of its training split, not both. "
            "Remove fit.monitor_test_fold to monitor a part of the training split (recommended: the test "
            "split stays unseen until it is scored), or remove fit.validation_split_from_train."
        )


def check_callback_mapping(path: str | Path, fit: Any) -> None:
    """``fit.callbacks`` written as a mapping gives each callback a mapping of arguments, or nothing
    (checked on the raw section, before validation)."""
    callbacks = fit.get("callbacks") if isinstance(fit, dict) else None
    if not isinstance(callbacks, dict):
        return
    for name, arguments in callbacks.items():
        if arguments is not None and not isinstance(arguments, dict):
            raise ConfigError(
                f"{path}: key 'fit.callbacks.{name}' is {arguments!r}; in a mapping of callbacks, each callback maps "
                f"to its arguments ({name}: {{patience: 3}}) or to nothing ({name}:). Write its arguments as a mapping."
            )


def _check_callbacks(path: str | Path, spec: ExperimentSpec) -> None:
    """Each callback is built in (with known arguments of the right type) or an import path."""
    fit = spec.fit
    for i, callback in enumerate(fit.callbacks):
        key = fit.callback_key(i)
        mapping = key.endswith(f".{callback.name}")
        if callback.is_user_code:
            named = key if mapping else f"{key}.name"
            Ref.parse(callback.name, named, str(path), role="callback", what="ClassName")
            continue
        if callback.name not in CALLBACKS:
            said = f"key '{key}.name' is {callback.name!r}"
            if mapping:
                said = f"key 'fit.callbacks' names {callback.name!r}"
            raise ConfigError(
                f"{path}: {said}, which is not a gridcv callback.{did_you_mean(callback.name, CALLBACKS)} Use one of "
                f"{', '.join(CALLBACKS)}, or 'module:ClassName' for a callback of your own."
            )
        accepted = CALLBACKS[callback.name]
        for arg, value in callback.kwargs().items():
            if arg not in accepted:
                raise ConfigError(
                    f"{path}: unknown key '{arg}' in '{key}'{did_you_mean(arg, accepted, aside=True)}; "
                    f"{callback.name} takes {', '.join(accepted)}."
                )
            _check_argument(path, f"{key}.{arg}", arg, [value])


def _check_argument(path: str | Path, key: str, arg: str, values: list[Any]) -> None:
    """Values of a built-in callback's argument have the type it takes."""
    check, what = ARGUMENT_TYPES[arg]
    for value in values:
        if not check(value):
            raise ConfigError(f"{path}: key '{key}' is {value!r}; use {what}.")


def _check_callback_grid_key(path: str | Path, spec: ExperimentSpec, where: str, key: str, values: list[Any]) -> None:
    """A grid key ``<callback>.<argument>`` overrides an argument of a callback ``fit.callbacks`` lists.

    Other dotted keys are the builder's own parameters, unless they look like a misspelt callback.
    """
    name, dot, arg = key.rpartition(".")
    if not dot:
        return
    listed = [c.name for c in spec.fit.callbacks]
    if name not in listed:
        if name in CALLBACKS:
            raise ConfigError(
                f"{path}: key '{where}' sets the argument {arg} of {name}, which fit.callbacks does not list. Add it "
                f"there (callbacks: {{{name}: {{}}}}); the grid key then sets its {arg} per candidate."
            )
        if close := did_you_mean(name, [*listed, *CALLBACKS]):
            raise ConfigError(
                f"{path}: key '{where}' looks like an argument of a callback, but fit.callbacks has no {name!r}."
                f"{close} Grid keys '<callback>.<argument>' set arguments of the callbacks fit.callbacks lists."
            )
        return
    if listed.count(name) > 1:
        raise ConfigError(
            f"{path}: key '{where}' sets {arg} of {name}, but fit.callbacks lists {name} {listed.count(name)} times, "
            "so which one is unclear. List it once."
        )
    accepted = CALLBACKS.get(name)
    if accepted is None:  # the user's own callback: its constructor decides (in the up-front check)
        return
    if arg not in accepted:
        raise ConfigError(
            f"{path}: key '{where}' sets {arg!r} of {name}, which takes no such argument"
            f"{did_you_mean(arg, accepted, aside=True)}; {name} takes {', '.join(accepted)}."
        )
    _check_argument(path, where, arg, values)
