"""``data: kind: python``: the user's own pipeline, known to gridcv by its targets. No Keras.

The parent plans from the targets alone: ``labels:`` (and ``groups:``) are a
function of the user's (``file.py:function``, called with no arguments) or a
``.npy`` file. The ``factory:`` that makes the batches runs in the worker
(:mod:`gridcv.training.user_data`); this module only knows how it is called.
A labels function may live in a module that imports Keras (a tutorial's
``Sequence`` class sits beside it): the runner then calls it in a child
process (:mod:`gridcv.execution.calls`), so the runner itself never imports it.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from gridcv.config.data import PythonData
from gridcv.config.tasks import TaskOrigin
from gridcv.data.inputs import InputFormat
from gridcv.data.targets import Targets, array_targets
from gridcv.errors import DataError
from gridcv.refs import Ref

FACTORY_CALL = "make(indices, batch_size, seed, training)"
# Calls a function with arguments, maybe in another process (the runner's choice); by default here.
Caller = Callable[..., Any]
_cache: dict[tuple[str, ...], tuple[np.ndarray, np.ndarray | None]] = {}


def _direct(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


class PythonSource:
    """The samples of a user pipeline: their targets and groups in memory, their inputs the factory's.

    ``input_shape`` is known once the worker has seen the factory's first batch
    (:meth:`with_input_shape`); ``read`` is not available: batches come from the factory.
    """

    def __init__(self, spec: PythonData, where: str, targets: Targets, groups: np.ndarray | None) -> None:
        self.spec = spec
        self.where = where
        self.task = targets.task
        self.task_origin: TaskOrigin = targets.origin
        self._targets = targets
        self._groups = groups
        self._input_shape: tuple[int, ...] | None = None

    def with_input_shape(self, shape: tuple[int, ...]) -> PythonSource:
        """The same source, knowing the shape of one input sample."""
        other = PythonSource(self.spec, self.where, self._targets, self._groups)
        other._input_shape = shape
        return other

    @property
    def n_samples(self) -> int:
        return len(self._targets.values)

    @property
    def input_shape(self) -> tuple[int, ...]:
        if self._input_shape is None:
            raise RuntimeError("the input shape of kind: python data is known from the factory's first batch")
        return self._input_shape

    @property
    def n_classes(self) -> int:
        return self._targets.n_outputs

    def labels(self) -> np.ndarray:
        return self._targets.values

    def groups(self) -> np.ndarray | None:
        return self._groups

    def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise DataError(f"{self.where}: data of kind: python is read through data.factory, not by index.")

    def describe(self) -> InputFormat:
        """The pipeline prepares its own inputs: gridcv records the task and the outputs (input shape and
        dtype are the factory's, unknown to the runner)."""
        return InputFormat(self.task, self._input_shape or (), "", tuple(range(self.n_classes)), "python")


def open_python(
    spec: PythonData, base_dir: Path, where: str, task: str | None, call: Caller | None = None
) -> PythonSource:
    """Checks the factory's reference and reads the targets and groups (see :func:`read_targets`).

    Args:
        spec: The validated ``data:`` section.
        base_dir: The experiment file's folder.
        where: The experiment file, for messages.
        task: The declared task, or None to infer it from the labels.
        call: How to call :func:`read_targets` (the runner calls it in a child process).

    Raises:
        ConfigError: The factory (or a labels/groups function) cannot be found.
        DataError: The labels or groups are unusable, or do not fit the task.
    """
    Ref.parse(spec.factory, "data.factory", where).check(base_dir, where)
    labels, groups = (call or _direct)(read_targets, spec, base_dir, where)
    targets = array_targets(labels, task, spec.labels, where, key="data.labels")
    if groups is not None and len(groups) != len(labels):
        raise DataError(
            f"{where}: keys 'data.labels' and 'data.groups' disagree: {spec.labels} gives {len(labels)} labels but "
            f"{spec.groups} gives {len(groups)} groups. Give one label and one group per sample, in the same order."
        )
    return PythonSource(spec, where, targets, groups)


def read_targets(spec: PythonData, base_dir: Path, where: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The labels and groups ``data.labels`` and ``data.groups`` name, as arrays (cached per process).

    Raises:
        DataError: A function raised or returned something that is not one value (or row) per sample.
    """
    key = (spec.labels, spec.groups or "", str(base_dir), *(_stamp(r, base_dir) for r in (spec.labels, spec.groups)))
    if key not in _cache:
        labels = _array(spec.labels, "data.labels", base_dir, where)
        groups = None if spec.groups is None else _array(spec.groups, "data.groups", base_dir, where)
        _cache[key] = (labels, groups)
    return _cache[key]


def _stamp(text: str | None, base_dir: Path) -> str:
    """What tells an edited file from the one cached: its modification time and size."""
    if text is None:
        return ""
    path = Path(text.partition(":")[0] if is_reference(text) else text)
    path = path if path.is_absolute() else base_dir / path
    stat = path.stat() if path.is_file() else None
    return "" if stat is None else f"{stat.st_mtime_ns}:{stat.st_size}"


def is_reference(text: str) -> bool:
    """Whether ``labels:``/``groups:`` names a function (``file.py:function``) rather than a ``.npy`` file."""
    return not text.endswith(".npy")


def _array(text: str, key: str, base_dir: Path, where: str) -> np.ndarray:
    if not is_reference(text):
        path = Path(text).expanduser()
        path = path if path.is_absolute() else base_dir / path
        if not path.is_file():
            raise DataError(f"{where}: key '{key}' points at {path}, which does not exist. Fix the path.")
        return np.load(path, allow_pickle=False)
    ref = Ref.parse(text, key, where)
    ref.check(base_dir, where)
    function = ref.load(base_dir, where, DataError)
    try:
        value = function()
    except Exception as exc:
        raise DataError(
            f"{where}: key '{key}': {text}() raised {type(exc).__name__}: {exc}. gridcv calls it with no arguments; "
            "it returns one value per sample."
        ) from None
    array = np.asarray(value)
    if array.ndim == 0 or array.dtype == object:
        raise DataError(
            f"{where}: key '{key}': {text}() returned {type(value).__name__} ({str(value)[:80]}), not one value per "
            "sample. Return a list or a numpy array with one entry (or row) per sample."
        )
    return array


def factory_parameters(spec: PythonData, base_dir: Path) -> list[str] | None:
    """The factory's parameter names, read from its source without importing it; None when unknown."""
    ref = Ref.parse(spec.factory, "data.factory", "")
    file = ref.own_source(base_dir)
    if file is None or not file.is_file():
        return None
    try:
        tree = ast.parse(file.read_text(encoding="utf-8"))
    except SyntaxError:
        return None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == ref.name:
            args = node.args
            return [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
    return None


def resume_note(spec: PythonData, base_dir: Path) -> str:
    """What a run with the user's own pipeline says once: what holds, and what cannot."""
    parameters = factory_parameters(spec, base_dir) or []
    holds = (
        f"data: kind: python: every epoch is checkpointed, a killed fold resumes from its last epoch, an out-of-memory "
        f"fold is retried with half the batch ({spec.factory} is called again with it), and each fold is scored on "
        "its validation samples. Not promised: a bit-for-bit resume of a pipeline that draws its shuffling or "
        "augmentation from its own random state or numpy's, Python's or TensorFlow's global one"
    )
    if "epoch" in parameters:
        return (
            f"{holds}. The factory takes epoch, so gridcv makes the pipeline afresh for every epoch: batches drawn "
            "from (seed, epoch) alone resume exactly."
        )
    return (
        f"{holds}: the factory is called once per fold (a generator once per epoch), so after a resume such a "
        "pipeline restarts its random state and later epochs see other batch orders than an uninterrupted run. "
        "To resume exactly, give the factory an epoch parameter and draw from (seed, epoch)."
    )
