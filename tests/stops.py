"""Where a fold stopped on request, read from its attempt's message.

A stop request reaches a worker either at an epoch's end (``stopped on request after epoch 3``)
or, since checkpoints can be taken inside an epoch, during one of its batches (``stopped on
request in epoch 4 after batch 2``, a checkpoint at batch 2 of the fourth epoch). Which one a
test sees depends on the machine's load, so the tests that send Ctrl-C accept both and check
the position named instead.
"""

from __future__ import annotations

import re
from pathlib import Path

_STOPPED = re.compile(r"stopped on request (?:after epoch (\d+)|in epoch (\d+) after batch (\d+))")


def stopped_at(message: str) -> tuple[int, int]:
    """(epochs completed, batches of the next epoch completed) named by a stop's message."""
    stopped = _STOPPED.fullmatch(message)
    assert stopped is not None, f"not a stop on request: {message!r}"
    if stopped[1] is not None:
        return int(stopped[1]), 0
    return int(stopped[2]) - 1, int(stopped[3])


def checkpoint_of(checkpoints: Path, task_id: str, message: str) -> list[str]:
    """The names of ``task_id``'s checkpoint files for the position ``message`` names (one, if saved)."""
    epoch, batch = stopped_at(message)
    name = f"epoch-{epoch:05d}.npz" if batch == 0 else f"epoch-{epoch:05d}-batch-{batch:07d}.npz"
    return [p.name for p in (checkpoints / task_id).rglob(name)]
