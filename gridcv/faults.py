"""Fault injection for crash tests: the whole run dies at a named point.

Set ``GRIDCV_FAULT=<point>`` (or ``<point>@<n>``: the n-th time that point is
reached in one process) and the process group is SIGKILLed there, as if the
machine died at that instant: runner and worker together, nothing flushed.
Points:

- ``checkpoint-write``: half of a checkpoint's bytes are written to its temporary file.
- ``checkpoint-rename``: a checkpoint is complete under its temporary name, not yet renamed.
- ``store-commit``: a fold's result is written inside its transaction, not yet committed.
- ``train-batch``: a training batch has just been trained (its checkpoint, if one is due, not yet written).
- ``batch-checkpoint``: a checkpoint within an epoch has just been written.
- ``cache-write``: a chunk of the decoded-image cache is on disk, its progress not yet recorded.
- ``fork-server``: the fork server has imported TensorFlow (only the server dies: workers are then spawned).

Unset (always, outside tests) it costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

_reached: Counter[str] = Counter()


def crash_point(point: str, group: bool = True) -> None:
    """Kills the process group (``group=False``: this process) here if ``GRIDCV_FAULT`` names this point (and count)."""
    wanted = os.environ.get("GRIDCV_FAULT")
    if not wanted:
        return
    name, _, nth = wanted.partition("@")
    if name != point:
        return
    _reached[point] += 1
    if _reached[point] == int(nth or 1):
        if group:
            os.killpg(os.getpgid(0), signal.SIGKILL)
        else:
            os.kill(os.getpid(), signal.SIGKILL)
