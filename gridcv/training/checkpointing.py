"""Checkpoints of a fold's whole training state, at epoch ends and within epochs, and resuming from them.

What a checkpoint holds: every variable of the model (the seed-generator state of dropout and
random augmentation layers included) and of the optimizer (its iteration count, learning rate,
moment estimates, gradient accumulators and loss scale included), the global Keras seed
generator's state (``keras.random`` calls without a seed), the history and fit time so far, and
the state of stateful callbacks. Within an epoch it also holds the position (the epoch and the
batches done: the generator's order for the epoch is a pure function of (seed, epoch), so it is
recomputed, not stored) and the metrics' accumulated values (Keras resets them when an epoch
begins and reports their totals when it ends). The file format and its atomic write are
:mod:`gridcv.store.checkpoints`'.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import keras
import numpy as np

from gridcv.config.training import CheckpointInterval
from gridcv.faults import crash_point
from gridcv.store.checkpoints import TrainingState, newest_usable, save_checkpoint
from gridcv.training.batches import IndexBatches
from gridcv.training.callbacks import restore_states, states_of
from gridcv.training.fitting import build_metrics

_METRICS = "keras/metrics/"
_GLOBAL_SEED = "keras/global_seed_generator"


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


def _values(variables: list[Any]) -> list[np.ndarray]:
    return [np.asarray(keras.ops.convert_to_numpy(v)) for v in variables]


def _global_seed_generator(create: bool = False) -> Any:
    """Keras's global seed generator (used by ``keras.random`` calls given no seed), if it exists."""
    from keras.src.backend.common import global_state
    from keras.src.random import seed_generator

    if create:
        return seed_generator.global_seed_generator()
    return global_state.get_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR)


def _metric_arrays(state: TrainingState) -> list[np.ndarray]:
    return [state.arrays[k] for k in sorted(state.arrays) if k.startswith(_METRICS)]


@dataclass
class Restored:
    """What a fold resumes from: the training state, and (within an epoch) the variables' values,
    put back once more when the resumed epoch begins (after callbacks' ``on_epoch_begin``)."""

    state: TrainingState = field(default_factory=TrainingState)
    variables: list[np.ndarray] = field(default_factory=list)


def restore_training_state(
    model: keras.Model, folder: Path, batches: IndexBatches | None, skipped: list[str] | None = None
) -> Restored:
    """Loads the newest usable checkpoint into ``model``; a fresh state if there is none.

    A checkpoint within an epoch also needs the metrics' variables, which Keras creates while
    tracing the first step: they are created first (from a batch's shapes), and a checkpoint whose
    metrics do not match them is passed over for an older one. ``skipped`` gets a line per
    checkpoint passed over (see :func:`newest_usable`).
    """
    model.optimizer.build(model.trainable_variables)  # creates the variables to assign
    variables = training_variables(model)

    def check(state: TrainingState) -> None:
        if state.batch == 0:
            return
        if batches is None:  # a user's pipeline cannot be entered inside an epoch
            raise ValueError("it was written inside an epoch, and this feed resumes at an epoch's start only")
        build_metrics(model, batches.load(state.epoch, 0))
        saved = _metric_arrays(state)
        if variables_signature(saved) != variables_signature(model.metrics_variables):
            raise ValueError("it was written for other metrics")

    found = newest_usable(folder, variables_signature(variables), check, skipped=skipped)
    if found is None:
        return Restored()
    state, arrays = found
    for variable, value in zip(variables, arrays, strict=True):
        variable.assign(value)
    if _GLOBAL_SEED in state.arrays:
        _global_seed_generator(create=True).state.assign(state.arrays[_GLOBAL_SEED])
    return Restored(state, arrays if state.batch else [])


class FoldCheckpoints:
    """Saves the fold's whole training state at every epoch's end and, per ``every``, within epochs.

    The training loop (:func:`gridcv.training.fitting.train`) tells it of each batch and epoch:
    it restores the callbacks' state after their ``on_train_begin`` reset it, saves their state
    after their ``on_epoch_end`` updated it, puts a resumed epoch back where it was after the
    callbacks' ``on_epoch_begin`` ran again, and polls ``should_stop`` after every batch (a stop
    request saves a checkpoint at that batch and ends training). ``on_saved`` hears of each
    saved epoch; :attr:`state` is the newest saved state.
    """

    def __init__(
        self,
        model: keras.Model,
        folder: Path,
        restored: Restored,
        every: CheckpointInterval | None,
        should_stop: Callable[[], bool],
        callbacks: list[keras.callbacks.Callback] | None = None,
        on_saved: Callable[[TrainingState, dict[str, float]], None] | None = None,
    ) -> None:
        self.model = model
        self.folder = folder
        self.restored = restored
        self.every = every
        self.should_stop = should_stop
        self.callbacks = list(callbacks or [])
        self.on_saved = on_saved
        old = restored.state
        self.state = replace(old, history={k: list(v) for k, v in old.history.items()}, extra=dict(old.extra))
        self.saving_time = 0.0  # seconds spent writing checkpoints (not training)
        self._clock = time.perf_counter()  # training time is counted from here to the next save
        self._last_save = time.monotonic()
        self._batches_since = 0
        self._done = 0

    def train_begin(self) -> None:
        restore_states(self.callbacks, self.state.extra.get("callbacks", {}), self.state.arrays)
        self._clock = time.perf_counter()
        self._last_save = time.monotonic()

    def epoch_begin(self, epoch: int, first: int) -> None:
        self._done = first
        if first == 0 or not self.restored.variables:
            return
        # The callbacks' on_epoch_begin ran again for this epoch (a scheduler may have changed the
        # learning rate once more): put back everything as it was at the saved batch.
        for variable, value in zip(training_variables(self.model), self.restored.variables, strict=True):
            variable.assign(value)
        for variable, value in zip(self.model.metrics_variables, _metric_arrays(self.state), strict=True):
            variable.assign(value)
        restore_states(self.callbacks, self.state.extra.get("callbacks", {}), self.state.arrays)
        self.restored = Restored(self.restored.state)  # once

    def batch_end(self, epoch: int, done: int, batches: int) -> bool:
        crash_point("train-batch")
        self._batches_since += done - self._done
        self._done = done
        if done >= batches:
            return False  # the epoch's end saves, and stops if asked to
        stop = self.should_stop()
        if stop or self._due():
            self.state.epoch, self.state.batch = epoch, done
            self._save(metrics=True)
            crash_point("batch-checkpoint")
        return stop

    def epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        for key, value in (logs or {}).items():
            self.state.history.setdefault(key, []).append(float(value))
        self.state.epoch, self.state.batch = epoch + 1, 0
        if self.model.stop_training:  # set by a callback (EarlyStopping): training is over
            self.state.extra["stopped_early"] = True
        self._save(metrics=False)
        if self.on_saved is not None:
            self.on_saved(self.state, {k: float(v) for k, v in (logs or {}).items()})
        if self.should_stop():
            self.model.stop_training = True

    def _due(self) -> bool:
        if self.every is None:
            return False
        if self.every.batches is not None:
            return self._batches_since >= self.every.batches
        assert self.every.seconds is not None
        return time.monotonic() - self._last_save >= self.every.seconds

    def _save(self, metrics: bool) -> None:
        """Writes the state at its position (with the metrics' accumulated values within an epoch)."""
        start = time.perf_counter()
        self.state.fit_time += start - self._clock
        self.state.extra["callbacks"], arrays = states_of(self.callbacks)
        if metrics:
            arrays.update({f"{_METRICS}{i:05d}": a for i, a in enumerate(_values(self.model.metrics_variables))})
        seeds = _global_seed_generator()
        if seeds is not None:
            arrays[_GLOBAL_SEED] = np.asarray(keras.ops.convert_to_numpy(seeds.state))
        self.state.arrays = arrays
        variables = training_variables(self.model)
        save_checkpoint(self.folder, self.state, _values(variables), variables_signature(variables))
        self._batches_since = 0
        self._last_save = time.monotonic()
        self._clock = time.perf_counter()
        self.saving_time += self._clock - start
