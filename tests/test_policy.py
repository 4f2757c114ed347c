"""The retry and out-of-memory policy, by table: every outcome x on_oom x earlier attempts x limits.

Pure functions, so these run in milliseconds beside the end-to-end tests that kill real workers
(tests/test_workers.py).
"""

from __future__ import annotations

import itertools

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
    if kind in (K.OOM, K.KILLED):
        return {
            "skip": Decision(FAILED),
            "stop": Decision(PENDING, Stop.OOM_POLICY),
            "retry_smaller_batch": Decision(PENDING if batch // 2 >= min_batch else FAILED),
        }[on_oom]
    return Decision(PENDING if earlier_errors < max_retries else FAILED)


def test_every_combination_follows_the_stated_policy():
    kinds = [K.DONE, K.ERROR, K.OOM, K.KILLED, K.INTERRUPTED, K.FATAL]
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
    assert checked == 6 * 3 * 3 * 3 * 3 * 3


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        ([], (64, 1)),
        ([K.OOM], (32, 2)),
        ([K.KILLED, K.OOM], (16, 4)),
        ([K.ERROR, K.ABANDONED, K.INTERRUPTED], (64, 1)),  # only out-of-memory shrinks the batch
        ([K.OOM] * 8, (1, 256)),  # never below 1; the effective batch is kept while it can be
        ([K.OOM, None], (32, 2)),  # the attempt in flight (no outcome yet) counts for nothing
    ],
)
def test_retry_shape_halves_the_batch_and_doubles_accumulation_per_oom(outcomes, expected):
    assert retry_shape(64, [attempt(i + 1, o) for i, o in enumerate(outcomes)]) == expected
