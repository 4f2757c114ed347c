"""Memory and wall time over many folds: plain loops versus gridcv, side by side in one run.

    python benchmarks/memory.py --folds 150

The same grid (a small CNN on scikit-learn's digits, 5-fold CV) runs three ways, each in a
fresh subprocess of its own:

(a) an in-process loop: build, fit, predict, score; no cleanup;
(b) the same loop with ``keras.backend.clear_session()`` and ``gc.collect()`` after each fold;
(c) ``gridcv run`` with its defaults (a worker process replaced every 20 folds, a checkpoint per
    epoch, a SQLite commit per fold).

The loops feed Keras as gridcv's folds do: gridcv's batch generator over the same memory-mapped
arrays, handed to ``fit`` as its ``tf.data`` pipeline (``--feed memory``: from in-memory numpy
arrays instead, the fastest a loop can be fed). So what differs is how memory is managed, and
what gridcv's safety costs.

Memory is what the run's processes hold (the subprocess and all its children: anonymous and
shared memory, each page divided among the processes that map it, so what forked workers share
with the fork server counts once; file pages, which the kernel can drop, left out), sampled every
``--interval`` seconds (0.2 by default) for the whole run. Reported per run: the memory during the
first and the last ``--every`` folds (median of the samples), the growth per fold (least-squares
slope of each fold's median sample), the true peak (the largest sample: for gridcv it comes when
a worker's successor starts beside the old worker's last fold), and wall time, with
the ratios to (b) measured in the same run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import N_SPLITS, write_digits_experiment

from gridcv.execution.memory import proportional_of

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Loops (a) and (b): one fold as gridcv's worker runs it (gridcv/training/fold.py), minus its safety.
LOOP = r"""
import gc, json, sys, time
import keras, numpy as np
sys.path.insert(0, sys.argv[1])
from builder import build
from gridcv.config import load_experiment
from gridcv.data import open_source
from gridcv.plan import make_plan
from gridcv.training.batches import EpochCursor, IndexBatches, training_batches

cleanup, feed = sys.argv[3] == "cleanup", sys.argv[4]
experiment = load_experiment(sys.argv[2])
spec = experiment.spec
source = open_source(spec.data, experiment.base_dir, experiment.where)
labels = source.labels()
plan = make_plan(spec, labels)
if feed == "memory":
    x_all, y_all = source.read(np.arange(len(labels)))
batch, epochs = spec.fit.batch_size, spec.fit.epochs
for i, task in enumerate(plan.tasks, 1):
    keras.utils.set_random_seed(task.seed)
    train_idx, test_idx = plan.splits[task.fold]
    model = build(task.params, source.input_shape, source.n_classes)
    if feed == "memory":
        model.fit(x_all[train_idx], y_all[train_idx], batch_size=batch, epochs=epochs, verbose=0)
        p = model.predict(x_all[test_idx], batch_size=batch, verbose=0)
    else:
        train = training_batches(source, spec.data, task.params, train_idx, batch, task.seed, spec.fit.shuffle)
        model.fit(train.feed(0, epochs), steps_per_epoch=len(train), epochs=epochs, verbose=0, shuffle=False,
                  callbacks=[EpochCursor(train)])
        p = model.predict(IndexBatches(source, test_idx, batch, labels=False).feed(), verbose=0)
    accuracy = float((p.argmax(1) == labels[test_idx]).mean())
    if cleanup:
        del model
        keras.backend.clear_session()
        gc.collect()
    print(json.dumps({"folds": i, "t": time.time(), "accuracy": accuracy}), flush=True)
"""


def sampled(command: list[str], interval: float) -> dict[str, Any]:
    """Runs ``command``, sampling the memory of it and its children every ``interval`` seconds
    (:func:`~gridcv.execution.memory.proportional_of`).

    Returns its stdout, its samples as (time, bytes) and its wall time.
    """

    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    start = time.time()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    samples: list[tuple[float, int]] = []

    def sample() -> None:
        while proc.poll() is None:
            held = proportional_of(proc.pid)
            if held:
                samples.append((time.time(), held))
            time.sleep(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{err[-3000:]}")
    return {"stdout": out, "samples": samples, "seconds": time.time() - start, "start": start}


def run_loop(folder: Path, experiment: Path, mode: str, feed: str, interval: float) -> dict[str, Any]:
    """Loop (a) or (b) in a fresh subprocess: its samples and when each fold ended."""
    run = sampled([sys.executable, "-c", LOOP, str(folder), str(experiment), mode, feed], interval)
    folds = [json.loads(line) for line in run["stdout"].splitlines() if line.startswith("{")]
    return {**run, "ends": [f["t"] for f in folds], "accuracy": float(np.mean([f["accuracy"] for f in folds]))}


def run_gridcv(experiment: Path, output: Path, interval: float) -> dict[str, Any]:
    """(c): ``gridcv run`` with its default execution settings, in a fresh subprocess."""
    command = [sys.executable, "-m", "gridcv.cli", "run", str(experiment), "--quiet", "--output", str(output)]
    run = sampled(command, interval)
    from gridcv.store import ResultStore

    with ResultStore.open(output, readonly=True) as store:
        rows = store.fold_rows()
    ends = sorted(r.finished_at for r in rows if r.finished_at)
    accuracy = float(np.mean([r.scores["accuracy"] for r in rows]))
    return {**run, "ends": ends, "accuracy": accuracy, "workers": len({r.worker_id for r in rows})}


def per_fold(run: dict[str, Any]) -> np.ndarray:
    """Each fold's memory: the median of the samples taken while it ran (from the previous fold's end,
    or the run's start, to its own end); NaN for a fold too short to be sampled."""
    times = np.array([t for t, _ in run["samples"]])
    held = np.array([b for _, b in run["samples"]], dtype=float) / 1e6
    bounds = [run["start"], *run["ends"]]
    out = []
    for begin, end in itertools.pairwise(bounds):
        inside = held[(times > begin) & (times <= end)]
        out.append(float(np.median(inside)) if len(inside) else np.nan)
    return np.array(out)


def summary(run: dict[str, Any], every: int) -> dict[str, float]:
    """First and last ``every`` folds' memory, growth per fold, true peak (MB), wall seconds."""
    memory = per_fold(run)
    known = ~np.isnan(memory)
    folds = np.arange(1, len(memory) + 1)
    growth = float(np.polyfit(folds[known], memory[known], 1)[0]) if known.sum() > 1 else float("nan")
    return {
        "first": float(np.nanmedian(memory[:every])),
        "last": float(np.nanmedian(memory[-every:])),
        "growth": growth,
        "peak": max(b for _, b in run["samples"]) / 1e6,
        "seconds": run["seconds"],
    }


def table(runs: dict[str, dict[str, Any]], every: int, folds: int) -> str:
    """The side-by-side table, ratios to (b) included."""
    stats = {name: summary(run, every) for name, run in runs.items()}
    base = stats[next(n for n in stats if n.startswith("(b)"))]
    rows = [
        (f"memory, folds 1-{every} (MB)", "first", "{:.0f}"),
        (f"memory, folds {folds - every + 1}-{folds} (MB)", "last", "{:.0f}"),
        ("growth per fold (MB)", "growth", "{:.2f}"),
        ("true peak (MB)", "peak", "{:.0f}"),
        ("peak relative to (b)", "peak/", "{:.2f}x"),
        ("wall time (s)", "seconds", "{:.1f}"),
        ("wall time relative to (b)", "seconds/", "{:.2f}x"),
    ]
    width = max(len(n) for n in runs) + 2
    lines = [f"{'':<32}" + "".join(f"{n:>{width}}" for n in runs)]
    for label, key, fmt in rows:
        cells = []
        for name in runs:
            value = stats[name][key.rstrip("/")] / base[key.rstrip("/")] if key.endswith("/") else stats[name][key]
            cells.append(f"{fmt.format(value):>{width}}")
        lines.append(f"{label:<32}" + "".join(cells))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=150)
    parser.add_argument("--every", type=int, default=10, help="folds at the start and the end to compare")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between memory samples (<= 0.25)")
    parser.add_argument("--feed", choices=["gridcv", "memory"], default="gridcv", help="how the loops feed Keras")
    args = parser.parse_args()
    if not 0 < args.interval <= 0.25:
        parser.error("--interval must be in (0, 0.25]: a coarser timer misses the peak")
    folder = Path(tempfile.mkdtemp(prefix="gridcv-memory-"))
    experiment = write_digits_experiment(folder, "memory-benchmark", args.folds, args.epochs)
    every = min(args.every, args.folds)
    runs = {
        "(a) loop": run_loop(folder, experiment, "plain", args.feed, args.interval),
        "(b) loop+cleanup": run_loop(folder, experiment, "cleanup", args.feed, args.interval),
        "(c) gridcv": run_gridcv(experiment, folder / "results", args.interval),
    }
    print(
        f"{args.folds} folds ({math.ceil(args.folds / N_SPLITS)} candidates x {N_SPLITS} folds), {args.epochs} epochs "
        f"each; loops fed {'from in-memory arrays' if args.feed == 'memory' else 'as gridcv feeds'}; memory of all "
        f"the run's processes sampled every {args.interval} s\n"
    )
    print(table(runs, every, args.folds))
    accuracy = ", ".join(f"{name} {run['accuracy']:.3f}" for name, run in runs.items())
    print(f"\ngridcv used {runs['(c) gridcv']['workers']} worker processes; mean test accuracy: {accuracy}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
