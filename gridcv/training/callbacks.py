"""Callbacks named in the experiment file, and their state across a resume.

A resumed fold must continue as if it had never stopped, so the state of
stateful callbacks is saved in each epoch checkpoint: :func:`states_of` takes
it (JSON plus arrays, e.g. EarlyStopping's best weights) and
:func:`restore_states` puts it back. A callback of the user's own can take
part by defining ``get_state() -> dict`` and ``set_state(dict)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from gridcv.config.training import CallbackSpec
from gridcv.errors import BuilderError
from gridcv.execution.messages import FoldJob
from gridcv.refs import Ref
from gridcv.training.compiling import first_sentence
from gridcv.training.history import minimizes
from gridcv.training.saving import save_model_atomic


class BestModelCheckpoint(keras.callbacks.Callback):
    """Keeps the fold's best model by ``monitor`` (``model_checkpoint`` in the file).

    Unlike Keras's ModelCheckpoint the file is written atomically, and the
    best value survives a resume through :func:`states_of`.
    """

    def __init__(
        self, path: Path | None, monitor: str = "val_loss", mode: str = "auto", min_delta: float = 0.0
    ) -> None:
        super().__init__()
        self.path = path
        self.monitor = monitor
        self.minimize = minimizes(monitor, mode)
        self.min_delta = abs(min_delta)
        self.best: float | None = None
        self.best_epoch: int | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        current = (logs or {}).get(self.monitor)
        if current is None:
            return
        current = float(current)
        if self.best is None or (
            current < self.best - self.min_delta if self.minimize else current > self.best + self.min_delta
        ):
            self.best, self.best_epoch = current, epoch
            if self.path is not None:
                save_model_atomic(self.model, self.path)


def make_callbacks(job: FoldJob, monitored: bool) -> list[keras.callbacks.Callback]:
    """The callbacks of ``fit.callbacks``, in the order given.

    Args:
        job: The fold (its options name the callbacks and the results folder).
        monitored: Whether ``fit`` gets validation data; without it (a refit
            without ``validation_split_from_train``), callbacks that monitor a
            ``val_`` metric are left out, as they would never see one.

    Raises:
        BuilderError: A callback cannot be made (its arguments are refused), or one of
            the user's cannot be imported or is not a Keras callback.
    """
    out: list[keras.callbacks.Callback] = []
    for index, spec in enumerate(job.training.callbacks):
        kwargs = spec.arguments(job.params)
        if not monitored and spec.name in {"early_stopping", "reduce_lr_on_plateau", "model_checkpoint"}:
            if str(kwargs.get("monitor", "val_loss")).startswith("val_"):
                continue
        try:
            out.append(_callback(spec, index, job))
        except BuilderError:
            raise
        except Exception as exc:  # every fold would make it the same way: stop the run, say which
            given = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
            raise BuilderError(
                f"{job.data.where}: key 'fit.callbacks[{index}]' ({spec.name}, {given or 'no arguments'}) cannot be "
                f"made: {type(exc).__name__}: {first_sentence(exc)} Fix its arguments."
            ) from None
    return out


def _callback(spec: CallbackSpec, index: int, job: FoldJob) -> keras.callbacks.Callback:
    """One callback of ``fit.callbacks``, with the candidate's grid keys ``<name>.<argument>`` applied."""
    kwargs = spec.arguments(job.params)
    results = job.training.results_dir
    if spec.name == "early_stopping":
        return keras.callbacks.EarlyStopping(**kwargs)
    if spec.name == "reduce_lr_on_plateau":
        return keras.callbacks.ReduceLROnPlateau(**kwargs)
    if spec.name == "model_checkpoint":
        keep = kwargs.pop("save_models", "best") == "best" and results is not None
        path = results / "models" / f"{job.task.task_id}.keras" if keep and results else None
        return BestModelCheckpoint(path, **kwargs)
    if spec.name == "tensorboard":
        _require_tensorboard(job)
        folder = (results or job.checkpoint_dir) / "tensorboard" / job.task.task_id
        return keras.callbacks.TensorBoard(log_dir=str(folder), **kwargs)
    return _user_callback(spec, index, job)


def _require_tensorboard(job: FoldJob) -> None:
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        raise BuilderError(
            f"{job.data.where}: key 'fit.callbacks' names tensorboard, which needs the "
            "tensorboard package to write its logs. Install it (pip install 'gridcv[tensorboard]') "
            "or remove the callback."
        )


def _user_callback(spec: CallbackSpec, index: int, job: FoldJob) -> keras.callbacks.Callback:
    where = job.data.where
    ref = Ref.parse(spec.name, f"fit.callbacks[{index}].name", where, role="callback", what="ClassName")
    cls = ref.load(job.base_dir, where, BuilderError)
    callback = cls(**spec.arguments(job.params))
    if not isinstance(callback, keras.callbacks.Callback):
        raise BuilderError(
            f"{where}: key 'fit.callbacks' names {spec.name}, which made a {type(callback).__name__}, not a "
            "keras.callbacks.Callback. Subclass keras.callbacks.Callback."
        )
    return callback


def monitor_of(callbacks: Sequence[keras.callbacks.Callback]) -> tuple[str, str]:
    """The (monitor, mode) that defines a fold's best epoch: the first monitoring callback's."""
    for cb in callbacks:
        if isinstance(cb, BestModelCheckpoint):
            return cb.monitor, "min" if cb.minimize else "max"
        if isinstance(cb, (keras.callbacks.EarlyStopping, keras.callbacks.ReduceLROnPlateau)):
            return cb.monitor, cb.mode
    return "val_loss", "min"


# --- state across a resume -----------------------------------------------------------------


def _number(value: Any) -> float | None:
    return None if value is None else float(np.asarray(value))


def callback_state(cb: keras.callbacks.Callback) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The resumable state of one callback: a JSON-able dict and named arrays."""
    if isinstance(cb, keras.callbacks.EarlyStopping):
        weights = cb.best_weights or []
        state = {
            "wait": int(cb.wait),
            "stopped_epoch": int(cb.stopped_epoch),
            "best": _number(cb.best),
            "best_epoch": int(getattr(cb, "best_epoch", 0)),
            "has_best_weights": cb.best_weights is not None,
        }
        return state, {f"best_weights/{i:05d}": np.asarray(w) for i, w in enumerate(weights)}
    if isinstance(cb, keras.callbacks.ReduceLROnPlateau):
        return {"wait": int(cb.wait), "cooldown_counter": int(cb.cooldown_counter), "best": _number(cb.best)}, {}
    if isinstance(cb, BestModelCheckpoint):
        return {"best": cb.best, "best_epoch": cb.best_epoch}, {}
    if callable(getattr(cb, "get_state", None)) and callable(getattr(cb, "set_state", None)):
        return dict(cb.get_state()), {}
    return {}, {}


def restore_callback_state(cb: keras.callbacks.Callback, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Puts back what :func:`callback_state` took (call after the callback's ``on_train_begin``)."""
    if not state:
        return
    if isinstance(cb, keras.callbacks.EarlyStopping):
        cb.wait, cb.stopped_epoch, cb.best, cb.best_epoch = (
            state["wait"],
            state["stopped_epoch"],
            state["best"],
            state["best_epoch"],
        )
        cb.best_weights = [arrays[k] for k in sorted(arrays)] if state["has_best_weights"] else None
    elif isinstance(cb, keras.callbacks.ReduceLROnPlateau):
        cb.wait, cb.cooldown_counter, cb.best = state["wait"], state["cooldown_counter"], state["best"]
    elif isinstance(cb, BestModelCheckpoint):
        cb.best, cb.best_epoch = state["best"], state["best_epoch"]
    elif callable(getattr(cb, "set_state", None)):
        cb.set_state(state)


def without_state(callbacks: Sequence[keras.callbacks.Callback]) -> list[str]:
    """Class names of the user's callbacks a checkpoint cannot resume: no ``get_state()``/``set_state()``."""
    known = (
        keras.callbacks.EarlyStopping,
        keras.callbacks.ReduceLROnPlateau,
        keras.callbacks.TensorBoard,
        BestModelCheckpoint,
    )
    return [
        type(cb).__name__
        for cb in callbacks
        if not isinstance(cb, known)
        and not (callable(getattr(cb, "get_state", None)) and callable(getattr(cb, "set_state", None)))
    ]


def _key(index: int, cb: keras.callbacks.Callback) -> str:
    return f"{index}:{type(cb).__name__}"


def states_of(callbacks: Sequence[keras.callbacks.Callback]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Every callback's state, keyed by position and class, for the epoch checkpoint."""
    states: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for i, cb in enumerate(callbacks):
        state, named = callback_state(cb)
        if state or named:
            states[_key(i, cb)] = state
            arrays.update({f"{_key(i, cb)}/{name}": a for name, a in named.items()})
    return states, arrays


def restore_states(
    callbacks: Sequence[keras.callbacks.Callback], states: dict[str, Any], arrays: dict[str, np.ndarray]
) -> None:
    """Restores what :func:`states_of` saved; entries for other callbacks are ignored."""
    for i, cb in enumerate(callbacks):
        key = _key(i, cb)
        mine = {name.removeprefix(f"{key}/"): a for name, a in arrays.items() if name.startswith(f"{key}/")}
        restore_callback_state(cb, states.get(key, {}), mine)
