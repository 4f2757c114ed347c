"""What a results folder holds, and the package that keeps it (the only one that imports sqlite3).

- ``results.sqlite``: :class:`ResultStore`: candidates,
  folds (and the refit) with their states, every attempt.
- ``run.lock``: :class:`RunLock`, one live run per folder.
- ``checkpoints/<task>/b<batch>x<accumulation>/epoch-NNNNN.npz``: epoch
  checkpoints (:mod:`gridcv.store.checkpoints`), written by workers.
- ``experiment.yaml``, ``logs/``, ``models/``, ``best_model.keras`` and its JSON.

Parent side, except :mod:`gridcv.store.checkpoints`, which workers use to
write the checkpoints the parent later reads.
"""

from gridcv.plan import REFIT_FOLD
from gridcv.store.database import ResultStore
from gridcv.store.lock import LOCK_NAME, LockHolder, RunLock
from gridcv.store.rows import AttemptRow, FoldRow, FoldStatus
from gridcv.store.sqlite import DB_NAME

__all__ = [
    "DB_NAME",
    "LOCK_NAME",
    "REFIT_FOLD",
    "AttemptRow",
    "FoldRow",
    "FoldStatus",
    "LockHolder",
    "ResultStore",
    "RunLock",
]
