"""Checkpoints within an epoch (``fit.checkpoint_every``): a fold stopped or killed in the middle of an
epoch resumes at that batch, and (``deterministic: true``) ends bit-for-bit as an uninterrupted one.

The model carries every kind of state a resume must put back: dropout's seed generator, a layer
drawing from Keras's global seed generator, Adam's moments, iteration count and gradient
accumulators, a learning rate a callback changes at each epoch's start, the accuracy metric
accumulated over the epoch, and EarlyStopping / ReduceLROnPlateau state.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

import gridcv
from gridcv.config import load_experiment
from gridcv.errors import ConfigError, RunInterrupted
from gridcv.runner.status import read_status
from gridcv.store import ResultStore
from gridcv.store.checkpoints import latest_position

BUILDER = """
import os

import keras


class Noise(keras.layers.Layer):
    # keras.random without a seed: Keras's global seed generator, whose state a resume restores
    def call(self, x, training=False):
        return x + keras.random.normal(keras.ops.shape(x), stddev=0.05) if training else x


def build(params, input_shape, n_classes):
    model = keras.Sequential([
        keras.Input(shape=input_shape),
        Noise(),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dropout(0.3),
        keras.layers.Dense(n_classes, activation="softmax"),
    ])
    optimizer = keras.optimizers.Adam(0.02, gradient_accumulation_steps=params.get("accumulate"))
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


class Decay(keras.callbacks.Callback):
    # applied twice to a resumed epoch, the learning rate would show it
    def on_epoch_begin(self, epoch, logs=None):
        self.model.optimizer.learning_rate.assign(self.model.optimizer.learning_rate * 0.9)


class StopAt(keras.callbacks.Callback):
    # asks gridcv to stop (as Ctrl-C does) once `batch` batches of epoch `epoch` (0-based) are trained
    def __init__(self, marker, epoch, batch):
        super().__init__()
        self.marker, self.at = marker, (epoch, batch)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        from gridcv.execution.worker import request_stop

        if (self.epoch, batch + 1) == self.at and os.path.exists(self.marker):
            os.remove(self.marker)
            request_stop()
"""

N_SAMPLES = 120  # 2 folds of 60: 54 trained on (a tenth is monitored), batch 4: 14 batches per epoch
BATCHES = 14
CALLBACKS = [
    {"name": "early_stopping", "monitor": "val_loss", "patience": 10},
    {"name": "reduce_lr_on_plateau", "monitor": "val_loss", "patience": 1, "factor": 0.5},
    {"name": "builder.py:Decay"},
]


def experiment(folder: Path, checkpoint_every: Any = 5, callbacks: list[dict[str, Any]] | None = None) -> Path:
    """A deterministic experiment of 2 folds x 3 epochs, written into ``folder``."""
    from tests.conftest import write_arrays

    folder.mkdir(parents=True, exist_ok=True)
    write_arrays(folder, n=N_SAMPLES)
    (folder / "builder.py").write_text(BUILDER)
    config = {
        "name": "mid",
        "seed": 0,
        "deterministic": True,
        "data": {"kind": "arrays", "x": "data/x.npy", "y": "data/y.npy"},
        "model": "builder.py:build",
        "fit": {
            "epochs": 3,
            "batch_size": 4,
            "checkpoint_every": checkpoint_every,
            "callbacks": [*CALLBACKS, *(callbacks or [])],
        },
        "grid": {"accumulate": [2]},
        "cv": {"splitter": "StratifiedKFold", "n_splits": 2, "shuffle": True, "random_state": 0},
        "scoring": ["accuracy", "neg_log_loss"],
        "execution": {"isolation": "inline"},
        "output": str(folder / "results"),
    }
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def outcome(path: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, int]]:
    """Scores, histories and the batch each fold's last attempt resumed from, by task id."""
    with ResultStore.open(path.parent / "results", readonly=True) as store:
        rows = store.fold_rows()
    assert [r.status.value for r in rows] == ["done", "done"]
    return (
        {r.task_id: r.scores for r in rows},
        {r.task_id: r.history for r in rows},
        {r.task_id: r.info["resumed_from_batch"] for r in rows},
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    """The experiment run once without interruption (in-process)."""
    path = experiment(tmp_path_factory.mktemp("reference"))
    gridcv.run_experiment(path)
    scores, histories, resumed = outcome(path)
    assert set(resumed.values()) == {0}
    assert all(len(h["loss"]) == 3 and "val_accuracy" in h and "learning_rate" in h for h in histories.values())
    return scores, histories


# --- the setting ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "batches", "seconds"),
    [(500, 500, None), ("500", 500, None), ("90s", None, 90.0), ("10min", None, 600.0), ("1.5h", None, 5400.0)],
)
def test_checkpoint_every_takes_batches_or_a_time(tmp_path, value, batches, seconds):
    interval = load_experiment(experiment(tmp_path, value)).spec.fit.checkpoint_interval()
    assert interval is not None and (interval.batches, interval.seconds) == (batches, seconds)


def test_checkpoint_every_defaults_to_ten_minutes_and_null_turns_it_off(tmp_path):
    path = experiment(tmp_path)
    config = yaml.safe_load(path.read_text())
    del config["fit"]["checkpoint_every"]
    path.write_text(yaml.safe_dump(config))
    assert load_experiment(path).spec.fit.checkpoint_interval().seconds == 600.0
    assert load_experiment(experiment(tmp_path, None)).spec.fit.checkpoint_interval() is None


def test_a_bad_checkpoint_every_is_explained(tmp_path):
    path = experiment(tmp_path, "10 minutes")
    with pytest.raises(ConfigError) as caught:
        load_experiment(path)
    assert str(caught.value) == (
        f"{path}: key 'fit.checkpoint_every' has value '10 minutes': write a number of batches (500) or a time of "
        "training (90s, 10min, 2h), or null for a checkpoint at the end of each epoch only. See "
        "experiments/digits.yaml for a valid file."
    )


def test_checkpoint_every_changes_no_fingerprint(tmp_path):
    every_batch = load_experiment(experiment(tmp_path / "a", 1)).fingerprint()
    assert load_experiment(experiment(tmp_path / "b", "2h")).fingerprint() == every_batch
    assert load_experiment(experiment(tmp_path / "c", None)).fingerprint() == every_batch


# --- stopped in the middle of an epoch (in-process) -------------------------------------------


@pytest.mark.parametrize(("epoch", "batch"), [(0, 1), (1, 7), (2, BATCHES - 1)])
def test_a_fold_stopped_inside_an_epoch_resumes_at_that_batch_bit_for_bit(
    tmp_path, reference, clear_stop_request, epoch, batch
):
    """A stop request saves a checkpoint at the batch it comes after (whatever checkpoint_every says)
    and the next run resumes the epoch there: same per-epoch history, same scores."""
    marker = tmp_path / "stop-now"
    marker.touch()
    stop = {"name": "builder.py:StopAt", "marker": str(marker), "epoch": epoch, "batch": batch}
    path = experiment(tmp_path / "run", checkpoint_every=None, callbacks=[stop])
    with pytest.raises(RunInterrupted):
        gridcv.run_experiment(path)
    attempts = gridcv.load_attempts(path)
    assert attempts["message"].tolist() == [f"stopped on request in epoch {epoch + 1} after batch {batch}"]
    clear_stop_request.clear()
    gridcv.run_experiment(path)
    scores, histories, resumed = outcome(path)
    first = next(iter(scores))
    assert resumed[first] == batch
    assert gridcv.load_attempts(path)["resumed_from_epoch"].tolist()[:2] == [0, epoch]
    assert (scores, histories) == reference


def test_checkpoints_are_written_every_n_batches_inside_epochs(tmp_path, clear_stop_request):
    marker = tmp_path / "stop-now"
    marker.touch()
    stop = {"name": "builder.py:StopAt", "marker": str(marker), "epoch": 1, "batch": 12}
    path = experiment(tmp_path / "run", checkpoint_every=5, callbacks=[stop])
    with pytest.raises(RunInterrupted):
        gridcv.run_experiment(path)
    folder = next((path.parent / "results" / "checkpoints").iterdir())
    names = sorted(p.name for p in folder.rglob("*.npz"))
    # epoch 2 (index 1): a checkpoint after batch 5, 10, then the stop's at 12; the two newest are kept
    assert names == ["epoch-00001-batch-0000010.npz", "epoch-00001-batch-0000012.npz"]


# --- killed in the middle of an epoch (real processes, SIGKILL) --------------------------------


def gridcv_run(path: Path, fault: str | None = None) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "GRIDCV_FAULT"}
    if fault:
        env["GRIDCV_FAULT"] = fault
    return subprocess.Popen(
        [sys.executable, "-m", "gridcv.cli", "run", str(path), "--quiet", "--isolation", "process"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fault", "epoch", "batch"),
    [
        ("batch-checkpoint@3", 1, 5),  # killed right after fold 1's 3rd checkpoint inside an epoch
        ("train-batch@27", 1, 10),  # killed after batch 13 of epoch 2, 3 batches after its last checkpoint
    ],
)
def test_a_fold_killed_inside_an_epoch_resumes_from_its_last_checkpoint(tmp_path, reference, fault, epoch, batch):
    path = experiment(tmp_path)
    killed = gridcv_run(path, fault)
    _, err = killed.communicate(timeout=300)
    assert killed.returncode == -signal.SIGKILL, err
    task_id = read_status(path.parent / "results").in_flight[0].task_id
    assert latest_position(next((path.parent / "results" / "checkpoints" / task_id).iterdir())) == (epoch, batch)
    resumed = gridcv_run(path)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    scores, histories, resumed_at = outcome(path)
    attempts = gridcv.load_attempts(path)
    assert attempts["outcome"].tolist() == ["abandoned", "done", "done"]  # killed, resumed, the next fold
    assert (attempts["resumed_from_epoch"].iloc[1], resumed_at[task_id]) == (epoch, batch)
    assert (scores, histories) == reference


def _checkpointed_since(folder: Path, moment: float) -> bool:
    """Whether a checkpoint was written after ``moment`` (the run trains)."""
    if not (folder / "checkpoints").is_dir():
        return False
    for path in (folder / "checkpoints").rglob("*.npz"):
        try:
            if path.stat().st_mtime >= moment:
                return True
        except FileNotFoundError:  # pruned meanwhile
            continue
    return False


@pytest.mark.slow
def test_a_fold_killed_at_random_moments_resumes_where_it_was_checkpointed(tmp_path, reference):
    """SIGKILL the whole run at random moments of training until it finishes; after each kill the fold
    in flight has a checkpoint at some batch, and its next attempt resumes exactly there."""
    rng = random.Random(14)
    path = experiment(tmp_path, checkpoint_every=2)
    folder = path.parent / "results"
    kills: list[tuple[str, tuple[int, int]]] = []
    for _launch in range(30):
        launched = time.time()
        run = gridcv_run(path)
        deadline = None
        while run.poll() is None:
            if deadline is None and _checkpointed_since(folder, launched):  # training: kill a random moment later
                deadline = time.monotonic() + rng.uniform(0.0, 1.0)
            if deadline is not None and time.monotonic() >= deadline:
                os.killpg(run.pid, signal.SIGKILL)
                break
            time.sleep(0.01)
        _, err = run.communicate(timeout=300)
        if run.returncode == 0:
            break
        assert run.returncode == -signal.SIGKILL, err
        in_flight = read_status(folder).in_flight
        if in_flight:
            task_id = in_flight[0].task_id
            found = list((folder / "checkpoints" / task_id).glob("*/*.npz"))
            position = latest_position(found[0].parent) if found else None
            kills.append((task_id, position or (0, 0)))
            # the next attempt at this fold resumes from the position it was killed at
            with ResultStore.open(folder, readonly=True) as store:
                attempts = [a for a in store.attempt_rows() if a.task_id == task_id]
            assert attempts[-1].outcome is None
    assert run.returncode == 0, "the run did not finish in 30 launches"
    assert kills, "no kill landed while a fold trained"
    scores, histories, resumed_at = outcome(path)
    last_kill = {task: position for task, position in kills}
    with ResultStore.open(folder, readonly=True) as store:
        attempts = store.attempt_rows()
    for task_id, (epoch, batch) in last_kill.items():
        final = [a for a in attempts if a.task_id == task_id][-1]
        assert (final.resumed_from_epoch, resumed_at[task_id]) == (epoch, batch)
    assert any(batch for _, (_, batch) in kills), "no kill landed inside an epoch"
    assert (scores, histories) == reference
