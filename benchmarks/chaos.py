"""Chaos test: SIGKILL a deterministic gridcv run at random moments, resume, compare exactly.

    python benchmarks/chaos.py --kills 20

A reference run goes uninterrupted. Then, round after round, the same
experiment is started in a fresh results folder and killed (the whole process
group, SIGKILL) until it finishes. Kills take turns among three kinds: mid-fold
(as soon as a fold in flight has checkpointed an epoch it had not reached
before, and before its last epochs), at a random fault point (mid checkpoint
write, before a checkpoint's rename, mid results commit) and at a random moment
after launch (TensorFlow's start-up included). Each round's final table is
compared with the reference: same rows, scores and per-epoch histories exactly,
no fold with two committed results, ``PRAGMA integrity_check`` ok. Whole epochs
redone are counted: the epoch a resumed fold starts from versus the newest
checkpoint it had when it was killed. So that a clean result means something,
the report also counts what the kills hit: attempts abandoned mid-fold and
attempts that resumed from a checkpoint (an epoch > 0).

With ``--slots 2`` the interrupted runs train two folds at once (the reference
keeps one slot, so the comparison also shows that scores do not depend on the
slot count), and ``--parent-kills 0.5`` makes half of the kills SIGKILL the
runner alone: its workers must then die by themselves (``PR_SET_PDEATHSIG``);
any process of the killed run still alive 10 s later is counted as orphaned.

    python benchmarks/chaos.py --kills 12 --slots 2 --parent-kills 0.5

Training seconds redone per kill are measured too: for the fold in flight, the
time from its newest checkpoint (or from its attempt's start, when it wrote
none) to the kill, which its next attempt trains again; folds checkpoint inside
epochs too (``fit.checkpoint_every``, ``--checkpoint-every``), so it stays near
that interval plus the attempt's start-up, whatever an epoch lasts.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

BUILDER = """
import keras

def build(params, input_shape, n_classes):
    model = keras.Sequential([
        keras.Input(shape=input_shape),
        keras.layers.Dense(params["units"], activation="relu"),
        keras.layers.Dropout(0.2),
        keras.layers.Dense(n_classes, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(params["learning_rate"]), loss="sparse_categorical_crossentropy")
    return model
"""
FAULTS = ["checkpoint-write", "checkpoint-rename", "store-commit", "train-batch", "batch-checkpoint"]
EPOCHS = 5
KINDS = ("mid-fold", "fault", "moment")  # kill k is of kind KINDS[k % 3]


@dataclass
class ChaosReport:
    """What the chaos run did and found."""

    rounds: int = 0
    kills: int = 0
    fault_kills: int = 0
    mid_fold_kills: int = 0
    launches: int = 0
    abandoned_attempts: int = 0
    resumed_attempts: int = 0
    whole_epochs_redone: int = 0
    lost_folds: int = 0
    duplicated_folds: int = 0
    max_score_difference: float = 0.0
    history_mismatches: int = 0
    integrity: list[str] = field(default_factory=list)
    seconds: float = 0.0
    parent_kills: int = 0  # kills of the runner alone (--parent-kills)
    orphaned_workers: int = 0  # processes of a killed run still alive after ORPHAN_GRACE seconds
    seconds_redone: list[float] = field(default_factory=list)

    def ok(self) -> bool:
        """No loss, no duplicate, no difference, healthy databases, no epoch redone."""
        return (
            self.lost_folds == 0
            and self.duplicated_folds == 0
            and self.max_score_difference == 0.0
            and self.history_mismatches == 0
            and set(self.integrity) <= {"ok"}
            and self.whole_epochs_redone == 0
            and self.orphaned_workers == 0
        )


def write_experiment(
    folder: Path, name: str, samples: int = 3000, epochs: int = EPOCHS, checkpoint_every: str = "0.5s"
) -> Path:
    """A small deterministic experiment: 2 candidates x 3 folds x ``epochs`` epochs."""
    rng = np.random.default_rng(0)
    y = np.arange(samples) % 3
    x = rng.normal(size=(samples, 32)).astype(np.float32)
    x[:, 0] += y
    (folder / "data").mkdir(parents=True, exist_ok=True)
    np.save(folder / "data" / "x.npy", x)
    np.save(folder / "data" / "y.npy", y)
    (folder / "builder.py").write_text(BUILDER)
    config = {
        "name": name,
        "seed": 0,
        "deterministic": True,
        "data": {"kind": "arrays", "x": "data/x.npy", "y": "data/y.npy"},
        "model": "builder.py:build",
        "fit": {"epochs": epochs, "batch_size": 16, "checkpoint_every": checkpoint_every},
        "grid": {"units": [16, 32], "learning_rate": [0.003]},
        "cv": {"splitter": "StratifiedKFold", "n_splits": 3, "shuffle": True, "random_state": 0},
        "scoring": ["accuracy", "neg_log_loss"],
        "execution": {"isolation": "process"},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def launch(path: Path, output: Path, fault: str | None = None, slots: int = 1) -> subprocess.Popen[bytes]:
    """Starts ``gridcv run`` in its own session (so killing its group spares us).

    Its stderr is appended to ``<output>.stderr``, to explain any unexpected exit.
    """
    env = {k: v for k, v in os.environ.items() if k != "GRIDCV_FAULT"}
    if fault:
        env["GRIDCV_FAULT"] = fault
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{output}.stderr", "ab") as stderr:
        stderr.write(f"--- launch, fault={fault}\n".encode())
        stderr.flush()
        return subprocess.Popen(
            [
                *(sys.executable, "-m", "gridcv.cli", "--debug", "run", str(path), "--quiet"),
                *("--output", str(output), "--slots", str(slots)),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )


def snapshot(output: Path) -> dict[str, Any]:
    """Fold rows by task id (only the columns that must match exactly)."""
    from gridcv.store import ResultStore

    with ResultStore.open(output, readonly=True) as store:
        return {r.task_id: r for r in store.fold_rows()}


def in_flight_checkpoints(output: Path) -> dict[str, int]:
    """Newest checkpoint epoch of every fold marked running (0 for none); empty before the store exists."""
    from gridcv.errors import GridcvError
    from gridcv.runner.status import read_status
    from gridcv.store import DB_NAME

    if not (output / DB_NAME).exists():
        return {}
    try:
        return {f.task_id: f.checkpoint_epoch or 0 for f in read_status(output).in_flight}
    except GridcvError:  # the store is being created
        return {}


def wait_to_kill(proc: subprocess.Popen[bytes], output: Path, kind: str, rng: random.Random, reached: dict[str, int]):
    """Waits for the moment a kill of ``kind`` strikes (or for the run to end on its own)."""
    deadline = time.monotonic() + rng.uniform(2.0, 14.0)
    while proc.poll() is None:
        if kind == "moment" and time.monotonic() >= deadline:
            return
        if kind == "mid-fold" and any(
            reached.get(task, 0) < epoch <= EPOCHS - 2 for task, epoch in in_flight_checkpoints(output).items()
        ):
            return  # a fold trained an epoch it had not reached before: this kill hits training
        time.sleep(0.05)


def seconds_redone(output: Path, launched_at: float, killed_at: float) -> list[float]:
    """Training seconds each fold in flight loses to a kill: from its newest checkpoint, or from its
    attempt's start when it wrote none in this attempt, to the kill (read right after it). A fold
    whose attempt did not start in this launch (killed during the run's start-up) lost nothing."""
    from gridcv.runner.status import read_status
    from gridcv.store import DB_NAME

    if not (output / DB_NAME).exists():
        return []
    lost = []
    for fold in read_status(output).in_flight:
        if fold.started_at is None or fold.started_at < launched_at:
            continue
        written = [p.stat().st_mtime for p in (output / "checkpoints" / fold.task_id).glob("*/epoch-*.npz")]
        since = max([*written, fold.started_at])
        lost.append(max(0.0, killed_at - since))
    return lost


ORPHAN_GRACE = 10.0


def session_survivors(session: int, grace: float = ORPHAN_GRACE) -> int:
    """Processes of a killed run's session (its workers) still alive after ``grace`` seconds."""
    import psutil

    deadline = time.monotonic() + grace
    while True:
        alive = []
        for p in psutil.process_iter(["status"]):
            try:
                if os.getsid(p.pid) == session and p.info["status"] != psutil.STATUS_ZOMBIE:
                    alive.append(p)
            except (ProcessLookupError, PermissionError):
                continue
        if not alive or time.monotonic() > deadline:
            return len(alive)
        time.sleep(0.1)


@dataclass(frozen=True)
class ChaosOptions:
    """How rounds run: slots of the interrupted runs, and the share of kills that spare the workers."""

    slots: int = 1
    parent_kills: float = 0.0
    checkpoint_every: str = "0.5s"  # fit.checkpoint_every of the experiment


def chaos_round(
    path: Path,
    output: Path,
    rng: random.Random,
    report: ChaosReport,
    max_kills: int,
    options: ChaosOptions = ChaosOptions(),
) -> None:
    """Kills runs into ``output`` until one finishes (or ``max_kills`` is reached, then finishes it)."""
    reached: dict[str, int] = {}
    while True:
        report.launches += 1
        kind = KINDS[report.kills % len(KINDS)] if report.kills < max_kills else "none"
        fault = f"{rng.choice(FAULTS)}@{rng.randint(1, 8)}" if kind == "fault" else None
        launched_at = time.time()
        proc = launch(path, output, fault, options.slots)
        wait_to_kill(proc, output, kind, rng, reached)
        parent_alone = False
        if proc.poll() is None:
            # the runner alone while parent kills lag behind their share; else the whole group
            parent_alone = report.parent_kills < options.parent_kills * (report.kills + 1)
            if parent_alone:
                os.kill(proc.pid, signal.SIGKILL)
            else:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        killed_at = time.time()
        if proc.returncode == 0:
            break
        if proc.returncode != -signal.SIGKILL:
            tail = Path(f"{output}.stderr").read_text()[-3000:]
            raise RuntimeError(f"gridcv run exited with {proc.returncode}:\n{tail}")
        report.kills += 1
        report.fault_kills += kind == "fault"
        report.mid_fold_kills += kind == "mid-fold"
        report.parent_kills += parent_alone
        report.orphaned_workers += session_survivors(proc.pid)
        report.seconds_redone += seconds_redone(output, launched_at, killed_at)
        for task_id, epoch in in_flight_checkpoints(output).items():
            reached[task_id] = max(reached.get(task_id, 0), epoch)
    from gridcv.store import ResultStore

    with ResultStore.open(output, readonly=True) as store:
        tally_attempts(store.attempt_rows(), reached, report)
        report.integrity.append(store.integrity_check())


def tally_attempts(attempts: list[Any], reached: dict[str, int], report: ChaosReport) -> None:
    """Counts, from a round's attempts: folds committed twice, what the kills hit, whole epochs redone.

    ``reached``: the newest checkpoint epoch each fold had when a kill struck.
    """
    done = [a for a in attempts if a.outcome == "done"]
    report.duplicated_folds += sum(1 for n in Counter(a.task_id for a in done).values() if n > 1)
    report.abandoned_attempts += sum(1 for a in attempts if a.outcome == "abandoned")
    report.resumed_attempts += sum(1 for a in attempts if (a.resumed_from_epoch or 0) > 0)
    final = {a.task_id: a for a in done}
    for task_id, epoch in reached.items():
        resumed = final[task_id].resumed_from_epoch if task_id in final else 0
        report.whole_epochs_redone += max(0, epoch - (resumed or 0))


def compare(reference: dict[str, Any], result: dict[str, Any], report: ChaosReport) -> None:
    """Counts lost folds, score differences and history mismatches (duplicates are counted from attempts)."""
    report.lost_folds += sum(1 for t in reference if t not in result or result[t].status != "done")
    for task_id, ref in reference.items():
        got = result.get(task_id)
        if got is None:
            continue
        for name, value in ref.scores.items():
            report.max_score_difference = max(report.max_score_difference, abs(value - got.scores.get(name, np.inf)))
        report.history_mismatches += json.dumps(ref.history) != json.dumps(got.history)


def run_chaos(
    workdir: Path, kills: int, seed: int = 0, samples: int = 3000, options: ChaosOptions = ChaosOptions()
) -> ChaosReport:
    """Reference run, then chaos rounds until ``kills`` kills have happened."""
    start = time.monotonic()
    rng = random.Random(seed)
    path = write_experiment(workdir, "chaos", samples=samples, checkpoint_every=options.checkpoint_every)
    reference_out = workdir / "reference"
    proc = launch(path, reference_out)
    if proc.wait() != 0:
        raise RuntimeError("the reference run failed")
    reference = snapshot(reference_out)
    report = ChaosReport()
    while report.kills < kills:
        report.rounds += 1
        output = workdir / f"round-{report.rounds}"
        chaos_round(path, output, rng, report, kills, options)
        compare(reference, snapshot(output), report)
    report.seconds = time.monotonic() - start
    return report


def redone_summary(redone: list[float], checkpoint_every: str) -> str:
    """``training seconds redone per kill`` as the report prints it."""
    if not redone:
        return "training seconds redone per kill: no kill landed while a fold trained"
    return (
        f"training seconds redone per kill: mean {sum(redone) / len(redone):.2f}, max {max(redone):.2f} over "
        f"{len(redone)} kills of a training fold (checkpoint_every {checkpoint_every}, plus each attempt's start-up)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--slots", type=int, default=1, help="folds at once in the interrupted runs (CPU slots)")
    parser.add_argument(
        "--parent-kills", type=float, default=0.0, help="share of the kills that SIGKILL the runner alone (0.5)"
    )
    parser.add_argument("--checkpoint-every", default="0.5s", help="fit.checkpoint_every of the experiment")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="gridcv-chaos-"))
    options = ChaosOptions(args.slots, args.parent_kills, args.checkpoint_every)
    report = run_chaos(workdir, args.kills, args.seed, options=options)
    print(f"workdir                  {workdir}")
    for key, value in report.__dict__.items():
        if key != "seconds_redone":
            print(f"{key:<24} {value if not isinstance(value, float) else round(value, 6)}")
    print(redone_summary(report.seconds_redone, args.checkpoint_every))
    print("RESULT", "OK" if report.ok() else "FAILED")
    return 0 if report.ok() else 1


if __name__ == "__main__":
    sys.exit(main())
