"""Reading a results folder while a real run writes it: never an error, never half a fold.

A `gridcv run` works in a subprocess while this test reads the folder over and over, in turns:
gridcv.load_results in this process, `gridcv status` and `gridcv results` as subprocesses. Once
the store exists, no read may fail, folds done may only grow, and no read may see a fold counted
done without all its scores (nor a mean before every fold of its candidate is done).

So that the reads see every stage of the run however loaded the machine is, the run's folds keep
pace with them: a callback holds each fold's start until the test has finished two rounds of reads
(so at least one whole round after the fold before it was committed).
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gridcv
from gridcv.errors import ResultsError
from tests.conftest import TINY_BUILDER

pytestmark = pytest.mark.slow

N_SPLITS = 3
STATUS = re.compile(r"^  folds: (\d+) total, (\d+) done, (\d+) running, (\d+) failed, (\d+) left$", re.M)


# A fold starts once the test's read rounds (a count in a file) have gone up by two, or after 60 s.
PACED_BUILDER = (
    TINY_BUILDER
    + """

import pathlib, time


class WaitForReaders(keras.callbacks.Callback):
    def __init__(self, counter):
        super().__init__()
        self.counter = pathlib.Path(counter)

    def rounds(self):
        return int(self.counter.read_text()) if self.counter.exists() else 0

    def on_train_begin(self, logs=None):
        start, deadline = self.rounds(), time.monotonic() + 60
        while self.rounds() < start + 2 and time.monotonic() < deadline:
            time.sleep(0.02)
"""
)


def count_round(counter: Path, n: int) -> None:
    """Tells the run's callback that ``n`` rounds of reads are complete (a whole file, never half)."""
    partial = counter.with_name(counter.name + ".partial")
    partial.write_text(str(n))
    os.replace(partial, counter)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gridcv.cli", *args], capture_output=True, text=True, timeout=120)


def check_results(folder: Path, done_before: dict[int, int]) -> int:
    """load_results: folds done only grow; a done fold has every score; means only for complete candidates.

    Returns the folds done it saw."""
    table = gridcv.load_results(folder)
    for _, row in table.iterrows():
        units, done = int(row["param_units"]), int(row["n_folds_done"])
        assert done >= done_before.get(units, 0), (units, done, done_before)
        done_before[units] = done
        for scorer in ("accuracy", "f1_macro"):
            splits = [row[f"split{k}_test_{scorer}"] for k in range(N_SPLITS)]
            assert sum(not math.isnan(s) for s in splits) == done, (units, scorer, splits)
            assert math.isnan(row[f"mean_test_{scorer}"]) == (done < N_SPLITS)
        assert done + row["n_folds_failed"] + row["n_folds_pending"] + row["n_folds_running"] == N_SPLITS
    return int(table["n_folds_done"].sum())


def check_status(folder: Path, before: list[int]) -> None:
    """`gridcv status`: answers, its counts add up, folds done only grow."""
    out = cli("status", str(folder))
    assert out.returncode == 0 and out.stderr == "", out.stderr
    total, done, running, failed, left = map(int, STATUS.search(out.stdout).groups())  # type: ignore[union-attr]
    assert done + running + failed + left == total and running <= 1
    assert done >= before[0]
    before[0] = done


def check_table(folder: Path) -> None:
    """`gridcv results`: answers; a candidate has a mean exactly when all its folds are done."""
    out = cli("results", str(folder))
    assert out.returncode == 0 and out.stderr == "", out.stderr
    header, *rows = [line.split() for line in out.stdout.splitlines() if line.strip()]
    assert header[:3] == ["rank", "units", "mean_accuracy"] and header[-3] == "folds_done"
    for row in rows:
        assert (row[2] == "NaN") == (int(row[-3]) < N_SPLITS), row


def test_reading_while_a_run_writes_never_fails_nor_sees_half_a_fold(make_experiment):
    counter = make_experiment().parent / "read-rounds"
    path = make_experiment(
        builder=PACED_BUILDER,
        grid={"units": [4, 8]},
        cv={"splitter": "StratifiedKFold", "n_splits": N_SPLITS, "shuffle": True, "random_state": 0},
        fit={
            "epochs": 2,
            "batch_size": 4,
            "callbacks": [{"name": "builder.py:WaitForReaders", "counter": str(counter)}],
        },
        scoring=["accuracy", "f1_macro"],
        execution={"isolation": "inline"},
    )
    folder = path.parent / "results" / "tiny"
    run = subprocess.Popen(
        [sys.executable, "-m", "gridcv.cli", "run", str(path), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        while run.poll() is None:  # until the store has its tables, there is nothing to read
            try:
                gridcv.load_results(folder)
                break
            except ResultsError:
                pass
        done_before: dict[int, int] = {}
        status_before = [0]
        seen: list[int] = []  # folds done, as each load_results read saw them
        while run.poll() is None:
            seen.append(check_results(folder, done_before))
            check_status(folder, status_before)
            check_table(folder)
            count_round(counter, len(seen))
    finally:
        if run.poll() is None:
            run.kill()
        _, err = run.communicate(timeout=60)
    assert run.returncode == 0, err
    assert len(seen) >= 12, seen  # each of the three ways read many times while the run wrote...
    assert {n for n in seen if 0 < n < 6} == {1, 2, 3, 4, 5}, seen  # ...and saw every stage of it
    assert check_results(folder, done_before) == 6
    assert done_before == {4: 3, 8: 3}
    assert np.isfinite(gridcv.load_results(folder)["mean_test_accuracy"]).all()
