"""What callbacks monitor: a part of each training split by default, never the test fold.

The builder below records, through a NumPy function inside the model, the id of
every sample the model sees while ``fit`` runs: in training mode (trained on)
and in inference mode (what ``fit`` evaluates for callbacks: the monitored
samples). A callback switches recording on in ``on_train_begin`` and off in
``on_train_end``, so the predictions that score the fold afterwards are not
counted. Each sample's first feature is its index, so the recorded ids are
sample indices.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.model_selection import GroupKFold, StratifiedKFold

import gridcv
from gridcv.cli import main
from gridcv.config import load_experiment
from gridcv.errors import ConfigError
from gridcv.monitoring import Monitored, Monitoring
from gridcv.plan import make_plan, monitoring_split
from gridcv.runner.progress import SilentReporter
from gridcv.store import DB_NAME, ResultStore

N = 60

RECORDING_BUILDER = '''
import json
import os

import keras
import numpy as np
import tensorflow as tf

_seen = {"fit": set(), "monitor": set()}
_recording = [False]


def _record(ids, training):
    if _recording[0]:
        _seen["fit" if training else "monitor"].update(int(i) for i in ids)
    return np.float32(0.0)


class SampleIds(keras.layers.Layer):
    """Passes its input through; records column 0 (the sample's index) of what it sees, by mode."""

    def call(self, x, training=None):
        mode = bool(training)
        seen = tf.numpy_function(lambda ids: _record(ids, mode), [x[:, 0]], tf.float32)
        return x + 0.0 * tf.reshape(seen, [])

    def compute_output_shape(self, input_shape):
        return input_shape


class RecordSamples(keras.callbacks.Callback):
    """Records while fit runs; writes what was seen to <folder>/fit-<n>.json, one file per fit."""

    def __init__(self, folder):
        super().__init__()
        self.folder = folder

    def on_train_begin(self, logs=None):
        _seen["fit"].clear()
        _seen["monitor"].clear()
        _recording[0] = True

    def on_train_end(self, logs=None):
        _recording[0] = False
        n = len(os.listdir(self.folder))
        with open(os.path.join(self.folder, f"fit-{n:02d}.json"), "w") as f:
            json.dump({k: sorted(v) for k, v in _seen.items()}, f)


def build(params, input_shape, n_classes):
    model = keras.Sequential([
        keras.Input(shape=input_shape),
        SampleIds(),
        keras.layers.Dense(params.get("units", 8), activation="relu"),
        keras.layers.Dense(n_classes, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", jit_compile=False)
    return model
'''

# min_delta larger than any change in the loss: no epoch after the first improves, so
# early stopping (patience 1) stops after epoch 2 whatever the numbers.
NEVER_IMPROVES = {"name": "early_stopping", "monitor": "val_loss", "min_delta": 100.0, "patience": 1}


class Messages(SilentReporter):
    """A reporter that keeps the run's messages."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def message(self, text: str) -> None:
        self.lines.append(text)


def _data(folder: Path, n: int = N) -> tuple[np.ndarray, np.ndarray]:
    """x: (index, three learnable features); y: 3 balanced classes; groups: 12 groups of 5."""
    rng = np.random.default_rng(0)
    y = np.arange(n) % 3
    features = rng.normal(size=(n, 3)).astype(np.float32)
    features[:, 0] += y * 2.0
    x = np.column_stack([np.arange(n, dtype=np.float32), features])
    (folder / "data").mkdir(parents=True, exist_ok=True)
    np.save(folder / "data" / "x.npy", x)
    np.save(folder / "data" / "y.npy", y)
    np.save(folder / "data" / "groups.npy", np.arange(n) // 5)
    return y, np.arange(n) // 5


@pytest.fixture
def recorded(tmp_path, make_experiment):
    """Writes the data and returns a function making an experiment whose fits record the samples they see."""
    _data(tmp_path)
    (tmp_path / "seen").mkdir()

    def make(*callbacks: dict, fit: dict | None = None, **overrides: object) -> Path:
        record = {"name": "builder.py:RecordSamples", "folder": str(tmp_path / "seen")}
        section = {"epochs": 2, "batch_size": 16, "callbacks": [*callbacks, record], **(fit or {})}
        overrides.setdefault("grid", {"units": [4]})
        return make_experiment(builder=RECORDING_BUILDER, fit=section, **overrides)

    return make


def _seen(tmp_path: Path) -> list[dict[str, set[int]]]:
    """What each fit saw, in the order they ran: trained-on ids and monitored ids."""
    files = sorted((tmp_path / "seen").glob("fit-*.json"))
    return [{k: set(v) for k, v in json.loads(f.read_text()).items()} for f in files]


def _stratified_splits(n_splits: int = 2) -> list[tuple[set[int], set[int]]]:
    """The folds base_config's splitter makes (StratifiedKFold, shuffled, random_state 0)."""
    y = np.arange(N) % 3
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=0)
    return [(set(tr.tolist()), set(te.tolist())) for tr, te in splitter.split(np.zeros((N, 1)), y)]


def test_by_default_callbacks_never_see_a_test_fold_sample(recorded, tmp_path):
    path = recorded(
        NEVER_IMPROVES, {"name": "reduce_lr_on_plateau", "monitor": "val_loss", "patience": 1}, fit={"epochs": 3}
    )
    messages = Messages()
    gridcv.run_experiment(path, reporter=messages)
    seen = _seen(tmp_path)
    plan = make_plan(load_experiment(path).spec, np.arange(N) % 3)
    folds = gridcv.load_folds(path)
    assert len(seen) == 2
    for k, ((train, test), fold) in enumerate(zip(_stratified_splits(), seen, strict=True)):
        expected_fit, expected_monitor = monitoring_split(
            np.array(sorted(train)), np.arange(N) % 3, 0.1, plan.tasks[k].seed
        )
        assert fold["monitor"] == set(expected_monitor.tolist())  # exactly the monitored split
        assert fold["fit"] == set(expected_fit.tolist())
        assert len(fold["monitor"]) == 3  # 10% of the 30 training samples
        assert not fold["monitor"] & test and not fold["fit"] & test
        assert not fold["monitor"] & fold["fit"] and fold["monitor"] | fold["fit"] == train
    assert folds["n_fit_samples"].tolist() == [27, 27]
    assert folds["n_monitored_samples"].tolist() == [3, 3]
    assert folds["monitored"].tolist() == ["train_split", "train_split"]
    assert folds["stopped_epoch"].tolist() == [2, 2]  # the callbacks acted on what they monitored
    assert folds.attrs["warnings"] == [] and gridcv.load_results(path).attrs["warnings"] == []
    assert messages.lines == [  # no word of the test fold; only the once-per-run note of a stateless callback
        "checking the model builder builder.py:build ...",
        "candidate 1 fold 1 (units=4): callback RecordSamples has no get_state()/set_state(): what it keeps between "
        "epochs is lost when a fold resumes from a checkpoint (define both for exact resumes; see the README)",
    ]


def test_no_callback_no_split_trains_on_the_whole_training_split(make_experiment):
    path = make_experiment(grid={"units": [4]})
    gridcv.run_experiment(path)
    folds = gridcv.load_folds(path)
    assert folds["n_fit_samples"].tolist() == [30, 30]
    assert folds["n_monitored_samples"].tolist() == [0, 0]
    assert folds["monitored"].isna().all()


def test_with_a_group_splitter_no_group_is_both_trained_on_and_monitored(recorded, tmp_path):
    path = recorded(
        NEVER_IMPROVES,
        data={"kind": "arrays", "x": "data/x.npy", "y": "data/y.npy", "groups": "data/groups.npy"},
        cv={"splitter": "GroupKFold", "n_splits": 3},
    )
    gridcv.run_experiment(path)
    groups = np.arange(N) // 5
    seen = _seen(tmp_path)
    splits = GroupKFold(n_splits=3).split(np.zeros((N, 1)), None, groups)
    assert len(seen) == 3
    for (train, test), fold in zip(splits, seen, strict=True):
        fit_groups, monitor_groups = set(groups[sorted(fold["fit"])]), set(groups[sorted(fold["monitor"])])
        assert fold["monitor"] and not fit_groups & monitor_groups
        assert not (fit_groups | monitor_groups) & set(groups[test])
        assert fold["fit"] | fold["monitor"] == set(train.tolist())
        assert len(monitor_groups) == 1  # 8 training groups, fewer than round(1 / 0.1): one of them held out
    folds = gridcv.load_folds(path)
    assert folds["n_monitored_samples"].tolist() == [5, 5, 5]
    assert folds["n_fit_samples"].tolist() == [35, 35, 35]


def test_group_monitoring_split_is_stratified_pure_and_keeps_groups_apart():
    labels = np.arange(200) % 2
    groups = np.arange(200) // 4  # 50 groups of 4, each with both classes
    train_idx = np.arange(0, 160)
    fit, monitor = monitoring_split(train_idx, labels, 0.25, seed=7, groups=groups)
    assert not set(groups[fit]) & set(groups[monitor])
    assert np.array_equal(np.sort(np.concatenate([fit, monitor])), train_idx)
    assert len(monitor) == 40 and np.bincount(labels[monitor]).tolist() == [20, 20]  # 10 of the 40 groups
    again = monitoring_split(train_idx, labels, 0.25, seed=7, groups=groups)
    assert np.array_equal(again[0], fit) and np.array_equal(again[1], monitor)
    with pytest.raises(ValueError, match="only 1 group"):
        monitoring_split(np.arange(4), labels, 0.25, seed=7, groups=groups)


def test_a_fold_with_a_single_training_group_is_refused_before_training(make_experiment, tmp_path):
    _data(tmp_path)
    np.save(tmp_path / "data" / "groups.npy", np.arange(N) // 30)  # two groups: each fold trains on one
    path = make_experiment(
        data={"kind": "arrays", "x": "data/x.npy", "y": "data/y.npy", "groups": "data/groups.npy"},
        cv={"splitter": "GroupKFold", "n_splits": 2},
        fit={"epochs": 1, "batch_size": 16, "callbacks": [NEVER_IMPROVES]},
    )
    with pytest.raises(ConfigError) as err:
        gridcv.run_experiment(path)
    assert str(err.value) == (
        f"{path}: fold 0's training split holds samples of only one group (0), so no group can be held out of "
        "it for fit.callbacks to monitor (a part of each training split, kept apart by group because "
        "cv.splitter GroupKFold uses groups). Give the data more groups or lower cv.n_splits, or remove "
        "fit.callbacks."
    )
    assert not (tmp_path / "results").exists()


TEST_FOLD_RUN_WARNING = (
    "warning: fit.monitor_test_fold is true: callbacks monitor each fold's test split, the samples it is then "
    "scored on, so the epochs are chosen on the test data and the test scores are optimistic. Remove the key "
    "to monitor a part of each training split (the default)."
)
TEST_FOLD_RESULTS_WARNING = (
    "callbacks monitored each fold's test split (fit.monitor_test_fold: true), so the epochs were chosen on "
    "the samples then scored and the test scores are optimistic."
)


def test_monitor_test_fold_monitors_the_test_split_and_warns_in_the_output_and_results(recorded, tmp_path, capsys):
    path = recorded(NEVER_IMPROVES, fit={"monitor_test_fold": True})
    messages = Messages()
    gridcv.run_experiment(path, reporter=messages)
    for (train, test), fold in zip(_stratified_splits(), _seen(tmp_path), strict=True):
        assert fold["monitor"] == test and fold["fit"] == train  # as before this change
    assert messages.lines.count(TEST_FOLD_RUN_WARNING) == 1
    folds = gridcv.load_folds(path)
    assert folds["monitored"].tolist() == ["test_fold", "test_fold"]
    assert folds["n_monitored_samples"].tolist() == [30, 30] and folds["n_fit_samples"].tolist() == [30, 30]
    assert folds.attrs["warnings"] == [TEST_FOLD_RESULTS_WARNING]
    assert gridcv.load_results(path).attrs["warnings"] == [TEST_FOLD_RESULTS_WARNING]
    capsys.readouterr()
    assert main(["results", str(path)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"warning: {TEST_FOLD_RESULTS_WARNING}"


def test_monitor_test_fold_with_validation_split_from_train_is_a_config_error(make_experiment):
    path = make_experiment(fit={"epochs": 1, "monitor_test_fold": True, "validation_split_from_train": 0.2})
    with pytest.raises(ConfigError) as err:
        load_experiment(path)
    assert str(err.value) == (
        f"{path}: keys 'fit.monitor_test_fold' and 'fit.validation_split_from_train' are both set, but callbacks "
        "monitor either each fold's test split or a part of its training split, not both. Remove "
        "fit.monitor_test_fold to monitor a part of the training split (recommended: the test split stays "
        "unseen until it is scored), or remove fit.validation_split_from_train."
    )


# --- a folder started before this change ------------------------------------------------------------


def _as_started_before(folder: Path, path: Path) -> None:
    """Leaves the folder's metadata as gridcv wrote it before folders recorded what they monitor:
    no record, and the fingerprint of the experiment file as it then was (no monitoring key)."""
    config = yaml.safe_load(path.read_text())
    del config["fit"]["monitor_test_fold"]
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    with ResultStore.open(folder) as store:
        store.set_meta(fingerprint=load_experiment(path).fingerprint())
    with sqlite3.connect(folder / DB_NAME) as conn:
        conn.execute("DELETE FROM meta WHERE key = 'monitoring'")


def test_a_folder_started_before_the_change_resumes_monitoring_the_test_fold_and_says_so(recorded, tmp_path):
    # Its first candidate's folds were computed as gridcv did then: monitoring the test fold.
    path = recorded(NEVER_IMPROVES, fit={"monitor_test_fold": True})
    gridcv.run_experiment(path)
    folder = tmp_path / "results" / "tiny"
    _as_started_before(folder, path)

    config = yaml.safe_load(path.read_text())
    config["grid"] = {"units": [4, 8]}  # a new candidate: its folds are the ones left to run
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    messages = Messages()
    gridcv.run_experiment(path, reporter=messages)

    note = (
        f"{folder} was started before gridcv monitored a part of each training split by default: its callbacks "
        "monitor each fold's test split, and so do its remaining folds, so that its folds are not mixed with "
        "folds computed the new way; its test scores are optimistic. Pass --restart to start it again with the "
        "default (the old results are moved aside and kept)."
    )
    assert messages.lines.count(note) == 1 and TEST_FOLD_RUN_WARNING not in messages.lines
    seen = _seen(tmp_path)
    assert len(seen) == 4
    for (train, test), fold in zip(_stratified_splits(), seen[2:], strict=True):
        assert fold["monitor"] == test and fold["fit"] == train
    folds = gridcv.load_folds(path)
    assert folds["param_units"].tolist() == [4, 4, 8, 8]
    assert folds["monitored"].tolist() == ["test_fold"] * 4
    warning = (
        "callbacks monitored each fold's test split (the folder was started before gridcv monitored a part of "
        "each training split by default), so the epochs were chosen on the samples then scored and the test "
        "scores are optimistic."
    )
    assert gridcv.load_results(path).attrs["warnings"] == [warning]
    with ResultStore.open(folder, readonly=True) as store:
        assert store.get_meta("monitoring") == {
            "monitored": "test_fold",
            "fraction": None,
            "by_group": False,
            "started_before": True,
        }

    # Writing out what the folder does anyway is no change; asking for the default is another folder.
    config["fit"]["monitor_test_fold"] = True
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    gridcv.run_experiment(path)
    config["fit"]["validation_split_from_train"] = 0.1
    del config["fit"]["monitor_test_fold"]
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    with pytest.raises(gridcv.ExperimentChangedError, match="fit differ"):
        gridcv.run_experiment(path)


def test_a_new_folder_keeps_its_default_however_the_file_spells_it(recorded, tmp_path):
    path = recorded(NEVER_IMPROVES)
    gridcv.run_experiment(path)
    config = yaml.safe_load(path.read_text())
    config["fit"]["validation_split_from_train"] = 0.1  # the default, written out: same folds
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    gridcv.run_experiment(path)
    del config["fit"]["validation_split_from_train"]
    config["fit"]["monitor_test_fold"] = True
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    with pytest.raises(gridcv.ExperimentChangedError, match="fit differ"):
        gridcv.run_experiment(path)


def test_the_fingerprint_of_files_written_before_the_change_is_unchanged(make_experiment):
    """Digests computed by gridcv before this change (main at db9d135) for the same fit: sections.

    The schema's default of validation_split_from_train stays None (not 0.1): the fingerprint leaves
    out later keys at their default, so with a default of 0.1 a file that wrote 0.1 would get a new
    fingerprint and its folder would be refused.
    """
    callbacks = [{"name": "early_stopping", "monitor": "val_loss", "patience": 2}]
    before = {None: "6024386042244d33", 0.1: "22566f7a631108fb", 0.25: "4deb1dde644f631e"}
    for split, digest in before.items():
        fit = {"epochs": 3, "batch_size": 16, "callbacks": callbacks}
        if split is not None:
            fit["validation_split_from_train"] = split
        path = make_experiment(fit=fit)
        assert load_experiment(path).fingerprint()["fit"] == digest
    path = make_experiment(fit={"epochs": 3, "batch_size": 16, "callbacks": callbacks, "monitor_test_fold": False})
    assert load_experiment(path).fingerprint()["fit"] == before[None]


def test_the_folder_record_decides_over_the_file(make_experiment):
    spec = load_experiment(make_experiment(fit={"epochs": 1, "callbacks": [NEVER_IMPROVES]})).spec
    assert Monitoring.of(spec, grouped=True) == Monitoring(Monitored.TRAIN_SPLIT, 0.1, by_group=True)
    assert Monitoring.of_folder(None, True, spec, True) == Monitoring(Monitored.TEST_FOLD, started_before=True)
    record = Monitoring(Monitored.TRAIN_SPLIT, 0.2, by_group=False).as_meta()
    assert Monitoring.of_folder(record, True, spec, True) == Monitoring(Monitored.TRAIN_SPLIT, 0.2)


# --- the refit ------------------------------------------------------------------------------------


def test_the_refit_monitors_a_part_of_all_the_data_and_stops_itself(recorded, tmp_path):
    path = recorded(NEVER_IMPROVES, fit={"epochs": 8}, refit=True)
    gridcv.run_experiment(path)
    refit = _seen(tmp_path)[2]
    assert len(refit["monitor"]) == 6 and not refit["monitor"] & refit["fit"]
    assert refit["monitor"] | refit["fit"] == set(range(N))
    summary = json.loads((tmp_path / "results" / "tiny" / "best_model.json").read_text())["refit"]
    # Its own early stopping decides: the candidate's 8 epochs, stopped after 2 like the folds.
    assert summary["epochs"] == 8 and summary["epochs_run"] == 2
    assert (summary["n_fit_samples"], summary["n_monitored_samples"], summary["monitored"]) == (54, 6, "train_split")


def test_with_monitor_test_fold_the_refit_monitors_nothing_and_trains_the_folds_epochs(recorded, tmp_path):
    path = recorded(NEVER_IMPROVES, fit={"epochs": 8, "monitor_test_fold": True}, refit=True)
    gridcv.run_experiment(path)
    assert gridcv.load_folds(path)["epochs_run"].tolist() == [2, 2]
    refit = _seen(tmp_path)[2]
    assert refit["monitor"] == set() and refit["fit"] == set(range(N))
    summary = json.loads((tmp_path / "results" / "tiny" / "best_model.json").read_text())["refit"]
    assert summary["epochs"] == 2 and summary["epochs_run"] == 2
    assert (summary["n_fit_samples"], summary["n_monitored_samples"], summary["monitored"]) == (60, 0, None)
