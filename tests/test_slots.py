"""Real worker processes on two slots: folds train at once, epochs are reported as they end."""

from __future__ import annotations

import time

import numpy as np
import pytest

from gridcv.config import load_experiment
from gridcv.execution.messages import Finished, OutcomeKind, Progress
from gridcv.execution.processes import ProcessExecutor
from gridcv.monitoring import Monitoring
from gridcv.plan import make_plan
from gridcv.runner.jobs import build_job, fold_assignment

pytestmark = pytest.mark.slow

SLOW_EPOCHS = """
import time
import keras


class Slow(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        time.sleep(0.7)


def build(params, input_shape, n_classes):
    model = keras.Sequential([keras.Input(shape=input_shape), keras.layers.Dense(n_classes, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model
"""


def test_two_slots_train_two_folds_at_once_and_report_every_epoch(make_experiment, tmp_path):
    path = make_experiment(
        builder=SLOW_EPOCHS,
        grid={"units": [4]},
        fit={"epochs": 3, "batch_size": 16, "callbacks": [{"name": "builder.py:Slow"}]},
    )
    experiment = load_experiment(path)
    plan = make_plan(experiment.spec, np.arange(60) % 3)
    executor = ProcessExecutor(experiment.spec.execution, deterministic=False, log_dir=None, slots=2)
    try:
        for slot, task in enumerate(plan.tasks):
            work = fold_assignment(experiment.spec, plan, task)
            job = build_job(experiment, plan, work, tmp_path, 16, 1, 1, Monitoring.of(experiment.spec, False))
            executor.start(slot, job)
        seen: list[tuple[float, int, str, int]] = []  # (time, slot, kind, epoch)
        finished = {}
        deadline = time.monotonic() + 240
        while len(finished) < 2 and time.monotonic() < deadline:
            for event in executor.poll(0.5):
                if isinstance(event, Progress):
                    seen.append((time.monotonic(), event.slot, "epoch", event.epoch.epoch))
                else:
                    assert isinstance(event, Finished)
                    finished[event.slot] = event.outcome
                    seen.append((time.monotonic(), event.slot, "end", 0))
    finally:
        executor.close()
    assert {s: o.kind for s, o in finished.items()} == {0: OutcomeKind.DONE, 1: OutcomeKind.DONE}
    assert {o.worker_id for o in finished.values()} == {"w1", "w2"}
    for slot in (0, 1):
        assert [e for _, s, kind, e in seen if s == slot and kind == "epoch"] == [1, 2, 3]
    # both folds were training at once: each slot reported an epoch before the other slot ended
    first_end = min(t for t, _, kind, _ in seen if kind == "end")
    assert {s for t, s, kind, _ in seen if kind == "epoch" and t < first_end} == {0, 1}
