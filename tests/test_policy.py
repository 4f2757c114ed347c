"""The retry and out-of-memory policy, by table: every outcome x on_oom x earlier attempts x limits.

Pure functions, so these run in milliseconds beside the end-to-end tests that kill real workers
(tests/test_workers.py).
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from gridcv.config import ExecutionSpec
from gridcv.execution.messages import FoldOutcome, OutcomeKind
from gridcv.runner.policy import Decision, Stop, decide, retry_shape
from gridcv.store import AttemptRow, FoldStatus

PENDING, DONE, FAILED = FoldStatus.PENDING, FoldStatus.DONE, FoldStatus.FAILED
K = OutcomeKind


def attempt(n: int, outcome: OutcomeKind | None, batch: int = 16, accumulation: int = 1) -> AttemptRow:
    return AttemptRow("t", n, outcome, None, None, batch, accumulation, None, "w1", 0, float(n), float(n) + 1)


def history(*outcomes: OutcomeKind) -> list[AttemptRow]:
    return [attempt(i + 1, o) for i, o in enumerate(outcomes)]


# (outcome, on_oom, batch of the attempt, min_batch_size, earlier attempts, max_retries) -> decision
EXAMPLES = [
    (K.DONE, "retry_smaller_batch", 16, 1, [], 0, Decision(DONE)),
    (K.DONE, "stop", 16, 1, [K.OOM, K.ERROR], 0, Decision(DONE)),
    (K.OOM, "retry_smaller_batch", 16, 1, [], 0, Decision(PENDING)),
    (K.KILLED, "retry_smaller_batch", 16, 8, [K.OOM], 0, Decision(PENDING)),  # 16 -> 8 still allowed
    (K.KILLED, "retry_smaller_batch", 8, 8, [K.OOM], 0, Decision(FAILED)),  # 8 -> 4 is below min_batch_size
    (K.OOM, "retry_smaller_batch", 1, 1, [K.OOM] * 4, 5, Decision(FAILED)),  # batch 1 cannot be halved
    (K.OOM, "skip", 16, 1, [], 3, Decision(FAILED)),
    (K.KILLED, "stop", 16, 1, [], 0, Decision(PENDING, Stop.OOM_POLICY)),
    (K.ERROR, "retry_smaller_batch", 16, 1, [], 0, Decision(FAILED)),
    (K.ERROR, "retry_smaller_batch", 16, 1, [], 1, Decision(PENDING)),
    (K.ERROR, "retry_smaller_batch", 16, 1, [K.ERROR], 1, Decision(FAILED)),
    (K.ERROR, "retry_smaller_batch", 16, 1, [K.OOM, K.ABANDONED, K.INTERRUPTED], 1, Decision(PENDING)),
    (K.INTERRUPTED, "retry_smaller_batch", 16, 1, [], 0, Decision(PENDING, Stop.INTERRUPTED)),
    (K.FATAL, "skip", 16, 1, [], 2, Decision(PENDING, Stop.USER_ERROR)),
    # a lost Dask worker: sent again, spends no retry, shrinks no batch, until 3 in a row
    (K.LOST, "retry_smaller_batch", 16, 1, [], 0, Decision(PENDING)),
    (K.LOST, "stop", 16, 1, [K.LOST, K.LOST], 0, Decision(PENDING)),
    (K.LOST, "skip", 16, 1, [K.LOST, K.LOST, K.LOST], 5, Decision(FAILED)),
    (K.LOST, "retry_smaller_batch", 16, 1, [K.LOST, K.LOST, K.LOST, K.INTERRUPTED], 0, Decision(PENDING)),
    (K.ERROR, "retry_smaller_batch", 16, 1, [K.LOST, K.LOST], 1, Decision(PENDING)),
]


@pytest.mark.parametrize(("kind", "on_oom", "batch", "min_batch", "earlier", "max_retries", "expected"), EXAMPLES)
def test_decisions_by_example(kind, on_oom, batch, min_batch, earlier, max_retries, expected):
    execution = ExecutionSpec(on_oom=on_oom, min_batch_size=min_batch, max_retries=max_retries)
    assert decide(FoldOutcome("t", kind, batch_size=batch), history(*earlier), execution) == expected


def expected_decision(kind, on_oom, batch, min_batch, earlier_errors, max_retries):
    """The policy, written as the README states it, independently of the code under test."""
    if kind is K.DONE:
        return Decision(DONE)
    if kind is K.INTERRUPTED:
        return Decision(PENDING, Stop.INTERRUPTED)
    if kind is K.FATAL:
        return Decision(PENDING, Stop.USER_ERROR)
    if kind is K.LOST:
        return Decision(PENDING)  # these histories end with an error or an OOM, never a lost worker
    if kind in (K.OOM, K.KILLED):
        return {
            "skip": Decision(FAILED),
            "stop": Decision(PENDING, Stop.OOM_POLICY),
            "retry_smaller_batch": Decision(PENDING if batch // 2 >= min_batch else FAILED),
        }[on_oom]
    return Decision(PENDING if earlier_errors < max_retries else FAILED)


def test_every_combination_follows_the_stated_policy():
    kinds = [K.DONE, K.ERROR, K.OOM, K.KILLED, K.INTERRUPTED, K.FATAL, K.LOST]
    cases = itertools.product(
        kinds, ["retry_smaller_batch", "skip", "stop"], [16, 2, 1], [1, 2, 8], [0, 1, 2], [0, 1, 2]
    )
    checked = 0
    for kind, on_oom, batch, min_batch, errors, max_retries in cases:
        execution = ExecutionSpec(on_oom=on_oom, min_batch_size=min_batch, max_retries=max_retries)
        earlier = history(*([K.OOM] + [K.ERROR] * errors))
        got = decide(FoldOutcome("t", kind, batch_size=batch), earlier, execution)
        assert got == expected_decision(kind, on_oom, batch, min_batch, errors, max_retries), (kind, on_oom, batch)
        checked += 1
    assert checked == 7 * 3 * 3 * 3 * 3 * 3


def tried(*attempts: tuple[OutcomeKind | None, int], fold: int | None = None) -> list[AttemptRow]:
    """Attempts as the store records them: (outcome, batch) in order, of one task (of ``fold``)."""
    return [replace(attempt(i + 1, o, batch), fold=fold) for i, (o, batch) in enumerate(attempts)]


@pytest.mark.parametrize(
    ("attempts", "expected"),
    [
        ([], (64, 1)),
        ([(K.OOM, 64)], (32, 2)),
        ([(K.KILLED, 64), (K.OOM, 32)], (16, 4)),
        # only out-of-memory shrinks the batch
        ([(K.ERROR, 64), (K.ABANDONED, 64), (K.INTERRUPTED, 64), (K.LOST, 64)], (64, 1)),
        ([(K.OOM, 64 >> i) for i in range(6)], (1, 64)),  # down to 1; the effective batch is kept
        ([(K.OOM, 64 >> i) for i in range(7)], (0, 128)),  # batch 1 ran out of memory: no batch is left
        ([(K.OOM, 64), (None, 32)], (32, 2)),  # the attempt in flight (no outcome yet) counts for nothing
    ],
)
def test_retry_shape_halves_the_batch_and_doubles_accumulation_per_oom(attempts, expected):
    shape = retry_shape(64, tried(*attempts))
    assert (shape.batch, shape.accumulation, shape.lowered_by) == (*expected, None)


# (this task's attempts, the candidate's other tasks' attempts, on_oom) -> (batch, accumulation, oom batch, lowered by)
CANDIDATE = [
    # fold 0 ran out of memory at 64 and fit at 32: fold 1 starts at 32 (one OOM per candidate, not per fold)
    ([], [*tried((K.KILLED, 64), (K.DONE, 32), fold=0)], "retry_smaller_batch", (32, 2, 64, 0)),
    # and the refit too; fold 1 fit at 32 without an OOM of its own, which teaches nothing more
    ([], [*tried((K.OOM, 64), (K.DONE, 32), fold=0), *tried((K.DONE, 32), fold=1)], "stop", (32, 2, 64, 0)),
    # two folds ran out of memory side by side (two slots): the smallest batch counts, once
    (
        [],
        [*tried((K.OOM, 64), fold=0), *tried((K.OOM, 64), (K.OOM, 32), fold=1)],
        "retry_smaller_batch",
        (16, 4, 32, 1),
    ),
    # this fold's own attempts went further down than the others': they set the batch
    ([(K.OOM, 64), (K.OOM, 32)], [*tried((K.OOM, 64), fold=0)], "retry_smaller_batch", (16, 4, 32, None)),
    # equal: its own attempt set it
    ([(K.OOM, 64)], [*tried((K.OOM, 64), fold=2)], "retry_smaller_batch", (32, 2, 64, None)),
    # an error or an interruption elsewhere says nothing about memory
    (
        [],
        [*tried((K.ERROR, 64), (K.INTERRUPTED, 64), (K.ABANDONED, 64), fold=0)],
        "retry_smaller_batch",
        (64, 1, None, None),
    ),
    # with on_oom: skip no smaller batch is tried anywhere: each fold tries the candidate's batch
    ([], [*tried((K.OOM, 64), fold=0)], "skip", (64, 1, None, None)),
    # fold 0 ran out of memory down to batch 1: nothing is left to try
    ([], [*tried(*[(K.OOM, 64 >> i) for i in range(7)], fold=0)], "retry_smaller_batch", (0, 128, 1, 0)),
]


@pytest.mark.parametrize(("own", "others", "on_oom", "expected"), CANDIDATE)
def test_a_candidates_folds_start_at_the_batch_that_fit_in_its_other_folds(own, others, on_oom, expected):
    shape = retry_shape(64, tried(*own, fold=3), others, on_oom)
    lowered = None if shape.lowered_by is None else shape.lowered_by.fold
    assert (shape.batch, shape.accumulation, shape.oom_batch, lowered) == expected


def test_a_shape_below_min_batch_size_does_not_fit_and_says_why():
    fold_0 = tried((K.OOM, 64), (K.OOM, 32), fold=0)
    lowered = retry_shape(64, [], fold_0)
    assert (lowered.batch, lowered.fits(16), lowered.fits(17)) == (16, True, False)
    assert lowered.info() == {"batch_lowered_by": {"fold": 0, "oom_batch_size": 32}}
    assert lowered.unfit_message(17) == (
        "not trained: fold 1 of this candidate ran out of memory at batch 32, and execution.min_batch_size is 17; "
        "lower it to let smaller batches be tried"
    )
    refit = retry_shape(64, [], tried((K.KILLED, 64), fold=-1))
    assert refit.unfit_message(64).startswith("not trained: the refit of this candidate ran out of memory at batch 64")
    own = retry_shape(64, tried((K.OOM, 64), (K.OOM, 32)))
    assert own.info() == {} and own.unfit_message(32).startswith("not trained: it ran out of memory at batch 32,")
    assert not retry_shape(1, tried((K.OOM, 1))).fits(1)  # batch 0
