"""Executors: where folds run, behind one small interface.

:class:`~gridcv.execution.processes.ProcessExecutor` runs folds in worker
processes; :class:`InlineExecutor` runs them in this process, for debugging
and notebooks. Both always return a :class:`FoldOutcome`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from gridcv.config.schema import ExecutionSpec
from gridcv.execution.messages import FoldJob, FoldOutcome
from gridcv.execution.worker import attempt_fold, clear_stop_request, request_stop


class Executor(Protocol):
    """Runs fold jobs one at a time and always returns an outcome."""

    def check(self, job: FoldJob) -> None:
        """Builds the job's model once; raises the user error if the builder is broken."""
        ...

    def run(self, job: FoldJob) -> FoldOutcome:
        """Runs one fold to an outcome."""
        ...

    def request_stop(self) -> None:
        """Asks the fold in flight to stop after its next checkpoint."""
        ...

    def close(self) -> None:
        """Stops the workers."""
        ...

    def set_log_dir(self, folder: Path) -> None:
        """Where workers write their logs from now on."""
        ...


def make_executor(execution: ExecutionSpec, deterministic: bool, log_dir: Path | None) -> Executor:
    """The executor ``execution.isolation`` names.

    Args:
        execution: The ``execution:`` section, command-line values applied.
        deterministic: TensorFlow op determinism in the workers.
        log_dir: Where workers write their logs; None: to this terminal (``--debug``).
    """
    if execution.isolation == "inline":
        return InlineExecutor(deterministic)
    from gridcv.execution.processes import ProcessExecutor

    return ProcessExecutor(execution, deterministic, log_dir)


class InlineExecutor:
    """Runs folds in the calling process (``isolation: inline``): no memory isolation."""

    def __init__(self, deterministic: bool) -> None:
        from gridcv.training.devices import enable_determinism

        enable_determinism(deterministic)
        self._folds = 0
        clear_stop_request()  # a Ctrl-C of an earlier inline run must not stop this one

    def check(self, job: FoldJob) -> None:
        from gridcv.training.building import check_builder

        check_builder(job)

    def run(self, job: FoldJob) -> FoldOutcome:
        self._folds += 1
        return attempt_fold(job, "inline", self._folds)

    def request_stop(self) -> None:
        request_stop()

    def close(self) -> None:
        pass

    def set_log_dir(self, folder: Path) -> None:
        pass
