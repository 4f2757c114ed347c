"""The retry and out-of-memory policy: pure functions of an outcome and the attempts before it.

Folds and the refit go through the same two decisions: the shape of the next
attempt (:func:`retry_shape`, which learns from every task of the candidate:
one out-of-memory kill per candidate, not one per fold) and what an outcome
means (:func:`decide`).
Both read the attempts the store recorded, never memory, so a run killed at
any moment and started again decides the same way.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gridcv.config.schema import ExecutionSpec
from gridcv.execution.messages import FoldOutcome, OutcomeKind
from gridcv.plan import REFIT_FOLD
from gridcv.store.rows import AttemptRow, FoldStatus

# A fold that loses more Dask workers than this in a row fails: as many as Dask's own allowed-failures
# (distributed.scheduler.allowed-failures, 3), past which Dask blames the task for killing its workers.
MAX_LOST_IN_A_ROW = 3


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


@dataclass(frozen=True)
class Shape:
    """Batch size and gradient accumulation of a task's next attempt.

    Attributes:
        batch: The batch size; 0 when every batch down to 1 ran out of memory.
        accumulation: Gradient accumulation steps (one more doubling per halving of
            the batch, so the effective batch size stays the same).
        oom_batch: The smallest batch known to run out of memory, or None.
        lowered_by: The attempt at another task of the same candidate (another fold,
            or its refit) that ran out of memory at ``oom_batch``; None when the
            task's own attempts set the shape.
    """

    batch: int
    accumulation: int
    oom_batch: int | None = None
    lowered_by: AttemptRow | None = None

    def fits(self, min_batch_size: int) -> bool:
        """Whether a batch is left to try: not below ``execution.min_batch_size``.

        When none is, the task fails without training: the batch it would need
        is known not to fit (a GPU run would spend minutes learning it again).
        """
        return self.batch >= max(1, min_batch_size)

    def info(self) -> dict[str, Any]:
        """What the task's row records when another task of its candidate set its batch."""
        if self.lowered_by is None:
            return {}
        return {"batch_lowered_by": {"fold": self.lowered_by.fold, "oom_batch_size": self.oom_batch}}

    def unfit_message(self, min_batch_size: int) -> str:
        """Why a task whose shape does not :meth:`fit` was not trained."""
        where = "it" if self.lowered_by is None else f"{task_name(self.lowered_by.fold)} of this candidate"
        return (
            f"not trained: {where} ran out of memory at batch {self.oom_batch}, and execution.min_batch_size is "
            f"{min_batch_size}; lower it to let smaller batches be tried"
        )


def task_name(fold: int | None) -> str:
    """``fold 2`` (1-based, as the terminal numbers folds), or ``the refit``."""
    return "the refit" if fold == REFIT_FOLD else f"fold {(fold or 0) + 1}"


def retry_shape(
    base_batch: int,
    attempts: Sequence[AttemptRow],
    candidate: Sequence[AttemptRow] = (),
    on_oom: str = "retry_smaller_batch",
) -> Shape:
    """Batch size and gradient accumulation for the next attempt at a task.

    A candidate's memory need does not change between its folds: a batch that
    ran out of memory in one of its tasks does not fit in the others either.
    The next attempt takes the largest halving of ``base_batch`` below the
    smallest batch that ran out of memory, in this task or (``candidate``) in
    another task of the same candidate, and doubles the accumulation once per
    halving, so the effective batch size (their product) stays the same.

    Args:
        base_batch: The batch size the candidate asks for.
        attempts: This task's attempts, as recorded.
        candidate: The attempts at the candidate's other tasks (its other folds
            and refits); empty to decide from this task's attempts only.
        on_oom: ``execution.on_oom``. With ``skip`` an out-of-memory fold fails and no
            smaller batch is tried, so the other tasks do not learn from it either.
    """
    own = _smallest_oom(attempts, base_batch)
    other = _smallest_oom(candidate if on_oom != "skip" else (), base_batch)
    limit = min((batch for batch, _ in (own, other) if batch), default=None)
    batch, accumulation = base_batch, 1
    while limit is not None and 0 < batch >= limit:
        batch, accumulation = batch // 2, accumulation * 2
    lowered = other[1] if other[0] and (not own[0] or other[0] < own[0]) else None
    return Shape(batch, accumulation, limit, lowered)


def _smallest_oom(attempts: Sequence[AttemptRow], base_batch: int) -> tuple[int, AttemptRow | None]:
    """The smallest batch that ran out of memory and its (earliest) attempt; ``(0, None)`` if none did."""
    ooms = [a for a in attempts if a.outcome is not None and a.outcome.is_out_of_memory()]
    first = min(ooms, key=lambda a: a.batch_size or base_batch, default=None)
    return (0, None) if first is None else (first.batch_size or base_batch, first)


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
    if kind is OutcomeKind.LOST:  # the machine went, not the fold: sent again, no retry spent
        return Decision(FoldStatus.FAILED if lost_in_a_row(earlier) + 1 > MAX_LOST_IN_A_ROW else FoldStatus.PENDING)
    if kind.is_out_of_memory():
        if execution.on_oom == "skip":
            return Decision(FoldStatus.FAILED)
        if execution.on_oom == "stop":
            return Decision(FoldStatus.PENDING, Stop.OOM_POLICY)
        smaller = (outcome.batch_size or 1) // 2
        return Decision(FoldStatus.FAILED if smaller < execution.min_batch_size else FoldStatus.PENDING)
    errors = sum(1 for a in earlier if a.outcome is OutcomeKind.ERROR) + 1
    return Decision(FoldStatus.PENDING if errors <= execution.max_retries else FoldStatus.FAILED)


def lost_in_a_row(attempts: Sequence[AttemptRow]) -> int:
    """How many of the last attempts lost their Dask worker, counting back to one that did not."""
    count = 0
    for a in reversed(attempts):
        if a.outcome is not OutcomeKind.LOST:
            break
        count += 1
    return count
