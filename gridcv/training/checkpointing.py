"""Epoch checkpoints of a fold's whole training state, and restoring them on resume.

What a checkpoint holds: every variable of the model (dropout seed-generator
state included) and of the optimizer (its iteration count included), the
history and fit time so far, and the state of stateful callbacks. The file
format and its atomic write are :mod:`gridcv.store.checkpoints`'.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from gridcv.store.checkpoints import TrainingState, newest_usable, save_checkpoint
from gridcv.training.callbacks import restore_states, states_of


def training_variables(model: keras.Model) -> list[Any]:
    """Every variable whose value training depends on, in a stable order.

    ``model.variables`` includes non-trainable state such as the seed
    generators of dropout layers; the optimizer's include its iteration count.
    """
    return [*model.variables, *model.optimizer.variables]


def variables_signature(variables: list[Any]) -> list[Any]:
    """Shapes and dtypes, by position: what a checkpoint must match to be restored.

    Not names: Keras derives them from process-wide counters, so the same
    model gets other names in a worker that built models before.
    """
    return [[list(v.shape), str(v.dtype)] for v in variables]


def restore_training_state(model: keras.Model, folder: Path, skipped: list[str] | None = None) -> TrainingState:
    """Loads the newest usable checkpoint into ``model``; a fresh state if there is none.

    ``skipped`` gets a line per damaged checkpoint passed over (see :func:`newest_usable`).
    """
    model.optimizer.build(model.trainable_variables)  # creates the variables to assign
    variables = training_variables(model)
    found = newest_usable(folder, variables_signature(variables), skipped)
    if found is None:
        return TrainingState()
    state, arrays = found
    for variable, value in zip(variables, arrays, strict=True):
        variable.assign(value)
    return state


class EpochCheckpoint(keras.callbacks.Callback):
    """Records history and saves the whole training state at the end of every epoch.

    It must be the last callback: its ``on_train_begin`` restores the other
    callbacks' state after theirs reset it, and its ``on_epoch_end`` saves
    their state after they updated it. ``on_saved`` hears of each saved epoch.
    """

    def __init__(
        self,
        folder: Path,
        state: TrainingState,
        should_stop: Callable[[], bool],
        callbacks: list[keras.callbacks.Callback] | None = None,
        on_saved: Callable[[TrainingState, dict[str, float]], None] | None = None,
    ) -> None:
        super().__init__()
        self.folder = folder
        self.on_saved = on_saved
        self.state = TrainingState(
            state.epoch,
            {k: list(v) for k, v in state.history.items()},
            state.fit_time,
            dict(state.extra),
            dict(state.arrays),
        )
        self.should_stop = should_stop
        self.callbacks = list(callbacks or [])
        self._epoch_start = 0.0

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        restore_states(self.callbacks, self.state.extra.get("callbacks", {}), self.state.arrays)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        for key, value in (logs or {}).items():
            self.state.history.setdefault(key, []).append(float(value))
        self.state.epoch = epoch + 1
        self.state.fit_time += time.perf_counter() - self._epoch_start
        if self.model.stop_training:  # set by an earlier callback (EarlyStopping): training is over
            self.state.extra["stopped_early"] = True
        self.state.extra["callbacks"], self.state.arrays = states_of(self.callbacks)
        variables = training_variables(self.model)
        arrays = [np.asarray(keras.ops.convert_to_numpy(v)) for v in variables]
        save_checkpoint(self.folder, self.state, arrays, variables_signature(variables))
        if self.on_saved is not None:
            self.on_saved(self.state, {k: float(v) for k, v in (logs or {}).items()})
        if self.should_stop():
            self.model.stop_training = True
