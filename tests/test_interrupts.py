"""Ctrl-C, a second concurrent run, status after a kill, corrupt checkpoints."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import gridcv
from gridcv.store import ResultStore, RunLock
from gridcv.store.checkpoints import TrainingState, list_checkpoints, newest_usable, save_checkpoint
from tests.stops import stopped_at

SLOW = {"fit": {"epochs": 40, "batch_size": 4}, "grid": {"units": [4]}, "execution": {"isolation": "process"}}


def start(path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "gridcv.cli", "run", str(path), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def kill_in_first_fold(path: Path) -> None:
    """Runs the experiment and SIGKILLs the whole run when the first fold's fourth checkpoint is
    complete but not yet renamed: three epochs checkpointed, whatever the machine's speed."""
    killed = subprocess.run(
        [sys.executable, "-m", "gridcv.cli", "run", str(path), "--quiet"],
        env={**os.environ, "GRIDCV_FAULT": "checkpoint-rename@4"},
        start_new_session=True,
        capture_output=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL


def wait_for_checkpoint(folder: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any((folder / "checkpoints").rglob("epoch-*.npz")):
            return
        time.sleep(0.1)
    raise AssertionError("no checkpoint appeared")


@pytest.mark.slow
def test_ctrl_c_stops_after_a_checkpoint_and_resumes(make_experiment):
    path = make_experiment(**SLOW)
    folder = path.parent / "results" / "tiny"
    run = start(path, "--quiet")
    wait_for_checkpoint(folder)
    os.killpg(run.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole group
    _, err = run.communicate(timeout=60)
    assert run.returncode == 130
    assert err.strip() == (
        f"gridcv: interrupted: finished folds are saved in {folder} and the fold in flight resumes from its last "
        f"checkpoint. Run `gridcv run {path}` again to continue."
    )
    folds = gridcv.load_folds(path)
    assert folds["status"].iloc[0] == "pending"
    attempts = gridcv.load_attempts(path)
    assert attempts["outcome"].tolist()[0] == "interrupted"
    # the stop comes after the batch in training: a checkpoint is saved there (or at the epoch's end)
    epoch, batch = stopped_at(attempts["message"].iloc[0])
    assert 0 <= epoch < 40
    resumed = start(path, "--quiet")
    resumed.communicate(timeout=300)
    assert resumed.returncode == 0
    folds = gridcv.load_folds(path)
    assert folds["status"].tolist() == ["done", "done"]
    assert gridcv.load_attempts(path)["resumed_from_epoch"].tolist()[1] == epoch
    with ResultStore.open(folder, readonly=True) as store:
        assert store.fold_rows()[0].info["resumed_from_batch"] == batch


@pytest.mark.slow
def test_second_run_on_the_same_folder_is_refused(make_experiment):
    path = make_experiment(**SLOW)
    folder = path.parent / "results" / "tiny"
    first = start(path, "--quiet")
    try:
        wait_for_checkpoint(folder)
        second = subprocess.run(
            [sys.executable, "-m", "gridcv.cli", "run", str(path)], capture_output=True, text=True, timeout=120
        )
        assert second.returncode == 2
        assert second.stderr.startswith(
            f"gridcv: error: {folder}: another gridcv run is using this results folder (pid {first.pid} on "
        )
        assert second.stderr.strip().endswith(
            "Wait for it to finish, stop it, or pass --output to write this run's results to a different folder."
        )
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()


@pytest.mark.slow
def test_status_shows_the_stale_fold_after_a_kill(make_experiment):
    path = make_experiment(**SLOW)
    folder = path.parent / "results" / "tiny"
    kill_in_first_fold(path)
    out = subprocess.run(
        [sys.executable, "-m", "gridcv.cli", "status", str(folder)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    assert lines[0] == f"tiny ({folder})"
    assert lines[1] == "  folds: 2 total, 0 done, 1 running, 0 failed, 1 left"
    assert lines[2] == "  run: none active"
    assert lines[3].startswith("  in flight: candidate 1 fold 1, attempt 1, checkpointed at epoch ")
    assert lines[3].endswith("(stale: its run ended; the next run takes it back)")
    assert RunLock(folder).holder() is None


def test_corrupt_newest_checkpoint_falls_back_to_the_previous(tmp_path, caplog):
    signature = [[[2], "float32"]]
    for epoch in (1, 2):
        save_checkpoint(
            tmp_path,
            TrainingState(epoch=epoch, history={"loss": [1.0] * epoch}),
            [np.full(2, epoch, np.float32)],
            signature,
        )
    newest = list_checkpoints(tmp_path)[0]
    newest.write_bytes(newest.read_bytes()[:100])  # truncated
    skipped: list[str] = []
    with caplog.at_level(logging.WARNING):
        found = newest_usable(tmp_path, signature, skipped=skipped)
    assert found is not None
    state, arrays = found
    assert state.epoch == 1 and arrays[0].tolist() == [1.0, 1.0]
    assert f"checkpoint {newest} cannot be used" in caplog.text
    assert skipped == [f"{newest} (File is not a zip file)"]


@pytest.mark.parametrize(
    "error", [PermissionError(13, "Permission denied"), MemoryError(), OSError(5, "Input/output error")]
)
def test_a_checkpoint_unreadable_for_another_reason_than_damage_is_not_passed_over(tmp_path, monkeypatch, error):
    """Root reads every file, so the file system's refusal is played by np.load: only damage falls back."""
    signature = [[[2], "float32"]]
    for epoch in (1, 2):
        save_checkpoint(tmp_path, TrainingState(epoch=epoch), [np.full(2, epoch, np.float32)], signature)
    newest = list_checkpoints(tmp_path)[0]
    load = np.load

    def refusing(path, *args, **kwargs):
        if Path(path) == newest:
            raise error
        return load(path, *args, **kwargs)

    monkeypatch.setattr(np, "load", refusing)
    skipped: list[str] = []
    with pytest.raises(type(error)):
        newest_usable(tmp_path, signature, skipped=skipped)
    assert skipped == []


def test_every_checkpoint_corrupt_means_a_fresh_start_with_a_warning(tmp_path, caplog):
    signature = [[[2], "float32"]]
    save_checkpoint(tmp_path, TrainingState(epoch=1), [np.zeros(2, np.float32)], signature)
    path = list_checkpoints(tmp_path)[0]
    data = bytearray(path.read_bytes())
    data[-300:-200] = bytes(100)  # flipped bytes inside the archive
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        assert newest_usable(tmp_path, signature) is None
    assert f"no usable checkpoint in {tmp_path}; the fold starts from epoch 0" in caplog.text


def test_checkpoint_for_another_model_is_not_restored(tmp_path, caplog):
    save_checkpoint(tmp_path, TrainingState(epoch=3), [np.zeros(2, np.float32)], [[[2], "float32"]])
    with caplog.at_level(logging.WARNING):
        assert newest_usable(tmp_path, [[[3], "float32"]]) is None
    assert "it was written for a different model or optimizer" in caplog.text


def test_a_feed_that_cannot_enter_an_epoch_passes_over_a_checkpoint_written_inside_one(tmp_path):
    import keras

    from gridcv.training.checkpointing import restore_training_state, training_variables, variables_signature
    from gridcv.training.fold import resume_notes

    model = keras.Sequential([keras.Input(shape=(3,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    model.optimizer.build(model.trainable_variables)
    variables = training_variables(model)
    saved = [np.full(v.shape, 0.5, dtype=v.dtype) for v in variables]
    save_checkpoint(tmp_path, TrainingState(epoch=2), saved, variables_signature(variables))
    save_checkpoint(tmp_path, TrainingState(epoch=2, batch=3), saved, variables_signature(variables))
    skipped: list[str] = []
    restored = restore_training_state(model, tmp_path, None, skipped)  # None: a user's feed, no batch index
    assert restored.state.position == (2, 0)
    assert skipped == [
        f"{tmp_path / 'epoch-00002-batch-0000003.npz'} (it was written inside an epoch, and this feed resumes "
        "at an epoch's start only)"
    ]
    assert resume_notes(skipped, 2, 0, []) == (f"unusable checkpoint passed over: {skipped[0]}; resumed from epoch 2",)


def test_only_the_two_newest_checkpoints_are_kept(tmp_path):
    for epoch in range(1, 6):
        save_checkpoint(tmp_path, TrainingState(epoch=epoch), [np.zeros(1, np.float32)], [[[1], "float32"]])
    assert [p.name for p in list_checkpoints(tmp_path)] == ["epoch-00005.npz", "epoch-00004.npz"]
    assert not list(tmp_path.glob(".*tmp*"))


@pytest.mark.slow
def test_a_run_with_a_corrupted_checkpoint_still_finishes(make_experiment):
    path = make_experiment(**SLOW)
    folder = path.parent / "results" / "tiny"
    kill_in_first_fold(path)
    checkpoints = sorted((folder / "checkpoints").rglob("epoch-*.npz"), reverse=True)
    assert [c.name for c in checkpoints] == ["epoch-00003.npz", "epoch-00002.npz"]
    for ckpt in checkpoints:
        ckpt.write_bytes(ckpt.read_bytes()[:100])  # cut short
    resumed = start(path)  # not quiet: the log's lines are what a user reads
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    folds = gridcv.load_folds(path)
    assert folds["status"].tolist() == ["done", "done"]
    with ResultStore.open(folder, readonly=True) as store:
        assert store.integrity_check() == "ok"
    assert gridcv.load_attempts(path)["resumed_from_epoch"].tolist()[1] == 0
    why = "File is not a zip file"
    note = (
        f"unusable checkpoint passed over: {checkpoints[0]} ({why}); {checkpoints[1]} ({why}); "
        "started again from epoch 0"
    )
    assert folds["notes"].iloc[0] == note and np.isnan(folds["notes"].iloc[1])  # in the fold's row...
    lines = [re.sub(r"^\[\d\d:\d\d:\d\d\] ", "", line) for line in out.splitlines()]
    assert f"candidate 1 fold 1 (units=4): {note}" in lines  # ...and in the run's output, once
    assert sum(note in line for line in lines) == 1
