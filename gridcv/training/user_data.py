"""The user's own pipeline (``data: kind: python``) in the worker: made by its factory, checked, scored
(fed to fit by :mod:`gridcv.training.user_feeds`).

gridcv calls the factory as ``make(indices, batch_size, seed, training)``, plus
``epoch=`` and ``params=`` (the candidate's parameters) when it names those
parameters: for the fold's training samples (``training=True``), and for the
samples callbacks monitor and the samples scored (``training=False``). It returns:

- a ``keras.utils.PyDataset`` (``Sequence`` is the same class), given to ``fit`` as
  it is: Keras calls its ``on_epoch_end`` and runs its workers;
- a ``tf.data.Dataset`` of batches, given to ``fit`` as it is (an endless one gives
  ``ceil(len(indices) / batch_size)`` batches per epoch);
- a generator of batches, made again for every epoch (it cannot be rewound),
  ``ceil(len(indices) / batch_size)`` batches each;
- any of these as ``(data, steps)``: ``steps`` batches per epoch.

A factory that takes ``epoch`` is called for every epoch, so a pipeline that draws
its randomness from (seed, epoch) alone resumes bit for bit; one that keeps random
state across epochs restarts it on a resume (the run says so once). Batches are
``(x, y)`` or ``(x, y, sample_weight)``; a fold is scored on the targets its
validation batches carry, so those must hold each validation sample once.
"""

from __future__ import annotations

import inspect
import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from gridcv.data.python import FACTORY_CALL, PythonSource
from gridcv.errors import DataError
from gridcv.execution.messages import FoldJob
from gridcv.execution.worker import is_out_of_memory
from gridcv.refs import Ref
from gridcv.training.compiling import first_sentence
from gridcv.training.outputs import OutputLayout
from gridcv.training.scoring import score_predictions
from gridcv.training.user_feeds import GeneratorBatches, UserFeed

_KINDS = "a keras.utils.PyDataset (or Sequence), a tf.data.Dataset, or a generator of (x, y) batches"


@dataclass(frozen=True)
class Made:
    """What one call of the factory returned, understood.

    Attributes:
        kind: ``py_dataset``, ``tf_data`` or ``generator``.
        data: The object itself.
        steps: Batches per epoch; None for a ``tf.data`` pipeline of unknown length (until it ends).
        endless: Whether it never ends (an endless ``tf.data`` pipeline, a generator).
    """

    kind: str
    data: Any
    steps: int | None
    endless: bool = False


class UserPipelines:
    """A fold's factory: checked once, then called for its training, monitored and scored samples.

    Args:
        job: The fold (its batch size and seed are the factory's arguments).
        source: The targets the parent planned with; gets the input shape of the first batch.

    Raises:
        ConfigError, DataError: The factory cannot be imported, takes other arguments, or
            returned something gridcv cannot feed to Keras.
    """

    def __init__(self, job: FoldJob, source: PythonSource) -> None:
        spec = source.spec
        where = job.data.where
        self.job = job
        self.who = f"{where}: key 'data.factory': {spec.factory}"
        self.factory = Ref.parse(spec.factory, "data.factory", where).load(job.base_dir, where, DataError)
        self.parameters = _parameters(self.factory, self.who)
        self.per_epoch = "epoch" in self.parameters
        self.first = self.make(job.fit_idx, training=True, epoch=0)
        x, y = _input_and_targets(self.first, self.who)
        self.source = source.with_input_shape(x)
        # Targets one-hot encoded by the pipeline (a tutorial's to_categorical): scored as class ids.
        self.onehot = source.task == "classification" and len(y) == 2 and y[1] == source.n_classes > 1

    def make(self, indices: np.ndarray, training: bool, epoch: int = 0, batch_size: int | None = None) -> Made:
        """Calls the factory for ``indices`` and understands what it returned."""
        batch = batch_size or self.job.batch_size
        extra: dict[str, Any] = {}
        if self.per_epoch:
            extra["epoch"] = epoch
        if "params" in self.parameters:
            extra["params"] = dict(self.job.params)
        result = self.factory(np.asarray(indices, dtype=np.int64), batch, self.job.task.seed, training, **extra)
        return _understand(result, len(indices), batch, self.who)

    def training_feed(self) -> UserFeed:
        """What ``fit`` trains on (see :class:`UserFeed`)."""
        return UserFeed(self, self.job.fit_idx, self.first)

    def validation(self, indices: np.ndarray) -> Any:
        """What ``fit`` monitors (``validation_data``): finite, one pass per evaluation."""
        made = self.make(indices, training=False)
        if made.kind == "generator":
            return GeneratorBatches(lambda _: self.make(indices, training=False).data, made.steps or 1, 0)
        if made.kind == "tf_data" and made.endless:
            return made.data.take(made.steps)
        return made.data

    def batches(self, indices: np.ndarray, batch_size: int | None = None) -> Iterator[Any]:
        """The batches of ``indices`` made for validation (``training=False``), read once, in order."""
        made = self.make(indices, training=False, batch_size=batch_size)
        if made.kind == "py_dataset":
            return (made.data[i] for i in range(len(made.data)))
        if made.kind == "tf_data":
            data = made.data.take(made.steps) if made.endless else made.data
            return iter(data.as_numpy_iterator())
        return itertools.islice(made.data, made.steps)

    def predictions(self, model: keras.Model, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The targets of the validation batches of ``indices`` and the model's raw outputs for them.

        Raises:
            DataError: The batches do not hold as many samples as ``indices``.
        """
        targets: list[np.ndarray] = []
        outputs: list[np.ndarray] = []
        for batch in self.batches(indices):
            x, y = _x_y(batch, self.who)
            outputs.append(np.asarray(model.predict_on_batch(x)))
            targets.append(np.asarray(y))
        self._check_count(sum(len(t) for t in targets), len(indices))
        return self._targets(np.concatenate(targets)), np.concatenate(outputs)

    def check_validation(self, indices: np.ndarray) -> None:
        """The validation batches of a few samples hold each of them once (the up-front check).

        Raises:
            DataError: They hold another number of samples, or are not ``(x, y)`` batches.
        """
        batches = self.batches(indices, batch_size=max(1, len(indices) // 2))
        self._check_count(sum(len(np.asarray(_x_y(b, self.who)[1])) for b in batches), len(indices))

    def _check_count(self, found: int, given: int) -> None:
        if found != given:
            raise DataError(
                f"{self.who} made validation batches (training=False) of {found} samples for the {given} samples it "
                "was given. A fold is scored on the targets of its validation batches, so they must hold each given "
                "sample once: keep the last, smaller batch, and do not repeat or drop samples."
            )

    def score(
        self, model: keras.Model, indices: np.ndarray, scorers: tuple[str, ...], layout: OutputLayout
    ) -> dict[str, float]:
        """Scores the model on the validation batches of ``indices`` with each named scorer."""
        y_true, raw = self.predictions(model, indices)
        return score_predictions(scorers, y_true, raw, layout)

    def _targets(self, y: np.ndarray) -> np.ndarray:
        """Targets as gridcv scores them: class ids (from one-hot rows too), numbers, 0/1 rows."""
        task, n = self.source.task, self.source.n_classes
        if task == "classification":
            return (y.argmax(axis=1) if self.onehot else y.reshape(len(y))).astype(np.int64)
        if task == "regression" and n == 1:
            return y.reshape(len(y)).astype(np.float64)
        return y


def _parameters(factory: Callable[..., Any], who: str) -> list[str]:
    """The factory's parameter names, once its signature takes gridcv's four arguments."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return []
    named: dict[str, Any] = {k: v for k, v in (("epoch", 0), ("params", {})) if k in signature.parameters}
    try:
        signature.bind(np.arange(1), 1, 0, True, **named)
    except TypeError as exc:
        name = getattr(factory, "__name__", "the factory")
        raise DataError(
            f"{who} takes {name}{signature}, but gridcv calls it as {FACTORY_CALL} ({exc}). Give it these four "
            "parameters (it also gets epoch= and params= when it names them)."
        ) from None
    return list(signature.parameters)


def _is_tf_dataset(value: Any) -> bool:
    import tensorflow as tf

    return isinstance(value, tf.data.Dataset)


def _understand(result: Any, n: int, batch_size: int, who: str) -> Made:
    """What the factory returned, as a :class:`Made`; a refusal with the fix for anything else."""
    steps: int | None = None
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], int) and result[1] > 0:
        result, steps = result
    default = max(1, math.ceil(n / batch_size))
    if isinstance(result, keras.utils.PyDataset):
        return Made("py_dataset", result, steps or len(result))
    if _is_tf_dataset(result):
        cardinality = int(result.cardinality())
        if cardinality >= 0:
            return Made("tf_data", result, steps or cardinality)
        endless = cardinality == -1  # tf.data.INFINITE_CARDINALITY; -2 is unknown: a pass until it ends
        return Made("tf_data", result, steps or (default if endless else None), endless)
    if inspect.isgenerator(result) or isinstance(result, Iterator):
        return Made("generator", result, steps or default, True)
    arrays = " (arrays: wrap them as tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size))"
    raise DataError(
        f"{who} returned {type(result).__name__}, which gridcv cannot feed to Keras. Return {_KINDS}, or one of "
        f"these with its steps per epoch as (data, steps){arrays if isinstance(result, (tuple, list)) else ''}."
    )


def _x_y(batch: Any, who: str) -> tuple[Any, Any]:
    if isinstance(batch, (tuple, list)) and len(batch) in (2, 3):
        return batch[0], batch[1]
    raise DataError(
        f"{who} made a batch that is a {type(batch).__name__}{f' of {len(batch)}' if isinstance(batch, tuple) else ''}"
        ", not (x, y) or (x, y, sample_weight). gridcv trains and scores on the targets each batch carries."
    )


def _input_and_targets(made: Made, who: str) -> tuple[tuple[int, ...], tuple[int | None, ...]]:
    """The shapes of one input sample and of a batch's targets: from a tf.data pipeline's element spec, else
    from its first batch (a generator's first batch is spent: it is made again to train)."""
    if made.kind == "tf_data":
        spec = made.data.element_spec
        x, y = _x_y(spec, who)
        return tuple(x.shape[1:]), tuple(y.shape)
    batch = made.data[0] if made.kind == "py_dataset" else next(iter(made.data), None)
    if batch is None:
        raise DataError(f"{who} made a generator that yields no batch. It must yield (x, y) batches.")
    x, y = _x_y(batch, who)
    if not hasattr(x, "shape"):
        raise DataError(
            f"{who} made batches whose inputs are a {type(x).__name__}; gridcv passes the builder the shape of one "
            "input sample, so x must be an array (a numpy array or a tensor)."
        )
    return tuple(int(d) for d in x.shape[1:]), tuple(np.shape(y))


def first_batch(pipelines: UserPipelines, indices: np.ndarray) -> tuple[Any, Any, Any]:
    """The first training batch of a few samples (the up-front check's batch): ``(x, y, sample_weight)``.

    Raises:
        DataError: The factory raised, or its batch is not ``(x, y)``.
    """
    try:
        made = pipelines.make(indices, training=True, batch_size=len(indices))
        batch = made.data[0] if made.kind == "py_dataset" else next(iter(made.data))
    except DataError:
        raise
    except Exception as exc:
        if is_out_of_memory(exc):
            raise
        raise DataError(
            f"{pipelines.who} raised {type(exc).__name__} for {len(indices)} training samples: {first_sentence(exc)} "
            f"gridcv calls it as {FACTORY_CALL}."
        ) from None
    x, y = _x_y(batch, pipelines.who)
    weights = batch[2] if len(batch) == 3 else None
    return np.asarray(x), np.asarray(y), None if weights is None else np.asarray(weights)
