"""Executors: where folds run, behind one small interface of slots and events.

An executor has a number of slots, each training one fold at a time. The
runner starts a job on a free slot and polls for events: a
:class:`~gridcv.execution.messages.Progress` when a fold finished an epoch,
a :class:`~gridcv.execution.messages.Finished` when an attempt ended,
whatever happened (a worker always reports back; a worker that cannot,
because it died, is reported for). The runner alone writes the store.

:class:`~gridcv.execution.processes.ProcessExecutor` runs folds in worker
processes on this machine, one slot per GPU or several CPU slots
(:mod:`gridcv.execution.placement`);
:class:`~gridcv.execution.dask.DaskExecutor` sends them to a Dask cluster;
:class:`InlineExecutor` runs them in this process, for debugging and notebooks.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Protocol

from gridcv.config.schema import ExecutionSpec
from gridcv.errors import ConfigError
from gridcv.execution.messages import EpochEnded, Event, Finished, FoldJob, Placement, Progress
from gridcv.execution.placement import host_name, visible_gpus
from gridcv.execution.worker import attempt_check, attempt_fold, clear_stop_request, read_check_reply, request_stop


class Executor(Protocol):
    """Runs fold jobs on its slots and reports what happens as events."""

    @property
    def slots(self) -> int:
        """How many folds it trains at once."""
        ...

    @property
    def slot_names(self) -> tuple[str, ...]:
        """What each slot is, for displays (``cpu``, ``cpu 1/2``, ``GPU 0``, ``dask tcp://...``, ``inline``)."""
        ...

    def placement(self, slot: int) -> Placement:
        """Where an attempt started on ``slot`` runs, as far as known before it reports (its attempt row)."""
        ...

    def check(self, job: FoldJob) -> bool:
        """Builds the job's model and runs it on one batch (see :mod:`gridcv.training.checking`).

        Returns:
            True if it checks out (or the check proves nothing); False if the builder
            raised for the job's parameters, which is left to the candidate's folds.

        Raises:
            BuilderError, DataError: A mistake every fold would hit.
        """
        ...

    def start(self, slot: int, job: FoldJob) -> None:
        """Starts an attempt on a free slot (``0 <= slot < slots``)."""
        ...

    def poll(self, timeout: float) -> list[Event]:
        """What happened since the last poll, waiting up to ``timeout`` seconds for something."""
        ...

    def request_stop(self) -> None:
        """Asks every fold in flight to stop after its next checkpoint."""
        ...

    def close(self) -> None:
        """Stops the workers."""
        ...

    def set_log_dir(self, folder: Path) -> None:
        """Where workers write their logs from now on."""
        ...


def make_executor(
    execution: ExecutionSpec, deterministic: bool, log_dir: Path | None, where: str = "experiment file"
) -> Executor:
    """The executor the ``execution:`` section asks for.

    ``isolation: inline`` wins over every other key (one fold at a time, here:
    for debugging); else ``backend: dask`` sends folds to a Dask cluster, and
    ``local`` runs a worker per slot on this machine (:func:`~gridcv.execution.placement.plan_slots`).

    Args:
        execution: The ``execution:`` section, command-line values applied.
        deterministic: TensorFlow op determinism in the workers.
        log_dir: Where workers write their logs; None: to this terminal (``--debug``).
        where: The experiment file, for messages.

    Raises:
        ConfigError: Devices that are not there.
        ClusterError: The Dask cluster cannot be reached or used.
    """
    if execution.isolation == "inline":
        return InlineExecutor(deterministic)
    if execution.backend == "dask":
        try:
            from gridcv.execution.dask import DaskExecutor
        except ImportError as exc:
            if (exc.name or "").split(".")[0] not in ("dask", "distributed"):
                raise
            raise ConfigError(
                f"{where}: execution.backend is dask, which needs Dask's distributed package ({exc}). "
                "Install it with pip install 'gridcv[dask]', or set backend: local."
            ) from None
        return DaskExecutor(execution, deterministic, log_dir, where)
    from gridcv.execution.placement import plan_slots
    from gridcv.execution.processes import ProcessExecutor

    return ProcessExecutor(execution, deterministic, log_dir, plan_slots(execution, deterministic, where))


class InlineExecutor:
    """Runs folds in the calling process (``isolation: inline``): one slot, no memory isolation.

    :meth:`start` trains the fold to its end; its events come out of the next :meth:`poll`.
    """

    slots = 1
    slot_names = ("inline",)

    def __init__(self, deterministic: bool) -> None:
        from gridcv.training.devices import enable_determinism

        enable_determinism(deterministic)
        self._folds = 0
        self._events: list[Event] = []
        gpus = visible_gpus()
        # TensorFlow in this process places ops on its first GPU, if it sees one
        self._placement = Placement("inline", f"GPU {gpus[0]}" if gpus else "cpu", host_name())
        clear_stop_request()  # a Ctrl-C of an earlier inline run must not stop this one

    def check(self, job: FoldJob) -> bool:
        return read_check_reply(*attempt_check(job))  # the same reply a worker sends

    def start(self, slot: int, job: FoldJob) -> None:
        self._folds += 1

        def epoch_ended(epoch: EpochEnded) -> None:
            self._events.append(Progress(slot, epoch))

        outcome = attempt_fold(job, "inline", self._folds, epoch_ended)
        where = self._placement
        self._events.append(Finished(slot, replace(outcome, device=where.device, host=where.host)))

    def placement(self, slot: int) -> Placement:
        return self._placement

    def poll(self, timeout: float) -> list[Event]:
        events, self._events = self._events, []
        return events

    def request_stop(self) -> None:
        request_stop()

    def close(self) -> None:
        pass

    def set_log_dir(self, folder: Path) -> None:
        pass
