"""Reruns after the experiment file changed: new grid values add work, anything else is refused."""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
import yaml

import gridcv
from gridcv.cli import main
from gridcv.runner.progress import SilentReporter
from gridcv.store import ResultStore


def edit(path: Path, **changes) -> None:
    config = yaml.safe_load(path.read_text())
    config.update(changes)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_new_grid_values_only_add_folds(make_experiment):
    path = make_experiment()
    gridcv.run_experiment(path)
    before = gridcv.load_folds(path).set_index("task_id")
    edit(path, grid={"units": [4, 8, 16]})
    summary = gridcv.run_experiment(path)
    assert summary.attempts == 2
    after = gridcv.load_folds(path).set_index("task_id")
    assert after.loc[before.index, "finished_at"].tolist() == before["finished_at"].tolist()
    assert gridcv.load_results(path)["param_units"].tolist() == [4, 8, 16]


def test_removed_grid_values_leave_the_table_but_stay_stored(make_experiment):
    path = make_experiment()
    gridcv.run_experiment(path)
    edit(path, grid={"units": [8]})
    assert gridcv.run_experiment(path).attempts == 0
    assert gridcv.load_results(path)["param_units"].tolist() == [8]
    assert len(gridcv.load_folds(path)) == 4


def test_other_changes_are_refused_and_leave_results_untouched(make_experiment, capsys):
    path = make_experiment()
    gridcv.run_experiment(path)
    folder = path.parent / "results" / "tiny"
    before = digest(folder)
    edit(path, fit={"epochs": 3, "batch_size": 16}, scoring="balanced_accuracy")
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"gridcv: error: {path}: the experiment changed since {folder} was started: fit, scoring differ (only "
        "adding grid values is compatible). The finished folds were computed with the old settings, so they are "
        "not mixed with new ones. Pass --restart to move the old results aside (they are kept) and start again, "
        "or --output DIR to write to another folder."
    )
    assert digest(folder) == before


def test_builder_edits_count_as_a_change(make_experiment, capsys):
    path = make_experiment()
    gridcv.run_experiment(path)
    folder = path.parent / "results" / "tiny"
    builder = path.parent / "builder.py"
    builder.write_text(builder.read_text().replace('"relu"', '"tanh"'))
    assert main(["run", str(path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"gridcv: error: {path}: the model builder build() in {builder} changed since {folder} was started "
        "(changed: build() itself). The finished folds were computed with the old builder, so they are not mixed "
        "with new ones. Undo the edit to resume them, pass --restart to move the old results aside (they are kept) "
        "and start again, or --output DIR to write to another folder."
    )


def test_restart_moves_old_results_aside(make_experiment, capsys):
    path = make_experiment()
    gridcv.run_experiment(path)
    folder = path.parent / "results" / "tiny"
    before = digest(folder)
    edit(path, fit={"epochs": 3, "batch_size": 16})
    assert main(["run", str(path), "--restart", "--quiet"]) == 0
    aside = [p for p in folder.parent.iterdir() if p.name.startswith("tiny.old-")]
    assert len(aside) == 1
    assert {k: v for k, v in digest(aside[0]).items() if k != "run.lock"} == {
        k: v for k, v in before.items() if k != "run.lock"
    }
    assert gridcv.load_folds(path)["epochs_run"].tolist() == [3] * 4


def test_output_writes_elsewhere(make_experiment, capsys):
    path = make_experiment()
    gridcv.run_experiment(path)
    edit(path, fit={"epochs": 3, "batch_size": 16})
    other = path.parent / "elsewhere"
    assert main(["run", str(path), "--output", str(other), "--quiet"]) == 0
    assert gridcv.load_folds(other)["epochs_run"].tolist() == [3] * 4
    assert gridcv.load_folds(path.parent / "results" / "tiny")["epochs_run"].tolist() == [2] * 4


def test_retry_failed_runs_failed_folds_again(make_experiment):
    builder = """
import pathlib, keras
def build(params, input_shape, n_classes):
    if not pathlib.Path(__file__).with_name("fixed").exists():
        raise RuntimeError("flaky")
    m = keras.Sequential([keras.Input(shape=input_shape), keras.layers.Dense(n_classes, activation="softmax")])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return m
"""
    path = make_experiment(builder=builder)
    with pytest.raises(gridcv.AllFoldsFailed):
        gridcv.run_experiment(path)
    (path.parent / "fixed").write_text("")
    with pytest.raises(gridcv.AllFoldsFailed):  # failed is final ...
        gridcv.run_experiment(path)
    gridcv.run_experiment(path, gridcv.RunOptions(retry_failed=True))  # ... unless asked
    folds = gridcv.load_folds(path)
    assert folds["status"].tolist() == ["done"] * 4
    assert folds["attempts"].tolist() == [2] * 4


SHARED_MODELS = """
import keras

UNITS = 8  # the hidden layer's width


def dense_block(x, units=UNITS):
    return keras.layers.Dense(units, activation="relu")(x)


def build(params, input_shape, n_classes):
    inputs = keras.Input(shape=input_shape)
    outputs = keras.layers.Dense(n_classes, activation="softmax")(dense_block(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def build_segmentation(params, input_shape, n_classes):
    raise NotImplementedError("another experiment's builder")
"""


def edit_builder(path: Path, old: str, new: str) -> None:
    builder = path.parent / "builder.py"
    text = builder.read_text()
    assert old in text
    builder.write_text(text.replace(old, new))


def test_editing_an_unrelated_function_in_the_builder_file_resumes(make_experiment):
    path = make_experiment(builder=SHARED_MODELS, grid={"units": [4]})
    gridcv.run_experiment(path)
    edit_builder(path, 'raise NotImplementedError("another experiment\'s builder")', "return None")
    edit_builder(path, "# the hidden layer's width", "# a comment is not a change")
    edit(path, grid={"units": [4, 5]})  # extending the grid still works
    assert gridcv.run_experiment(path).attempts == 2
    assert gridcv.load_folds(path)["status"].tolist() == ["done"] * 4


@pytest.mark.parametrize(
    ("old", "new", "changed"),
    [
        ('activation="relu"', 'activation="tanh"', "dense_block(), which it uses"),
        ("UNITS = 8", "UNITS = 16", "UNITS, which it uses"),
        ("(dense_block(inputs))", "(dense_block(dense_block(inputs, 4)))", "build() itself"),
        ("import keras\n", "import keras\nkeras.utils.set_random_seed(1)\n", "module-level code, which it now uses"),
    ],
)
def test_editing_what_the_builder_uses_is_refused(make_experiment, capsys, old, new, changed):
    path = make_experiment(builder=SHARED_MODELS, grid={"units": [4]})
    gridcv.run_experiment(path)
    folder = path.parent / "results" / "tiny"
    before = digest(folder)
    edit_builder(path, old, new)
    assert main(["run", str(path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"gridcv: error: {path}: the model builder build() in {path.parent / 'builder.py'} changed since {folder} "
        f"was started (changed: {changed}). The finished folds were computed with the old builder, so they are "
        "not mixed with new ones. Undo the edit to resume them, pass --restart to move the old results aside "
        "(they are kept) and start again, or --output DIR to write to another folder."
    )
    assert digest(folder) == before
    edit_builder(path, new, old)  # undoing the edit resumes
    assert main(["run", str(path), "--quiet"]) == 0


def make_it_the_old_way(path: Path) -> None:
    """Rewrites a results folder's metadata as gridcv wrote it before the builder was hashed by function:
    the ``model`` fingerprint hashed the builder's whole file, and there was no record of its parts."""
    folder = path.parent / "results" / "tiny"
    whole_file = hashlib.sha256((path.parent / "builder.py").read_bytes()).hexdigest()[:16]
    old_model = hashlib.sha256(json.dumps(["builder.py:build", whole_file]).encode()).hexdigest()[:16]
    with contextlib.closing(sqlite3.connect(folder / "results.sqlite")) as conn, conn:
        fingerprint = json.loads(conn.execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchone()[0])
        assert fingerprint["model"] != old_model
        fingerprint["model"] = old_model
        conn.execute("UPDATE meta SET value = ? WHERE key = 'fingerprint'", (json.dumps(fingerprint),))
        conn.execute("DELETE FROM meta WHERE key IN ('builder', 'builder_parts')")


def test_a_folder_that_hashed_the_whole_builder_file_resumes_and_is_updated(make_experiment):
    path = make_experiment(builder=SHARED_MODELS, grid={"units": [4]})
    gridcv.run_experiment(path)
    make_it_the_old_way(path)
    assert gridcv.run_experiment(path).attempts == 0
    with ResultStore.open(path.parent / "results" / "tiny", readonly=True) as store:
        assert store.get_meta("builder") == "builder.py:build"
        assert sorted(store.get_meta("builder_parts")) == ["UNITS", "build()", "dense_block()", "keras"]
    # The new form is stored: an unrelated edit no longer counts.
    edit_builder(path, 'raise NotImplementedError("another experiment\'s builder")', "return None")
    assert gridcv.run_experiment(path).attempts == 0


def test_a_folder_that_hashed_the_whole_builder_file_cannot_tell_which_edit(make_experiment, capsys):
    path = make_experiment(builder=SHARED_MODELS, grid={"units": [4]})
    gridcv.run_experiment(path)
    folder = path.parent / "results" / "tiny"
    make_it_the_old_way(path)
    edit_builder(path, 'raise NotImplementedError("another experiment\'s builder")', "return None")
    assert main(["run", str(path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"gridcv: error: {path}: the model builder build() in {path.parent / 'builder.py'} changed since {folder} "
        "was started (this folder was started by a gridcv that hashed the whole file, so an edit anywhere in it "
        "counts). The finished folds were computed with the old builder, so they are not mixed with new ones. "
        "Undo the edit to resume them, pass --restart to move the old results aside (they are kept) and start "
        "again, or --output DIR to write to another folder."
    )


class Recorder(SilentReporter):
    """Keeps the run's messages."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def message(self, text: str) -> None:
        self.messages.append(text)

    def changes(self) -> list[str]:
        return [m for m in self.messages if m.startswith("the experiment changed")]


FAILS_WHEN_TRAINING = """
import keras


class Mistake(keras.layers.Layer):
    def call(self, x, training=None):
        if training:
            raise RuntimeError("a mistake that shows only when training")
        return x


def build(params, input_shape, n_classes):
    model = keras.Sequential([
        keras.Input(shape=input_shape),
        Mistake(),
        keras.layers.Dense(n_classes, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model
"""


def test_a_fix_after_every_fold_failed_is_accepted(make_experiment):
    """No fold finished with the old builder, so the fixed one is taken without --restart."""
    path = make_experiment(builder=FAILS_WHEN_TRAINING)
    folder = path.parent / "results" / "tiny"
    with pytest.raises(gridcv.AllFoldsFailed):
        gridcv.run_experiment(path)
    assert gridcv.load_folds(path)["status"].tolist() == ["failed"] * 4
    edit_builder(path, "        Mistake(),\n", "")
    recorder = Recorder()
    gridcv.run_experiment(path, reporter=recorder)
    assert recorder.changes() == [
        f"the experiment changed since {folder} was started (model differ), but no fold had finished, so nothing "
        "is mixed and every fold runs with the new settings; discarded from the old ones: 4 failed fold(s)."
    ]
    folds = gridcv.load_folds(path)
    assert folds["status"].tolist() == ["done"] * 4
    assert folds["attempts"].tolist() == [1] * 4  # the old builder's attempts were discarded with its folds
    assert len(gridcv.load_attempts(path)) == 4


def test_checkpoints_of_the_old_settings_are_not_resumed(uncompiled_experiment, clear_stop_request):
    marker = uncompiled_experiment().parent / "stop-now"
    stop = {"name": "builder.py:StopOnMarker", "marker": str(marker)}
    path = uncompiled_experiment(fit={"epochs": 3, "batch_size": 16, "callbacks": [stop]}, grid={"units": [4]})
    folder = path.parent / "results" / "tiny"
    marker.touch()
    with pytest.raises(gridcv.RunInterrupted):
        gridcv.run_experiment(path)
    clear_stop_request.clear()
    assert [p.name for p in (folder / "checkpoints").glob("*/*/*")] == ["epoch-00001.npz"]
    edit(path, fit={"epochs": 4, "batch_size": 16})  # the old checkpoint would fit: same model, same batch
    recorder = Recorder()
    gridcv.run_experiment(path, reporter=recorder)
    assert recorder.changes() == [
        f"the experiment changed since {folder} was started (fit differ), but no fold had finished, so nothing "
        "is mixed and every fold runs with the new settings; discarded from the old ones: 1 unfinished fold(s), "
        "the checkpoints of 1 fold(s)."
    ]
    attempts = gridcv.load_attempts(path)
    assert attempts["attempt"].tolist() == [1, 1]
    assert attempts["resumed_from_epoch"].tolist() == [0, 0]  # both folds trained from scratch
    assert gridcv.load_folds(path)["epochs_run"].tolist() == [4, 4]


def test_a_change_with_a_finished_fold_is_still_refused(make_experiment, capsys):
    """One done fold is enough: it would be mixed with folds of the new settings."""
    path = make_experiment(grid={"units": [4], "explode": ["no", "yes"]})
    gridcv.run_experiment(path)
    assert gridcv.load_folds(path)["status"].tolist() == ["done", "done", "failed", "failed"]
    edit(path, fit={"epochs": 3, "batch_size": 16})
    assert main(["run", str(path)]) == 2
    assert "the experiment changed since" in capsys.readouterr().err
