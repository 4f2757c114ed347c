"""Folds per hour with 1 and 2 CPU slots on the same grid, side by side in one run, with peak memory.

    python benchmarks/slots.py --folds 40

The grid of ``benchmarks/memory.py`` (a small CNN on scikit-learn's digits, 5-fold CV) runs with
gridcv once per slot count, each in a fresh results folder, in turns (``--rounds 2`` runs
1, 2, 2, 1 slots, so a machine that speeds up or slows down during the benchmark favours
neither). With ``slots: 2`` each worker gets half the cores for TensorFlow's intra- and
inter-op threads and for tf.data.

Folds per hour are counted over the folds' own span (the first attempt's start to the last
one's end, from the attempts table): start-up (the builder check, the first worker's import
of TensorFlow) is the same for every slot count and is shown apart. Peak memory is the largest
memory of the whole run, runner, fork server and workers, sampled every 0.5 s: anonymous and
shared pages, each divided among the processes that map it, so the TensorFlow that forked
workers share with the fork server counts once (as in ``benchmarks/memory.py``). Each sample
reads ``smaps_rollup`` of every process (about 5 ms each), from the runner's own process: at
0.2 s that took a tenth of a core from the folds being timed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from common import write_digits_experiment

from gridcv.execution.memory import proportional_of

HERE = Path(__file__).resolve().parent


class PeakMemory:
    """Samples the memory of this process and its children in a thread; keeps the peak
    (:func:`~gridcv.execution.memory.proportional_of`)."""

    def __init__(self, every: float = 0.5) -> None:
        self.every, self.peak = every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, proportional_of(os.getpid()) or 0)


def run_slots(experiment: Path, output: Path, slots: int) -> dict[str, Any]:
    """One gridcv run with ``slots`` CPU slots; its timings and peak memory."""
    import gridcv

    start = time.time()
    with PeakMemory() as memory:
        gridcv.run_experiment(experiment, gridcv.RunOptions(output=output, execution={"slots": slots}))
    end = time.time()
    attempts = gridcv.load_attempts(output)
    folds = gridcv.load_folds(output)
    first, last = float(attempts["started_at"].min()), float(attempts["finished_at"].max())
    return {
        "slots": slots,
        "folds": int((folds["status"] == "done").sum()),
        "startup": first - start,
        "span": last - first,
        "wall": end - start,
        "peak": memory.peak,
        "accuracy": float(folds["test_accuracy"].mean()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1, help="runs per slot count, in turns (1 2 2 1 ...)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="gridcv-slots-"))
    experiment = write_digits_experiment(folder, "slots-benchmark", args.folds, args.epochs)
    order = [s for i in range(args.rounds) for s in ([1, 2] if i % 2 == 0 else [2, 1])]
    runs = [run_slots(experiment, folder / f"run-{i}-slots-{s}", s) for i, s in enumerate(order)]
    print(f"{args.folds} folds, {args.epochs} epochs each, a small CNN on digits; {folder}\n")
    print(f"{'slots':>5} | {'folds':>5} | {'start-up s':>10} | {'folds s':>8} | {'folds/hour':>10} | {'peak MB':>8}")
    by_slots: dict[int, list[float]] = {}
    for r in runs:
        per_hour = r["folds"] / r["span"] * 3600
        by_slots.setdefault(r["slots"], []).append(per_hour)
        print(
            f"{r['slots']:>5} | {r['folds']:>5} | {r['startup']:>10.1f} | {r['span']:>8.1f} | {per_hour:>10.0f} | "
            f"{r['peak'] / 1e6:>8.0f}"
        )
    one, two = (sum(by_slots[s]) / len(by_slots[s]) for s in (1, 2))
    print(f"\n2 slots: {two / one:.2f}x the folds per hour of 1 slot (mean of {args.rounds} round(s) each)")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main())
