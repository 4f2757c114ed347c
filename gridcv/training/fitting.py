"""Keras's ``fit`` loop, able to start in the middle of an epoch.

Keras's ``fit`` starts at an epoch (``initial_epoch``) but not at a batch, and every epoch of
one call has the same number of steps, so a fold resumed from a checkpoint taken inside an
epoch cannot finish that epoch through it; two calls would run ``on_train_end`` (EarlyStopping
restoring its best weights, an EMA optimizer swapping in its averages) in the middle of
training. This is the TensorFlow trainer's loop (``keras/src/backend/tensorflow/trainer.py``,
Keras 3), step for step, for what gridcv passes it (a generator of batches, validation
batches, callbacks), plus a start position and a :class:`Checkpointer` told of every batch and
epoch. Uninterrupted and resumed folds both train through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import keras

from gridcv.training.batches import IndexBatches


@dataclass(frozen=True)
class Position:
    """Where training stands: epochs completed, and batches of the next epoch completed."""

    epoch: int
    batch: int = 0


class Checkpointer(Protocol):
    """What the loop tells of its progress (see :class:`gridcv.training.checkpointing.FoldCheckpoints`)."""

    def train_begin(self) -> None:
        """After the callbacks' ``on_train_begin``: put back their saved state."""
        ...

    def epoch_begin(self, epoch: int, first: int) -> None:
        """After the callbacks' ``on_epoch_begin``; ``first`` > 0 when the epoch resumes at that batch."""
        ...

    def batch_end(self, epoch: int, done: int, batches: int) -> bool:
        """``done`` batches of ``epoch`` are trained; True to stop training now (it checkpointed)."""
        ...

    def epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        """After the callbacks' ``on_epoch_end``: the epoch is over (a stop request sets ``stop_training``)."""
        ...


def train(
    model: keras.Model,
    batches: IndexBatches,
    validation: IndexBatches | None,
    callbacks: list[keras.callbacks.Callback],
    start: Position,
    epochs: int,
    checkpointer: Checkpointer,
) -> None:
    """Trains ``model`` from ``start`` to the end of epoch ``epochs - 1``, as ``fit`` would.

    Callbacks see what ``fit`` shows them: ``on_train_begin``, each epoch's ``on_epoch_begin``,
    ``on_train_batch_begin``/``end`` with the batch's index in its epoch, validation through
    ``evaluate``, ``on_epoch_end`` with its logs, ``on_train_end``; ``stop_training`` set by one
    of them ends the epoch (validated, as in ``fit``) and training. An epoch resumed at batch
    ``b`` runs ``on_epoch_begin`` again, then the checkpointer puts back the state saved at ``b``.
    """
    n_batches = len(batches)
    callbacks_list = keras.callbacks.CallbackList(
        [*callbacks, CheckpointEachEpoch(checkpointer)],
        add_history=True,
        add_progbar=False,
        model=model,
        verbose=0,
        epochs=epochs,
        steps=n_batches,
    )
    model.stop_training = False
    model.make_train_function()
    callbacks_list.on_train_begin()  # the checkpointer's train_begin comes last
    training_logs = None
    for epoch in range(start.epoch, epochs):
        first = start.batch if epoch == start.epoch else 0
        model.reset_metrics()
        callbacks_list.on_epoch_begin(epoch)
        checkpointer.epoch_begin(epoch, first)
        logs = _train_epoch(model, batches, epoch, first, callbacks_list, checkpointer)
        if logs is None:  # stopped on request inside the epoch, after a checkpoint
            break
        epoch_logs = dict(_metrics_or_logs(model, logs))
        if validation is not None:
            val_logs = model.evaluate(validation, callbacks=callbacks_list, return_dict=True, verbose=0)
            epoch_logs.update({f"val_{name}": value for name, value in val_logs.items()})
        callbacks_list.on_epoch_end(epoch, epoch_logs)  # the checkpointer's epoch_end comes last
        training_logs = epoch_logs
        if model.stop_training:
            break
    if isinstance(model.optimizer, keras.optimizers.Optimizer) and epochs > 0:
        model.optimizer.finalize_variable_values(model.trainable_weights)
    callbacks_list.on_train_end(logs=training_logs)


class CheckpointEachEpoch(keras.callbacks.Callback):
    """Tells the checkpointer of training's start and of each epoch's end, as the last callback: at
    the start it puts back the others' saved state after their ``on_train_begin`` reset it; at an
    epoch's end it sees the logs as the others left them (ReduceLROnPlateau adds ``learning_rate``)
    and their state after the epoch.

    :func:`train` drives it for gridcv's own batches (which also checkpoint inside epochs), and
    Keras's ``fit`` for a user's pipeline (:func:`gridcv.training.user_feeds.fit_user_feed`,
    checkpointed at epoch ends only).
    """

    def __init__(self, checkpointer: Checkpointer) -> None:
        super().__init__()
        self.checkpointer = checkpointer

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.checkpointer.train_begin()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.checkpointer.epoch_end(epoch, logs or {})


def _train_epoch(
    model: keras.Model,
    batches: IndexBatches,
    epoch: int,
    first: int,
    callbacks: keras.callbacks.CallbackList,
    checkpointer: Checkpointer,
) -> Any:
    """Trains batches ``first ..`` of ``epoch``; the last step's logs, or None if stopped on request."""
    n_batches = len(batches)
    per_call = max(1, int(getattr(model, "steps_per_execution", 1) or 1))
    logs: Any = model.get_metrics_result() if first else {}
    with batches.epoch(epoch, first) as iterator:
        for begin in range(first, n_batches, per_call):
            end = min(begin + per_call, n_batches) - 1
            callbacks.on_train_batch_begin(begin)
            logs = model.train_function(iterator)
            callbacks.on_train_batch_end(end, logs)
            if checkpointer.batch_end(epoch, end + 1, n_batches):
                return None
            if model.stop_training:
                break
    return logs


def _metrics_or_logs(model: keras.Model, logs: Any) -> Any:
    """The model's metrics when the step's logs name the same ones (Keras's ``_get_metrics_result_or_logs``)."""
    metric_logs = model.get_metrics_result()
    if isinstance(logs, dict) and set(logs) == set(metric_logs):
        return metric_logs
    return logs


def build_metrics(model: keras.Model, batch: tuple[Any, ...]) -> None:
    """Creates the compiled metrics' variables before training, so saved values can be put in them.

    Without a distribution strategy Keras creates them while tracing the first training step; this
    is what it does under one (``Trainer._symbolic_build``): shapes only, no step is run.
    """
    model._symbolic_build(data_batch=batch)
