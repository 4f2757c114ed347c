"""The retry and out-of-memory policy: pure functions of an outcome and the attempts before it.

Folds and the refit go through the same two decisions: the shape of the next
attempt (:func:`retry_shape`) and what an outcome means (:func:`decide`).
Both read the attempts the store recorded, never memory, so a run killed at
any moment and started again decides the same way.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from gridcv.config.schema import ExecutionSpec
from gridcv.execution.messages import FoldOutcome, OutcomeKind
from gridcv.store.rows import AttemptRow, FoldStatus


class Stop(enum.StrEnum):
    """Why the whole run must stop after an outcome."""

    INTERRUPTED = "interrupted"  # the user asked (Ctrl-C, SIGTERM); the fold resumes next run
    USER_ERROR = "user_error"  # a broken builder, bad data, a full disk: every fold would fail the same way
    OOM_POLICY = "oom_policy"  # execution.on_oom is 'stop'


@dataclass(frozen=True)
class Decision:
    """What an outcome means: the fold's new status, and whether the run stops."""

    status: FoldStatus
    stop: Stop | None = None


def retry_shape(base_batch: int, attempts: Sequence[AttemptRow]) -> tuple[int, int]:
    """Batch size and gradient accumulation for the next attempt at a fold.

    Every earlier out-of-memory attempt halves the batch and doubles the
    accumulation, so the effective batch size (their product) stays the same.
    """
    batch, accumulation = base_batch, 1
    for a in attempts:
        if a.outcome is not None and a.outcome.is_out_of_memory():
            batch, accumulation = max(1, batch // 2), accumulation * 2
    return batch, accumulation


def decide(outcome: FoldOutcome, earlier: Sequence[AttemptRow], execution: ExecutionSpec) -> Decision:
    """What an attempt's outcome means for the fold, and whether the run must stop.

    Args:
        outcome: How the attempt ended.
        earlier: The fold's attempts before this one, as recorded.
        execution: ``on_oom``, ``min_batch_size`` and ``max_retries``.
    """
    kind = outcome.kind
    if kind is OutcomeKind.DONE:
        return Decision(FoldStatus.DONE)
    if kind is OutcomeKind.INTERRUPTED:
        return Decision(FoldStatus.PENDING, Stop.INTERRUPTED)
    if kind is OutcomeKind.FATAL:
        return Decision(FoldStatus.PENDING, Stop.USER_ERROR)
    if kind.is_out_of_memory():
        if execution.on_oom == "skip":
            return Decision(FoldStatus.FAILED)
        if execution.on_oom == "stop":
            return Decision(FoldStatus.PENDING, Stop.OOM_POLICY)
        smaller = (outcome.batch_size or 1) // 2
        return Decision(FoldStatus.FAILED if smaller < execution.min_batch_size else FoldStatus.PENDING)
    errors = sum(1 for a in earlier if a.outcome is OutcomeKind.ERROR) + 1
    return Decision(FoldStatus.PENDING if errors <= execution.max_retries else FoldStatus.FAILED)
