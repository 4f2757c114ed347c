"""A results folder's folds and the metadata that lays them out, read at one moment.

:func:`gridcv.load_results`, :func:`gridcv.load_search`, :func:`gridcv.load_folds` and the
report each read the fold rows with the scoring, the current grid's candidates and the number
of splits. They read them here, in one read transaction of a store opened read-only (without
the run's lock), so a reader never mixes the rows of one commit with the metadata of another
while a run writes.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gridcv.cv_results import by_candidate, cv_results
from gridcv.folders import results_folder
from gridcv.monitoring import META_KEY, results_warnings
from gridcv.store import FoldRow, ResultStore


@dataclass(frozen=True)
class FolderRead:
    """What every reader of a results folder needs, read in one transaction.

    Attributes:
        folder: The results folder.
        rows: Every fold row, the current grid's and earlier grids' alike.
        scoring: The experiment's ``scoring`` as stored (None in a folder that never started).
        return_train_score: Whether train scores were computed.
        n_splits: Folds per candidate.
        candidates: The current grid's candidates (their ids), or None in an old folder.
        monitoring: The folder's record of what callbacks monitor.
    """

    folder: Path
    rows: list[FoldRow]
    scoring: Any
    return_train_score: bool
    n_splits: int
    candidates: list[str] | None
    monitoring: dict[str, Any] | None

    @classmethod
    def from_store(cls, folder: Path, store: ResultStore) -> FolderRead:
        """Reads ``store``; call inside :meth:`ResultStore.snapshot` with other reads of the same moment."""
        return cls(
            folder=folder,
            rows=store.fold_rows(),
            scoring=store.get_meta("scoring"),
            return_train_score=bool(store.get_meta("return_train_score")),
            n_splits=int(store.get_meta("n_splits") or 0),
            candidates=store.get_meta("candidates"),
            monitoring=store.get_meta(META_KEY),
        )

    @property
    def primary_scoring(self) -> Any:
        """``scoring``, or ``"score"`` (the estimator's own) in a folder that never stored one."""
        return self.scoring or "score"

    @property
    def warnings(self) -> list[str]:
        """What makes the scores less trustworthy (callbacks that monitored the test fold)."""
        return results_warnings(self.monitoring)

    @functools.cached_property
    def groups(self) -> list[list[FoldRow]]:
        """The current grid's fold rows, per candidate in grid order, folds in order (grouped once)."""
        return by_candidate(self.rows, self.candidates)

    def cv_results(self) -> dict[str, Any]:
        """scikit-learn's ``cv_results_`` columns (numpy), then gridcv's progress columns."""
        return cv_results(self.groups, self.primary_scoring, self.n_splits, self.return_train_score)


@contextmanager
def open_folder(path: str | Path) -> Iterator[tuple[FolderRead, ResultStore]]:
    """A results folder read at one moment, and its store for further reads of that moment.

    Args:
        path: A results folder (``results/<name>``), its database, or the experiment file.

    Raises:
        ResultsError: There are no results at ``path``.
    """
    folder = results_folder(path)
    with ResultStore.open(folder, readonly=True) as store, store.snapshot():
        yield FolderRead.from_store(folder, store), store


def read_folder(path: str | Path) -> FolderRead:
    """:func:`open_folder`'s read alone."""
    with open_folder(path) as (read, _store):
        return read
