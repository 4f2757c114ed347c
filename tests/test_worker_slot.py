"""A slot asked to stop while its worker still starts: the worker is not signalled (the signal would
kill it before its handler exists), and the fold is not sent. A fake worker on a real pipe stands
in for the process (fast; real workers are stopped in tests/test_slots.py and tests/test_dask.py)."""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path

import numpy as np

from gridcv.config import ExecutionSpec, load_experiment
from gridcv.execution.messages import Finished, OutcomeKind
from gridcv.execution.placement import WorkerSetup
from gridcv.execution.processes import WorkerSlot
from gridcv.monitoring import Monitoring
from gridcv.plan import make_plan
from gridcv.runner.jobs import build_job, fold_assignment


class StartingWorker:
    """What a slot sees of a worker that is importing TensorFlow: alive, not ready, its pipe open."""

    def __init__(self) -> None:
        self.conn, self.other_end = multiprocessing.Pipe()
        self.id, self.folds, self.ready, self.received = "w1", 0, False, {}
        self.pid = os.getpid()  # a signal sent here would reach the test itself

    def alive(self) -> bool:
        return True


def a_job(make_experiment, folder: Path):
    experiment = load_experiment(make_experiment())
    plan = make_plan(experiment.spec, np.arange(60) % 3)
    work = fold_assignment(experiment.spec, plan, plan.tasks[0])
    return build_job(experiment, plan, work, folder, 16, 1, 1, Monitoring.of(experiment.spec, False))


def test_a_stop_before_the_worker_is_ready_ends_the_fold_unsent(make_experiment, tmp_path, monkeypatch):
    signals: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: signals.append((pid, sig)))
    worker = StartingWorker()
    slot = WorkerSlot(0, lambda: worker, ExecutionSpec(), WorkerSetup("cpu 1/2", "cpu"))
    job = a_job(make_experiment, tmp_path)
    slot.start(job)
    slot.request_stop()
    assert signals == [] and slot.stopping
    worker.other_end.send(("ready", {"device": "cpu"}))
    events = slot.receive()
    assert len(events) == 1 and isinstance(events[0], Finished)
    outcome = events[0].outcome
    assert (outcome.task_id, outcome.kind, outcome.message) == (
        job.task.task_id,
        OutcomeKind.INTERRUPTED,
        "stopped on request before it started",
    )
    assert not worker.other_end.poll(0.1)  # the fold was never sent
    assert slot.job is None and slot.worker is worker  # the slot is free; its worker, now ready, stays


def test_a_stop_reaches_a_ready_worker_as_its_signal(make_experiment, tmp_path, monkeypatch):
    signals: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: signals.append((pid, sig)))
    worker = StartingWorker()
    worker.ready = True
    slot = WorkerSlot(0, lambda: worker, ExecutionSpec(), WorkerSetup())
    slot.start(a_job(make_experiment, tmp_path))
    assert worker.other_end.recv()[0] == "fold"
    slot.request_stop()
    assert signals == [(worker.pid, signal.SIGUSR1)] and not slot.stopping
