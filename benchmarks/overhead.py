"""The per-fold tax: where a fold's time goes outside fit and scoring, and gridcv beside a plain loop, in one run.

    python benchmarks/overhead.py --folds 120

The grid of issue 14: a small CNN on scikit-learn's digits, 1 epoch per fold, batch 64,
5-fold CV (24 candidates for 120 folds), run two ways side by side:

(a) a plain loop in one process: build, fit, predict, score, and no cleanup at all; fed by
    gridcv's own generator (a tf.data pipeline over the memory-mapped arrays), as gridcv feeds;
(c) ``gridcv.run_experiment`` with its defaults: worker processes (replaced every 20 folds), a
    checkpoint per epoch, a SQLite commit per fold.

It prints both wall times and their ratio, each one's time per fold in fit, in scoring and
outside them, and where gridcv's time outside them goes: the worker's phases of every fold
(``info["timings"]``: opening the data, building, the generators, the checkpoint, the cleanup,
...), the parent's share of each fold (the pipe, the commit, the next job), and what is not
in any fold (start-up, the up-front check of the builder, replacing workers). Loop (a) runs
first, in a fresh subprocess; gridcv runs from this process, which never imports TensorFlow.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import N_SPLITS, write_digits_experiment

LOOP = r"""
import json, sys, time
start = time.perf_counter()
import keras, numpy as np
sys.path.insert(0, sys.argv[1])
from builder import build
from gridcv.config import load_experiment
from gridcv.data import open_source
from gridcv.plan import make_plan
from gridcv.training.batches import IndexBatches

experiment = load_experiment(sys.argv[2])
spec = experiment.spec
source = open_source(spec.data, experiment.base_dir)
plan = make_plan(spec, source.labels())
for task in plan.tasks:
    begin = time.perf_counter()
    keras.utils.set_random_seed(task.seed)
    params = {**spec.fit.model_dump(), **task.params}
    train_idx, test_idx = plan.splits[task.fold]
    model = build(params, source.input_shape, source.n_classes)
    train = IndexBatches(source, train_idx, spec.fit.batch_size, shuffle=True, seed=task.seed)
    fitted = time.perf_counter()
    epochs = spec.fit.epochs
    model.fit(train.feed(0, epochs), steps_per_epoch=len(train), epochs=epochs, verbose=0, shuffle=False)
    scored = time.perf_counter()
    test = IndexBatches(source, test_idx, spec.fit.batch_size, labels=False)
    p = model.predict(test.feed(), verbose=0)
    accuracy = float((p.argmax(1) == source.labels()[test_idx]).mean())
    end = time.perf_counter()
    print(json.dumps({"fit": scored - fitted, "score": end - scored, "fold": end - begin}), flush=True)
print(json.dumps({"seconds": time.perf_counter() - start}), flush=True)
"""

PHASES = [
    ("start", "seeds and precision policy"),
    ("data", "opening the data"),
    ("build", "building the model, its output layout"),
    ("batches", "generators and callbacks"),
    ("restore", "looking for a checkpoint, building the optimizer"),
    ("fit_other", "the training loop's set-up and end"),
    ("checkpoints", "writing the epoch's checkpoint"),
    ("release", "clear_session and gc.collect"),
]


def run_loop(folder: Path, experiment: Path) -> dict[str, Any]:
    """Loop (a) in a fresh subprocess: its wall time and per-fold fit, scoring and total."""
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", LOOP, str(folder), str(experiment)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    seconds = time.perf_counter() - start
    folds = [json.loads(line) for line in out.stdout.splitlines() if line.startswith('{"fit"')]
    return {
        "seconds": seconds,
        "n": len(folds),
        "fit": sum(f["fit"] for f in folds),
        "score": sum(f["score"] for f in folds),
    }


def run_gridcv(experiment: Path, output: Path) -> dict[str, Any]:
    """(c): gridcv with its default execution settings; its wall time and every fold's row."""
    import gridcv
    from gridcv.store import ResultStore

    start_clock, start = time.time(), time.perf_counter()
    gridcv.run_experiment(experiment, gridcv.RunOptions(output=output))
    seconds = time.perf_counter() - start
    with ResultStore.open(output, readonly=True) as store:
        rows = sorted(store.fold_rows(), key=lambda r: r.started_at or 0)
    return {
        "seconds": seconds,
        "started": start_clock,
        "rows": rows,
        "n": len(rows),
        "fit": sum(r.fit_time or 0 for r in rows),
        "score": sum(r.score_time or 0 for r in rows),
        "workers": len({r.worker_id for r in rows}),
    }


def breakdown(run: dict[str, Any]) -> list[tuple[str, float]]:
    """gridcv's seconds outside fit and scoring, per fold, by where they go."""
    rows, n = run["rows"], run["n"]
    timings = [r.info.get("timings", {}) for r in rows]
    out = [(label, sum(t.get(key, 0.0) for t in timings) / n) for key, label in PHASES]
    worker = [sum(t.values()) for t in timings]
    in_parent = [(r.finished_at - r.started_at) - w for r, w in zip(rows, worker, strict=True)]
    out.append(("parent: the pipe both ways, the commit", sum(in_parent) / n))
    gaps = [b.started_at - a.finished_at for a, b in itertools.pairwise(rows)]
    out.append(("parent: between folds (next job; waiting for a new worker)", sum(gaps) / n))
    before = rows[0].started_at - run["started"]
    after = run["seconds"] - (rows[-1].finished_at - run["started"])
    out.append(("before the first fold (start-up, builder check) and after the last", (before + after) / n))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=120)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="gridcv-overhead-"))
    experiment = write_digits_experiment(folder, "overhead-benchmark", args.folds, args.epochs, args.batch_size)
    loop = run_loop(folder, experiment)
    grid = run_gridcv(experiment, folder / "results")
    print(
        f"\n{grid['n']} folds ({math.ceil(args.folds / N_SPLITS)} candidates x {N_SPLITS} folds), {args.epochs} "
        f"epoch(s) each, batch {args.batch_size}, a small CNN on digits; {os.cpu_count()} CPUs\n"
    )
    print(f"{'':44} {'(a) loop, no cleanup':>22} {'(c) gridcv':>12}")
    print(f"{'wall time, s':44} {loop['seconds']:>22.1f} {grid['seconds']:>12.1f}")
    print(f"{'relative to (a)':44} {1.0:>21.2f}x {grid['seconds'] / loop['seconds']:>11.2f}x")
    for name, key in (("per fold: fit, s", "fit"), ("per fold: scoring, s", "score")):
        print(f"{name:44} {loop[key] / loop['n']:>22.3f} {grid[key] / grid['n']:>12.3f}")
    outside = {r: (r_["seconds"] - r_["fit"] - r_["score"]) / r_["n"] for r, r_ in (("a", loop), ("c", grid))}
    print(f"{'per fold: everything else (wall / folds), s':44} {outside['a']:>22.3f} {outside['c']:>12.3f}")
    print(f"\ngridcv's time outside fit and scoring, per fold ({grid['workers']} worker processes):")
    parts = breakdown(grid)
    for label, seconds in parts:
        print(f"  {label:70} {seconds:7.3f} s")
    in_folds = sum(s for _, s in parts[:-1])
    print(f"  {'in and between folds (the per-fold tax; goal <= 0.25 s)':70} {in_folds:7.3f} s")
    print(f"  {'total (wall / folds - fit - scoring)':70} {outside['c']:7.3f} s")
    print(f"\nmedian fold fit {statistics.median(r.fit_time for r in grid['rows']):.3f} s; folder {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
