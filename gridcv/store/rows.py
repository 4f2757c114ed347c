"""What the store hands back: typed rows and the states a fold goes through."""

from __future__ import annotations

import enum
import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from gridcv.execution.messages import OutcomeKind
from gridcv.plan import REFIT_FOLD


class FoldStatus(enum.StrEnum):
    """State of a fold (or of the refit) in the results store: pending -> running -> done | failed."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"

    def is_finished(self) -> bool:
        """Whether the fold has reached a final state."""
        return self in (FoldStatus.DONE, FoldStatus.FAILED)


@dataclass(frozen=True)
class FoldRow:
    """One fold task (or the refit, ``fold == -1``) as the store knows it.

    Attributes mirror the ``folds`` table; ``params`` and ``candidate_index``
    come from the candidate; JSON columns are decoded.
    """

    task_id: str
    candidate_id: str
    candidate_index: int
    params: dict[str, Any]
    fold: int
    seed: int
    status: FoldStatus
    attempts: int
    scores: dict[str, float] = field(default_factory=dict)
    fit_time: float | None = None
    score_time: float | None = None
    epochs_run: int | None = None
    batch_size: int | None = None
    accumulation_steps: int | None = None
    history: dict[str, list[float]] = field(default_factory=dict)
    cause: str | None = None
    message: str | None = None
    error: str | None = None
    peak_rss: int | None = None
    worker_id: str | None = None
    worker_folds: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_sql(cls, row: sqlite3.Row) -> FoldRow:
        """Decodes a joined folds x candidates row (columns a newer gridcv added may be absent)."""
        values = dict(row)
        for key in ("params", "scores", "history", "info"):
            values[key] = json.loads(values[key]) if values.get(key) else {}
        values["status"] = FoldStatus(values["status"])
        return cls(**_known(cls, values))

    @property
    def is_refit(self) -> bool:
        """Whether this row is the refit of a candidate on all the data."""
        return self.fold == REFIT_FOLD


@dataclass(frozen=True)
class AttemptRow:
    """One attempt at a fold: how it ended (None while it runs), what it ran with, and where.

    ``slot``, ``device`` and ``host`` are None in folders written before they were recorded.
    ``fold`` is the fold of its task (-1 for a refit) where the query joined it
    (:meth:`~gridcv.store.database.ResultStore.candidate_attempts`), else None.
    """

    task_id: str
    attempt: int
    outcome: OutcomeKind | None
    message: str | None
    error: str | None
    batch_size: int | None
    accumulation_steps: int | None
    peak_rss: int | None
    worker_id: str | None
    resumed_from_epoch: int | None
    started_at: float
    finished_at: float | None
    slot: str | None = None
    device: str | None = None
    host: str | None = None
    fold: int | None = None

    @classmethod
    def from_sql(cls, row: sqlite3.Row) -> AttemptRow:
        """Decodes an ``attempts`` row."""
        values = dict(row)
        values["outcome"] = None if values["outcome"] is None else OutcomeKind(values["outcome"])
        return cls(**_known(cls, values))


def _known(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in values.items() if k in names}
