"""Results folders written through gridcv's store API, as runs leave them, without training anything.

:class:`SyntheticRun` records attempts exactly as the runner does
(``mark_running`` then ``record`` with an outcome), so a report test can have
1,000 finished folds, out-of-memory retries, failures with tracebacks and
folds left running by a crash in a fraction of a second. The store fsyncs
every transaction; :func:`fast_folder` puts such folders on a RAM file system
when the machine has one, so 2,000 transactions take 0.3 s instead of 9 s.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from gridcv.execution.messages import FoldOutcome, OutcomeKind
from gridcv.plan import FoldTask, content_id
from gridcv.store import FoldStatus, ResultStore

TRACEBACK = """Traceback (most recent call last):
  File "gridcv/training/fold.py", line 80, in run_fold
    history = model.fit(batches, epochs=epochs)
  File "builder.py", line 7, in build
    raise ValueError("this candidate always fails <b>here</b>")
ValueError: this candidate always fails <b>here</b>
"""


@contextmanager
def fast_folder(fallback: Path) -> Iterator[Path]:
    """A fresh folder on ``/dev/shm`` (a RAM file system) when there is one, else ``fallback``."""
    shm = Path("/dev/shm")
    if shm.is_dir():
        with tempfile.TemporaryDirectory(dir=shm, prefix="gridcv-test-") as folder:
            yield Path(folder)
    else:
        yield fallback


class SyntheticRun:
    """A results folder filled fold by fold through :class:`ResultStore`.

    Args:
        folder: The results folder to create.
        grid: Every candidate's parameters, in grid order.
        n_splits: Folds per candidate.
        scoring: The experiment's ``scoring:``.
        split_sizes: (n_train, n_test) per fold, as the runner records them; None records none.
        experiment: Keys of the folder's ``experiment.yaml`` copy (name, cv, seed, ...).
    """

    def __init__(
        self,
        folder: Path,
        grid: list[dict[str, Any]],
        n_splits: int,
        scoring: str | list[str] = "accuracy",
        split_sizes: list[tuple[int, int]] | None = None,
        experiment: Mapping[str, Any] | None = None,
    ) -> None:
        self.folder = folder
        self.n_splits = n_splits
        self.tasks: dict[tuple[int, int], FoldTask] = {}
        for c, params in enumerate(grid):
            for f in range(n_splits):
                task_id = content_id({"params": params, "fold": f})
                self.tasks[c, f] = FoldTask(task_id, content_id(params), c, f, params, 1000 + 10 * c + f)
        copy = {"name": "synthetic", "seed": 0, "cv": {"splitter": "StratifiedKFold", "n_splits": n_splits}}
        copy.update(experiment or {})
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "experiment.yaml").write_text(yaml.safe_dump({**copy, "scoring": scoring}))
        meta: dict[str, Any] = {
            "name": copy["name"],
            "scoring": scoring,
            "candidates": [t.candidate_id for (_, f), t in self.tasks.items() if f == 0],
            "n_splits": n_splits,
            "return_train_score": False,
            "experiment_file": "/somewhere/synthetic.yaml",
            "fingerprint": {"seed": "abc", "data": "def"},
            "versions": {"gridcv": "0.1.0", "tensorflow": "2.21.0", "keras": "3.15.1"},
        }
        if split_sizes is not None:
            meta["split_sizes"] = [list(s) for s in split_sizes]
        with self.store() as store:
            store.set_meta(**meta)
            store.add_tasks(list(self.tasks.values()))

    def store(self) -> ResultStore:
        """The folder's store, opened for writing."""
        return ResultStore.open(self.folder, create=True)

    def done(
        self,
        c: int,
        f: int,
        scores: float | dict[str, float],
        epochs: int = 4,
        fit_time: float = 2.0,
        peak: int = 300 * 2**20,
        worker: str = "w1",
        info: dict[str, Any] | None = None,
        resumed: int = 0,
    ) -> None:
        """An attempt at fold ``f`` of candidate ``c`` that trains and scores: the fold is done."""
        task = self.tasks[c, f]
        if isinstance(scores, float):
            scores = {"accuracy": scores}
        value = next(iter(scores.values()))
        history = {
            "loss": [1.0 / (e + 1) + 0.01 * f for e in range(epochs)],
            "val_loss": [1.1 / (e + 1) + 0.02 * f for e in range(epochs)],
            "accuracy": [value * (e + 1) / epochs for e in range(epochs)],
            "val_accuracy": [value * (e + 0.5) / epochs for e in range(epochs)],
        }
        details = {"best_epoch": epochs, "monitor": "val_loss", "n_fit_samples": 72, "n_monitored_samples": 8}
        details.update(info or {})
        with self.store() as store:
            store.mark_running(task.task_id, 32, 1)
            outcome = FoldOutcome(
                task.task_id,
                OutcomeKind.DONE,
                scores=scores,
                fit_time=fit_time,
                score_time=0.1,
                epochs_run=epochs,
                batch_size=32,
                accumulation_steps=1,
                history=history,
                peak_rss=peak,
                worker_id=worker,
                worker_folds=1,
                resumed_from_epoch=resumed,
                info=details,
            )
            store.record(outcome, FoldStatus.DONE)

    def ended(
        self, c: int, f: int, kind: OutcomeKind, message: str, error: str | None = None, worker: str = "w1"
    ) -> None:
        """An attempt that ends otherwise: ``ERROR``/``FATAL`` fail the fold, any other kind leaves it to retry."""
        task = self.tasks[c, f]
        status = FoldStatus.FAILED if kind in (OutcomeKind.ERROR, OutcomeKind.FATAL) else FoldStatus.PENDING
        with self.store() as store:
            store.mark_running(task.task_id, 32, 1)
            outcome = FoldOutcome(
                task.task_id, kind, batch_size=32, accumulation_steps=1, message=message, error=error,
                peak_rss=900 * 2**20, worker_id=worker, history={"loss": [1.0, 0.8]},
            )  # fmt: skip
            store.record(outcome, status)

    def running(self, c: int, f: int) -> None:
        """An attempt that starts and never reports (the run is killed while it trains)."""
        with self.store() as store:
            store.mark_running(self.tasks[c, f].task_id, 32, 1)


def grid_of(n: int) -> list[dict[str, Any]]:
    """``n`` candidates over two parameters, learning_rate (5 values) x units."""
    rates = [0.001, 0.003, 0.01, 0.03, 0.1]
    return [{"learning_rate": rates[i % 5], "units": 8 * (1 + i // 5)} for i in range(n)]
