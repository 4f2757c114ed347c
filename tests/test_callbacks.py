"""Callbacks by name: what each does to a fold's row, and their state across a resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

import gridcv
from gridcv.config import load_experiment
from gridcv.plan import monitoring_split
from gridcv.runner.progress import SilentReporter
from gridcv.store.checkpoints import list_checkpoints, read_checkpoint
from tests.conftest import TINY_BUILDER, base_config

# min_delta larger than any change in the loss: no epoch after the first counts as an
# improvement, so when callbacks act does not depend on the numbers training produces.
NEVER_IMPROVES = {"monitor": "val_loss", "min_delta": 100.0}


def _fit(epochs: int, *callbacks: object, **extra: object) -> dict:
    return {"epochs": epochs, "batch_size": 16, "callbacks": list(callbacks), **extra}


def test_early_stopping_stops_and_the_row_says_when(uncompiled_experiment):
    stop = {"name": "early_stopping", "patience": 2, **NEVER_IMPROVES}
    path = uncompiled_experiment(fit=_fit(10, stop), grid={"units": [4]})
    gridcv.run_experiment(path)
    folds = gridcv.load_folds(path)
    # epoch 1 sets the best; epochs 2 and 3 do not improve; patience 2 stops after epoch 3
    assert folds["epochs_run"].tolist() == [3, 3]
    assert folds["stopped_epoch"].tolist() == [3, 3]
    assert folds["status"].tolist() == ["done", "done"]
    assert set(folds["best_epoch"]) <= {1, 2, 3}
    assert np.isfinite(folds["best_val_loss"]).all() and np.isfinite(folds["best_loss"]).all()
    assert not (path.parent / "results" / "tiny" / "checkpoints").exists() or not any(
        (path.parent / "results" / "tiny" / "checkpoints").iterdir()
    )


def test_resumed_fold_keeps_early_stopping_and_plateau_state(uncompiled_experiment, clear_stop_request):
    marker = uncompiled_experiment().parent / "stop-now"
    callbacks = [
        {"name": "early_stopping", "patience": 3, "restore_best_weights": True, **NEVER_IMPROVES},
        {"name": "reduce_lr_on_plateau", "patience": 1, "factor": 0.5, **NEVER_IMPROVES},
        {"name": "builder.py:StopOnMarker", "marker": str(marker)},
    ]
    path = uncompiled_experiment(
        fit=_fit(10, *callbacks),
        grid={"units": [4]},
        cv={"splitter": "KFold", "n_splits": 2},
        compile={"optimizer": "sgd", "learning_rate": 0.1},
    )
    folder = path.parent / "results" / "tiny"
    marker.touch()
    with pytest.raises(gridcv.RunInterrupted):
        gridcv.run_experiment(path)
    clear_stop_request.clear()  # the stop request was for that run only
    # The interrupted fold's checkpoint carries EarlyStopping's counters and best weights.
    newest = list_checkpoints(next((folder / "checkpoints").glob("*/*")))[0]
    with np.load(newest) as npz:
        signature = json.loads(str(npz["meta"]))["signature"]
    state, _ = read_checkpoint(newest, signature)
    assert state.epoch == 1
    early = state.extra["callbacks"]["0:EarlyStopping"]
    assert early["wait"] == 0 and early["has_best_weights"]
    assert any(k.startswith("0:EarlyStopping/best_weights/") for k in state.arrays)
    assert state.extra["callbacks"]["1:ReduceLROnPlateau"]["wait"] == 0

    gridcv.run_experiment(path)
    folds = gridcv.load_folds(path)
    # Without the restored state the resumed fold would have started counting again
    # and stopped three epochs later (at 5, not 4).
    assert folds["epochs_run"].tolist() == [4, 4]
    assert folds["stopped_epoch"].tolist() == [4, 4]
    attempts = gridcv.load_attempts(path)
    assert attempts["resumed_from_epoch"].tolist() == [0, 1, 0]
    # ReduceLROnPlateau halves the rate after each epoch without improvement (patience 1);
    # the history logs the rate an epoch ran with. Had its state been lost on resume,
    # epoch 2 would have been a new 'best' and epoch 3 would still run at 0.1.
    for history in _histories(folder):
        assert history["learning_rate"] == pytest.approx([0.1, 0.1, 0.05, 0.025])


class Messages(SilentReporter):
    """Keeps the run's one-line messages."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def message(self, text: str) -> None:
        self.lines.append(text)


STATELESS = (
    "callback StopOnMarker has no get_state()/set_state(): what it keeps between epochs is lost when a fold "
    "resumes from a checkpoint (define both for exact resumes; see the README)"
)


def test_a_damaged_checkpoint_and_a_stateless_callback_are_said_once(uncompiled_experiment, clear_stop_request):
    marker = uncompiled_experiment().parent / "stop-now"
    stopper = {"name": "builder.py:StopOnMarker", "marker": str(marker)}
    path = uncompiled_experiment(fit=_fit(4, stopper), grid={"units": [4]}, cv={"splitter": "KFold", "n_splits": 2})
    folder = path.parent / "results" / "tiny"
    for _ in range(2):  # stopped after epoch 1, then resumed and stopped after epoch 2
        marker.touch()
        with pytest.raises(gridcv.RunInterrupted):
            gridcv.run_experiment(path)
        clear_stop_request.clear()
    newest, previous = list_checkpoints(next((folder / "checkpoints").glob("*/*")))
    assert (newest.name, previous.name) == ("epoch-00002.npz", "epoch-00001.npz")
    newest.write_bytes(newest.read_bytes()[:100])
    messages = Messages()
    gridcv.run_experiment(path, reporter=messages)
    note = f"unusable checkpoint passed over: {newest} (File is not a zip file); resumed from epoch 1"
    assert messages.lines == [
        "checking the model builder builder.py:build ...",
        f"candidate 1 fold 1 (units=4): {note}",
        f"candidate 1 fold 1 (units=4): {STATELESS}",  # once per run, though both folds have it
    ]
    folds = gridcv.load_folds(path)
    assert folds["notes"].tolist() == [f"{note}; {STATELESS}", STATELESS]
    assert gridcv.load_attempts(path)["resumed_from_epoch"].tolist() == [0, 1, 1, 0]


def test_a_callback_with_get_state_and_set_state_is_not_warned_about(make_experiment):
    builder = (
        TINY_BUILDER
        + """

class Counter(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = 0

    def on_epoch_end(self, epoch, logs=None):
        self.epochs += 1

    def get_state(self):
        return {"epochs": self.epochs}

    def set_state(self, state):
        self.epochs = state["epochs"]
"""
    )
    path = make_experiment(builder=builder, fit=_fit(1, {"name": "builder.py:Counter"}), grid={"units": [4]})
    messages = Messages()
    gridcv.run_experiment(path, reporter=messages)
    assert messages.lines == ["checking the model builder builder.py:build ..."]
    assert gridcv.load_folds(path)["notes"].isna().all()


def _histories(folder):
    from gridcv.store import ResultStore

    with ResultStore.open(folder, readonly=True) as store:
        return [r.history for r in store.fold_rows()]


def test_model_checkpoint_keeps_each_folds_best_model(uncompiled_experiment):
    path = uncompiled_experiment(fit=_fit(2, {"name": "model_checkpoint", "monitor": "val_loss"}), grid={"units": [4]})
    gridcv.run_experiment(path)
    folds = gridcv.load_folds(path)
    import keras

    for task_id, model_path in zip(folds["task_id"], folds["model_path"], strict=True):
        assert model_path.endswith(f"models/{task_id}.keras")
        model = keras.saving.load_model(model_path)
        assert model.predict(np.zeros((2, 4), np.float32), verbose=0).shape == (2, 3)


def test_model_checkpoint_save_models_none_writes_nothing(uncompiled_experiment):
    path = uncompiled_experiment(fit=_fit(2, {"name": "model_checkpoint", "save_models": "none"}), grid={"units": [4]})
    gridcv.run_experiment(path)
    assert gridcv.load_folds(path)["model_path"].isna().all()
    assert not (path.parent / "results" / "tiny" / "models").exists()


def test_tensorboard_writes_a_log_folder_per_fold_or_says_what_to_install(uncompiled_experiment):
    import importlib.util

    path = uncompiled_experiment(fit=_fit(1, "tensorboard"), grid={"units": [4]})
    if importlib.util.find_spec("tensorboard") is None:
        with pytest.raises(gridcv.BuilderError, match=r"needs the tensorboard package .*pip install"):
            gridcv.run_experiment(path)
        return
    gridcv.run_experiment(path)
    for task_id in gridcv.load_folds(path)["task_id"]:
        assert any((path.parent / "results" / "tiny" / "tensorboard" / task_id).rglob("events.out.*"))


def test_validation_split_from_train_is_held_out_of_training():
    labels = np.arange(100) % 4
    train_idx = np.arange(0, 100, 2)
    fit, monitor = monitoring_split(train_idx, labels, 0.2, seed=3)
    assert len(monitor) == 10 and len(fit) == 40
    assert np.array_equal(np.sort(np.concatenate([fit, monitor])), train_idx)
    assert np.bincount(labels[monitor], minlength=4).tolist() == [5, 0, 5, 0]  # even indices: classes 0 and 2
    again = monitoring_split(train_idx, labels, 0.2, seed=3)
    assert np.array_equal(again[1], monitor)


def test_monitoring_on_a_split_of_training_data(uncompiled_experiment):
    stop = {"name": "early_stopping", "patience": 1, **NEVER_IMPROVES}
    path = uncompiled_experiment(fit=_fit(5, stop, validation_split_from_train=0.25), grid={"units": [4]})
    assert load_experiment(path).spec.fit.validation_split_from_train == 0.25
    gridcv.run_experiment(path)
    assert gridcv.load_folds(path)["stopped_epoch"].tolist() == [2, 2]


def test_callback_arguments_as_grid_keys_make_candidates_and_param_columns(uncompiled_experiment):
    fit = {"epochs": 6, "batch_size": 16, "callbacks": {"early_stopping": NEVER_IMPROVES}}
    path = uncompiled_experiment(fit=fit, grid={"early_stopping.patience": [1, 2]})
    gridcv.run_experiment(path)
    results = gridcv.load_results(path)
    assert results["param_early_stopping.patience"].tolist() == [1, 2]
    assert results["params"].tolist() == [{"early_stopping.patience": 1}, {"early_stopping.patience": 2}]
    # epoch 1 sets the best and nothing improves after it: patience p stops after epoch 1 + p
    assert gridcv.load_folds(path)["epochs_run"].tolist() == [2, 2, 3, 3]


def test_the_refit_reads_callback_arguments_from_its_candidates_grid_keys(tmp_path):
    """Monitoring the test fold, the refit trains for the folds' kept epochs: the best epoch when the
    candidate restores the best weights (here by a grid key, not in fit.callbacks), else the epochs run."""
    from gridcv.monitoring import Monitored, Monitoring
    from gridcv.runner.refit import refit_epochs
    from gridcv.store import FoldRow, FoldStatus

    path = tmp_path / "e.yaml"
    stop = {"early_stopping": {"monitor": "val_loss", "patience": 2}}
    fit = {"epochs": 10, "callbacks": stop, "monitor_test_fold": True}
    path.write_text(yaml.safe_dump(base_config(fit=fit, grid={"early_stopping.restore_best_weights": [True, False]})))
    spec = load_experiment(path).spec
    rows = [
        FoldRow(f"t{i}", "c", 0, {}, i, 0, FoldStatus.DONE, 1, epochs_run=6, info={"best_epoch": 4}) for i in range(2)
    ]
    monitoring = Monitoring(Monitored.TEST_FOLD)
    assert refit_epochs(spec, rows, "c", {"early_stopping.restore_best_weights": True}, monitoring) == 4
    assert refit_epochs(spec, rows, "c", {"early_stopping.restore_best_weights": False}, monitoring) == 6
