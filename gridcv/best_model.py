"""The refit model and what it needs to be used: ``best_model.keras`` and ``best_model.json``.

The refit (:mod:`gridcv.runner.refit`) writes both; :func:`load_best_model` loads
the model into the caller's process (Keras is imported then, not before) and
attaches :class:`BestModelInfo` as its ``gridcv_info`` attribute: the
candidate, its cross-validated scores, the class names in output order and
how inputs were prepared (:class:`~gridcv.data.inputs.InputFormat`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gridcv.data.inputs import InputFormat
from gridcv.errors import ResultsError
from gridcv.folders import BEST_JSON, BEST_MODEL, results_folder


@dataclass(frozen=True)
class BestModelInfo:
    """What ``best_model.json`` says of the refit model.

    A frozen dataclass: Keras's attribute tracking leaves it as it is when it is
    set on a model (it wraps lists and dicts, not other objects).

    Attributes:
        file: The ``best_model.keras`` file.
        params: The refit candidate's parameters.
        candidate_index: Its index in ``cv_results_``.
        refit_scorer: The scorer that ranked it first.
        cv: Its ``mean_*``, ``std_*`` and ``rank_*`` values of ``cv_results_``.
        refit: How the refit trained: epochs, batch size, fit time, samples, precision.
        inputs: How inputs were prepared and the class names (None in files written
            before gridcv recorded them).
        task_id: The refit task's id in the results store (None in old files).
    """

    file: Path
    params: dict[str, Any]
    candidate_index: int
    refit_scorer: str
    cv: dict[str, Any] = field(repr=False)
    refit: dict[str, Any] = field(repr=False)
    inputs: InputFormat | None
    task_id: str | None = None

    @property
    def classes(self) -> tuple[str | int, ...] | None:
        """Class names in label order: output unit ``i`` is ``classes[i]``."""
        return None if self.inputs is None else self.inputs.classes

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """Shape of one input sample."""
        return None if self.inputs is None else self.inputs.input_shape

    @classmethod
    def from_summary(cls, summary: Mapping[str, Any], file: Path) -> BestModelInfo:
        """Reads the content of ``best_model.json``."""
        inputs = summary.get("inputs")
        return cls(
            file=file,
            params=dict(summary.get("params") or {}),
            candidate_index=int(summary.get("candidate_index", -1)),
            refit_scorer=str(summary.get("refit_scorer", "")),
            cv=dict(summary.get("cv_results") or {}),
            refit=dict(summary.get("refit") or {}),
            inputs=None if inputs is None else InputFormat.from_dict(inputs),
            task_id=summary.get("task_id"),
        )


def read_best_model_info(folder: Path) -> BestModelInfo | None:
    """The refit's ``best_model.json`` in a results folder, or None if there is none (or no model)."""
    model = folder / BEST_MODEL
    return _info_beside(model) if model.is_file() else None


def _info_beside(file: Path) -> BestModelInfo | None:
    summary = file.with_name(BEST_JSON)
    if not summary.is_file():
        return None
    return BestModelInfo.from_summary(json.loads(summary.read_text(encoding="utf-8")), file)


def _model_file(path: str | Path) -> Path:
    p = Path(path).expanduser()
    file = p if p.suffix == ".keras" else results_folder(p) / BEST_MODEL
    if not file.is_file():
        raise ResultsError(
            f"{path}: no refit model here (expected {file}). Set 'refit:' in the experiment file "
            "(a scorer name, or true with one scorer) and run it to completion."
        )
    return file


def load_best_model_info(path: str | Path) -> BestModelInfo:
    """What the refit model is and expects, without loading it (no Keras).

    Args:
        path: The results folder, the experiment file, or the ``.keras`` file itself.

    Raises:
        ResultsError: There is no refit model (or no ``best_model.json`` beside it) at ``path``.
    """
    file = _model_file(path)
    info = _info_beside(file)
    if info is None:
        raise ResultsError(f"{path}: no {BEST_JSON} beside {file}; it is written with the refit model.")
    return info


def load_best_model(path: str | Path, custom_objects: dict[str, Any] | None = None, compile: bool = True) -> Any:
    """Loads the refit model (``best_model.keras``) of a results folder.

    Imports Keras when called (importing gridcv does not). The model's
    ``gridcv_info`` attribute is its :class:`BestModelInfo` (None without a
    ``best_model.json``): ``model.gridcv_info.classes`` names its outputs and
    ``model.gridcv_info.inputs`` says how to prepare inputs
    (``model.gridcv_info.inputs.read_images(paths)`` decodes image files the way
    training did).

    Args:
        path: The results folder, the experiment file, or the ``.keras`` file itself.
        custom_objects: Custom layers or functions the model uses, by name.
        compile: Restore the optimizer and loss too.

    Returns:
        The ``keras.Model``.

    Raises:
        ResultsError: There is no refit model at ``path``.
    """
    file = _model_file(path)
    info = _info_beside(file)
    from gridcv.training.saving import load_model  # Keras, in the caller's process: only when asked

    model = load_model(file, None if info is None else info.refit.get("precision"), custom_objects, compile)
    model.gridcv_info = info
    return model
