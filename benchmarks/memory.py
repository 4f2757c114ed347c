"""Memory and wall time over many folds: plain loops versus gridcv, side by side in one run.

    python benchmarks/memory.py --folds 150

The same grid (a small CNN on scikit-learn's digits, 5-fold CV) runs three ways:

(a) an in-process loop: build, fit, predict, score; no cleanup;
(b) the same loop with ``keras.backend.clear_session()`` and ``gc.collect()`` after each fold;
(c) ``gridcv.run_experiment`` with its defaults (worker process, checkpoints, SQLite commits).

Every loop feeds Keras through gridcv's own generator from the same memory-mapped
arrays, so the difference is only how memory is managed. (a) and (b) run in their
own subprocesses; (c) runs from this process, which never imports TensorFlow.
Memory is the resident set of the whole run (parent and workers) after every
``--every`` folds; growth per fold is the least-squares slope over all samples.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

HERE = Path(__file__).resolve().parent
N_SPLITS = 5

BUILDER = """
import keras

def build(params, input_shape, n_classes):
    model = keras.Sequential([
        keras.Input(shape=input_shape),
        keras.layers.Conv2D(params["filters"], 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dropout(0.2),
        keras.layers.Dense(n_classes, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(params["learning_rate"]), loss="sparse_categorical_crossentropy")
    return model
"""

LOOP = r"""
import gc, json, os, sys, time
start = time.perf_counter()
import keras, numpy as np
sys.path.insert(0, sys.argv[1])
from builder import build
from gridcv.config import load_experiment
from gridcv.data import open_source
from gridcv.training.batches import EpochCursor, IndexBatches
from gridcv.execution.memory import rss_of
from gridcv.plan import make_plan

cleanup, every = sys.argv[3] == "cleanup", int(sys.argv[4])
experiment = load_experiment(sys.argv[2])
spec = experiment.spec
source = open_source(spec.data.model_dump(), experiment.base_dir)
plan = make_plan(spec, source.labels())
for i, task in enumerate(plan.tasks, 1):
    keras.utils.set_random_seed(task.seed)
    params = {**spec.fit.model_dump(), **task.params}
    train_idx, test_idx = plan.splits[task.fold]
    model = build(params, source.input_shape, source.n_classes)
    train = IndexBatches(source, train_idx, spec.fit.batch_size, shuffle=True, seed=task.seed)
    model.fit(train, epochs=spec.fit.epochs, verbose=0, shuffle=False, callbacks=[EpochCursor(train)])
    p = model.predict(IndexBatches(source, test_idx, spec.fit.batch_size, labels=False), verbose=0)
    accuracy = float((p.argmax(1) == source.labels()[test_idx]).mean())
    if cleanup:
        del model, train
        keras.backend.clear_session()
        gc.collect()
    if i % every == 0 or i == len(plan.tasks):
        print(json.dumps({"folds": i, "rss": rss_of(os.getpid()), "seconds": time.perf_counter() - start}), flush=True)
"""


def write_experiment(folder: Path, folds: int, epochs: int) -> Path:
    """Digits as .npy, the builder, and an experiment with ``folds`` fold tasks."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    (folder / "data").mkdir(parents=True, exist_ok=True)
    np.save(folder / "data" / "x.npy", (digits.images / 16.0).astype(np.float32)[..., None])
    np.save(folder / "data" / "y.npy", digits.target.astype(np.int64))
    (folder / "builder.py").write_text(BUILDER)
    candidates = math.ceil(folds / N_SPLITS)
    config = {
        "name": "memory-benchmark",
        "data": {"kind": "arrays", "x": "data/x.npy", "y": "data/y.npy"},
        "model": "builder.py:build",
        "fit": {"epochs": epochs, "batch_size": 32},
        "grid": {"filters": list(range(4, 4 + candidates)), "learning_rate": [0.003]},
        "cv": {"splitter": "StratifiedKFold", "n_splits": N_SPLITS, "shuffle": True, "random_state": 0},
        "scoring": "accuracy",
    }
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_loop(folder: Path, experiment: Path, mode: str, every: int) -> dict[str, Any]:
    """Runs loop (a) or (b) in a fresh subprocess; returns its samples and wall time."""
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", LOOP, str(folder), str(experiment), mode, str(every)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    samples = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    return {"samples": samples, "seconds": time.perf_counter() - start}


class _Sampler:
    """A gridcv reporter that records the run's memory (this process + its workers)."""

    def __init__(self, every: int) -> None:
        self.every, self.done, self.samples = every, 0, []
        self.start = time.perf_counter()

    def begin(self, *args: Any) -> None:
        pass

    def fold_started(self, *args: Any) -> None:
        pass

    def fold_finished(self, task: Any, outcome: Any, status: Any) -> None:
        from gridcv.execution.memory import rss_of

        if status.is_finished():
            self.done += 1
            if self.done % self.every == 0:
                self.samples.append(
                    {"folds": self.done, "rss": rss_of(os.getpid()), "seconds": time.perf_counter() - self.start}
                )

    def message(self, text: str) -> None:
        pass

    def end(self) -> None:
        pass


def run_gridcv(experiment: Path, output: Path, every: int) -> dict[str, Any]:
    """Runs (c): gridcv with its default execution settings, from this process."""
    import gridcv

    sampler = _Sampler(every)
    start = time.perf_counter()
    gridcv.run_experiment(experiment, gridcv.RunOptions(output=output), reporter=sampler)
    seconds = time.perf_counter() - start
    folds = gridcv.load_folds(output)
    return {
        "samples": sampler.samples,
        "seconds": seconds,
        "workers": folds["worker_id"].nunique(),
        "accuracy": float(folds["test_accuracy"].mean()),
    }


def growth_per_fold(samples: list[dict[str, Any]]) -> float:
    """Least-squares slope of resident memory against folds, in MB per fold."""
    x = np.array([s["folds"] for s in samples], dtype=float)
    y = np.array([s["rss"] for s in samples], dtype=float) / 1e6
    return float(np.polyfit(x, y, 1)[0]) if len(x) > 1 else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=150)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="gridcv-memory-"))
    experiment = write_experiment(folder, args.folds, args.epochs)
    runs = {
        "(a) loop, no cleanup": run_loop(folder, experiment, "plain", args.every),
        "(b) loop, clear_session+gc": run_loop(folder, experiment, "cleanup", args.every),
        "(c) gridcv": run_gridcv(experiment, folder / "results", args.every),
    }
    names = list(runs)
    print(
        f"{args.folds} folds ({math.ceil(args.folds / N_SPLITS)} candidates x {N_SPLITS} folds), "
        f"{args.epochs} epochs each; resident memory of the whole run in MB\n"
    )
    print(f"{'folds':>6} | " + " | ".join(f"{n:>26}" for n in names))
    rows = max(len(r["samples"]) for r in runs.values())
    for i in range(rows):
        cells = []
        for n in names:
            s = runs[n]["samples"]
            cells.append(f"{s[i]['rss'] / 1e6:>26.0f}" if i < len(s) else " " * 26)
        folds = next(runs[n]["samples"][i]["folds"] for n in names if i < len(runs[n]["samples"]))
        print(f"{folds:>6} | " + " | ".join(cells))
    print("-" * (9 + 29 * len(names)))
    print(f"{'MB/fold':>6} | " + " | ".join(f"{growth_per_fold(runs[n]['samples']):>26.2f}" for n in names))
    print(f"{'wall s':>6} | " + " | ".join(f"{runs[n]['seconds']:>26.1f}" for n in names))
    base = runs[names[1]]["seconds"]
    print(f"{'vs (b)':>6} | " + " | ".join(f"{runs[n]['seconds'] / base:>25.2f}x" for n in names))
    c = runs[names[2]]
    print(f"\ngridcv used {c['workers']} worker processes; mean validation accuracy {c['accuracy']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
