"""The decoded-image cache (``data: cache: true``): built once, read by every fold, candidate and run
exactly as decoding would read, rebuilt when the folder changes, resumable, refused when it cannot fit."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

import gridcv
from gridcv.config import parse_data
from gridcv.data.cache import plan_cache
from gridcv.data.cached import open_cached
from gridcv.data.sources import open_source
from gridcv.errors import DataError
from gridcv.runner.progress import SilentReporter
from gridcv.store import ResultStore
from tests.conftest import SEGMENTATION_BUILDER, write_image_folder, write_segmentation

CNN = """
import keras


def build(params, input_shape, n_classes):
    model = keras.Sequential([
        keras.Input(shape=input_shape),
        keras.layers.Conv2D(params["filters"], 3, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(n_classes, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model
"""


class Messages(SilentReporter):
    """Keeps the run's notes."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def message(self, text: str) -> None:
        self.lines.append(text)


def cached(section: dict[str, Any], folder: Path) -> tuple[Any, Any]:
    """The files as a source, and the same data through a freshly built cache."""
    from gridcv.data.cache import build_cache

    spec = parse_data({**section, "cache": True})
    files = open_source(spec, folder)
    plan = plan_cache(spec, files, folder, folder / "results", "experiment.yaml")
    assert plan is not None
    build_cache(plan, files, "experiment.yaml", lambda _: None)
    source = open_cached(plan.stem, spec)
    assert source is not None
    return files, source


@pytest.mark.parametrize(
    "section",
    [
        {"kind": "images", "root": "png", "color_mode": "grayscale"},
        {"kind": "images", "root": "png", "color_mode": "rgb", "image_size": [5, 7], "dtype": "float16"},
        {"kind": "images", "root": "jpeg", "color_mode": "rgb", "image_size": [6, 6]},
        {"kind": "images", "root": "seg/images", "masks": "seg/masks", "n_classes": 3, "color_mode": "grayscale"},
    ],
)
def test_cached_batches_are_exactly_the_decoded_ones(tmp_path, section):
    write_image_folder(tmp_path / "png", n=30)
    write_image_folder(tmp_path / "jpeg", n=30, ext=".jpg")
    write_segmentation(tmp_path / "seg")
    files, source = cached(section, tmp_path)
    assert (source.n_samples, source.input_shape, source.n_classes, source.task) == (
        files.n_samples,
        files.input_shape,
        files.n_classes,
        files.task,
    )
    assert source.value_range == files.value_range
    assert source.describe() == files.describe()  # what best_model.json records of the inputs
    assert np.array_equal(source.labels(), files.labels())
    for indices in (np.arange(files.n_samples), np.array([7, 2, 9, 3, 3, 0])):
        (x1, y1), (x2, y2) = files.read(indices), source.read(indices)
        assert x1.dtype == x2.dtype and y1.dtype == y2.dtype
        assert np.array_equal(x1, x2) and np.array_equal(y1, y2)


def test_a_csv_of_npy_samples_with_groups_is_cached_in_its_dtype(tmp_path):
    rng = np.random.default_rng(0)
    rows = ["file,label,group"]
    for i in range(12):
        np.save(tmp_path / f"s{i}.npy", rng.normal(size=(3, 2)).astype(np.float64))
        rows.append(f"s{i}.npy,{'ab'[i % 2]},g{i // 3}")
    (tmp_path / "samples.csv").write_text("\n".join(rows) + "\n")
    files, source = cached({"kind": "csv", "path": "samples.csv", "group_column": "group"}, tmp_path)
    assert source.groups().tolist() == files.groups().tolist()
    (x1, y1), (x2, y2) = files.read(np.arange(12)), source.read(np.arange(12))
    assert x2.dtype == np.float32 and np.array_equal(x1, x2) and np.array_equal(y1, y2)


# --- in a run ---------------------------------------------------------------------------------


def experiment(folder: Path, name: str, cache: bool = True, **data: Any) -> Path:
    """A 2 candidates x 2 folds CNN experiment on ``folder/images`` (written once)."""
    if not (folder / "images").is_dir():
        write_image_folder(folder / "images", n=30, size=(8, 8))
    (folder / "builder.py").write_text(CNN)
    config = {
        "name": name,
        "seed": 0,
        "deterministic": True,
        "data": {"kind": "images", "root": "images", "color_mode": "grayscale", "cache": cache, **data},
        "model": "builder.py:build",
        "fit": {"epochs": 2, "batch_size": 8},
        "grid": {"filters": [2, 3]},
        "cv": {"splitter": "StratifiedKFold", "n_splits": 2, "shuffle": True, "random_state": 0},
        "execution": {"isolation": "inline"},
        "output": str(folder / "results" / name),
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def results_of(path: Path) -> dict[str, Any]:
    with ResultStore.open(Path(yaml.safe_load(path.read_text())["output"]), readonly=True) as store:
        return {r.task_id: (r.status.value, r.scores, r.history) for r in store.fold_rows()}


def cache_files(folder: Path) -> dict[str, int]:
    """Name -> modification time of every file of the cache folder."""
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def test_the_cache_is_built_once_and_read_by_every_fold_candidate_and_run(tmp_path):
    reference = experiment(tmp_path, "plain", cache=False, image_size=[8, 8])
    gridcv.run_experiment(reference)
    shared = tmp_path / "shared-cache"

    notes = Messages()
    first = experiment(tmp_path, "first", cache_dir=str(shared), image_size=[8, 8])
    gridcv.run_experiment(first, reporter=notes)
    decoding = [line for line in notes.lines if line.startswith("data.cache:")]
    assert decoding[0] == f"data.cache: decoding 30 samples once into {shared} (1.9 KiB)"
    assert decoding[1].startswith("data.cache: built in ") and len(decoding) == 2
    assert results_of(first) == results_of(reference)  # same scores and histories, to the bit
    built = cache_files(shared)

    # Another experiment (another grid, another results folder) on the same folder reuses it.
    notes = Messages()
    other = experiment(tmp_path, "other", cache_dir=str(shared), image_size=[8, 8])
    config = yaml.safe_load(other.read_text())
    config["grid"] = {"filters": [4]}
    other.write_text(yaml.safe_dump(config))
    gridcv.run_experiment(other, reporter=notes)
    assert not [line for line in notes.lines if line.startswith("data.cache:")]
    assert cache_files(shared) == built

    # Folds read the cache, not the files: corrupt every image but keep its size and time (with
    # image_size set, listing the folder opens no file).
    for image in (tmp_path / "images").rglob("*.png"):
        stat = image.stat()
        image.write_bytes(image.read_bytes()[:40] + bytes(stat.st_size - 40))
        os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(DataError):  # decoding them fails...
        gridcv.run_experiment(experiment(tmp_path, "uncached", cache=False, image_size=[8, 8]))
    again = experiment(tmp_path, "again", cache_dir=str(shared), image_size=[8, 8])
    gridcv.run_experiment(again, gridcv.RunOptions(execution={"isolation": "process"}))  # ...the cache does not
    assert results_of(again) == results_of(reference)


def test_augmentation_runs_per_batch_on_the_cached_pixels(tmp_path):
    """Same augmented training with and without the cache, to the bit; and augmentation changes it."""
    augment = {"horizontal_flip": True, "rotation": 15, "shift": 0.2, "brightness": 0.2}
    results = {}
    for name, cache, aug in (("files", False, augment), ("cached", True, augment), ("plain", True, None)):
        path = experiment(tmp_path, name, cache=cache, image_size=[8, 8], **({"augment": aug} if aug else {}))
        config = yaml.safe_load(path.read_text())
        config["grid"] = {"filters": [2]}
        path.write_text(yaml.safe_dump(config))
        gridcv.run_experiment(path)
        results[name] = results_of(path)
    assert results["cached"] == results["files"]
    assert [h for _, _, h in results["plain"].values()] != [h for _, _, h in results["cached"].values()]


def test_a_changed_folder_rebuilds_the_cache_with_a_note(tmp_path):
    path = experiment(tmp_path, "tiny", cache_dir="cache")
    gridcv.run_experiment(path)
    folder = tmp_path / "cache"
    before = {p.name for p in folder.glob("*.npy")}
    Image.fromarray(np.full((8, 8), 200, np.uint8)).save(tmp_path / "images" / "a" / "new.png")
    notes = Messages()
    gridcv.run_experiment(path, gridcv.RunOptions(output=tmp_path / "results" / "after"), reporter=notes)
    changed = [line for line in notes.lines if line.startswith("data.cache:")]
    assert changed[0] == (
        f"data.cache: the samples changed since the cache in {folder} was built (30 then, 31 now, or files "
        "modified); building a new one"
    )
    assert changed[1] == f"data.cache: decoding 31 samples once into {folder} (1.9 KiB)"
    after = {p.name for p in folder.glob("*.npy")}
    assert not before & after and len(after) == 2  # the old key's files are gone: x and y of the new one
    manifest = json.loads(next(folder.glob("*.json")).read_text())
    assert (manifest["n"], manifest["done"], manifest["complete"]) == (31, 31, True)


@pytest.mark.slow
def test_a_kill_while_building_loses_nothing_already_written(tmp_path):
    path = experiment(tmp_path, "tiny", image_size=[8, 8])
    env = {**os.environ, "GRIDCV_FAULT": "cache-write@3"}  # the 3rd chunk written, not yet recorded
    command = [sys.executable, "-m", "gridcv.cli", "run", str(path), "--quiet"]
    killed = subprocess.run(command, env=env, capture_output=True, text=True, start_new_session=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    folder = tmp_path / "results" / "tiny" / "cache"
    manifest = json.loads(next(folder.glob("*.json")).read_text())
    assert (manifest["done"], manifest["complete"]) == (4, False)  # 2 chunks of 2 recorded
    notes = Messages()
    gridcv.run_experiment(path, reporter=notes)
    assert f"data.cache: resuming the cache in {folder} at sample 4 of 30 (1.9 KiB)" in notes.lines
    resumed = np.load(next(folder.glob("*.x.npy")))
    fresh = tmp_path / "fresh"
    shutil.copytree(tmp_path / "images", fresh / "images")
    gridcv.run_experiment(experiment(fresh, "tiny", image_size=[8, 8]))
    assert np.array_equal(resumed, np.load(next((fresh / "results" / "tiny" / "cache").glob("*.x.npy"))))


def test_a_cache_the_disk_cannot_hold_is_refused_before_anything_is_written(tmp_path):
    write_image_folder(tmp_path / "images", n=30)
    free = shutil.disk_usage(tmp_path).free
    side = int((free / 30 / 3) ** 0.5) + 100  # rgb images of side x side: more than the free space
    path = experiment(tmp_path, "huge", image_size=[side, side], color_mode="rgb")
    with pytest.raises(DataError) as caught:
        gridcv.run_experiment(path)
    message = str(caught.value)
    folder = tmp_path / "results" / "huge" / "cache"
    assert message.startswith(
        f"{path}: key 'data.cache': the decoded-image cache of 30 samples ({side}x{side}x3 uint8 each) needs "
    )
    assert f" in {folder}, but only " in message
    assert message.endswith(
        "are free there. Free some space, point data.cache_dir at a disk with room, or set data.cache: false to "
        "decode samples as batches are read."
    )
    assert not (tmp_path / "results").exists()


def test_cache_keys_leave_the_fingerprint_alone(tmp_path):
    from gridcv.config import load_experiment

    plain = load_experiment(experiment(tmp_path, "a", cache=False)).fingerprint()
    assert load_experiment(experiment(tmp_path, "b", cache_dir="elsewhere")).fingerprint() == plain


def test_segmentation_runs_from_the_cache(tmp_path):
    write_segmentation(tmp_path)
    (tmp_path / "builder.py").write_text(SEGMENTATION_BUILDER)
    config = {
        "name": "seg",
        "seed": 0,
        "deterministic": True,
        "data": {"kind": "images", "root": "images", "masks": "masks", "n_classes": 3, "color_mode": "grayscale"},
        "model": "builder.py:build",
        "fit": {"epochs": 1, "batch_size": 4},
        "grid": {"x": [1]},
        "cv": {"splitter": "KFold", "n_splits": 2},
        "scoring": ["mean_iou", "pixel_accuracy"],
        "execution": {"isolation": "inline"},
    }
    scores = []
    for cache in (False, True):
        config["data"]["cache"] = cache
        config["output"] = str(tmp_path / f"results-{cache}")
        path = tmp_path / f"seg-{cache}.yaml"
        path.write_text(yaml.safe_dump(config))
        gridcv.run_experiment(path)
        scores.append(gridcv.load_folds(path)[["test_mean_iou", "test_pixel_accuracy"]].values.tolist())
    assert scores[0] == scores[1]


@pytest.fixture
def small_disk(tmp_path: Path) -> Any:
    """A real 256 KiB filesystem (tmpfs), mounted for the test: needs root and mount."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def test_a_small_real_disk_is_refused_before_anything_is_written(tmp_path, small_disk):
    write_image_folder(tmp_path / "images", n=30)
    path = experiment(tmp_path, "big", image_size=[64, 64], color_mode="rgb", cache_dir=str(small_disk / "cache"))
    with pytest.raises(DataError) as caught:
        gridcv.run_experiment(path)
    assert str(caught.value) == (
        f"{path}: key 'data.cache': the decoded-image cache of 30 samples (64x64x3 uint8 each) needs 360.0 KiB in "
        f"{small_disk / 'cache'}, but only 256.0 KiB are free there. Free some space, point data.cache_dir at a disk "
        "with room, or set data.cache: false to decode samples as batches are read."
    )
    assert not (tmp_path / "results").exists()
    assert list((small_disk / "cache").glob("*.npy")) == []


def test_a_disk_filled_while_the_cache_is_built_is_explained_and_the_build_goes_on_later(tmp_path, small_disk):
    from gridcv.data.cache import build_cache

    write_image_folder(tmp_path / "images", n=30)
    section = {"kind": "images", "root": "images", "color_mode": "rgb", "image_size": [40, 40]}
    spec = parse_data({**section, "cache": True, "cache_dir": str(small_disk / "cache")})
    files = open_source(spec, tmp_path)
    plan = plan_cache(spec, files, tmp_path, tmp_path / "results", "experiment.yaml")
    assert plan is not None and plan.nbytes == 30 * 40 * 40 * 3
    filler = small_disk / "filler"

    def another_writer_fills_the_disk(note: str) -> None:  # said once the space was checked
        if note.startswith("data.cache: decoding"):
            filler.write_bytes(bytes(200 * 1024))

    with pytest.raises(DataError) as caught:
        build_cache(plan, files, "experiment.yaml", another_writer_fills_the_disk)
    assert str(caught.value) == (
        f"experiment.yaml: key 'data.cache': the disk holding {small_disk / 'cache'} filled up while the "
        "decoded-image cache of 30 samples (140.6 KiB) was built; the 0 samples already written are kept. Free some "
        "space and run again to go on from there, point data.cache_dir at a disk with room, or set data.cache: false "
        "to decode samples as batches are read."
    )
    filler.unlink()
    build_cache(plan, files, "experiment.yaml", lambda _: None)
    source = open_cached(plan.stem, spec)
    assert source is not None
    assert np.array_equal(source.read(np.arange(30))[0], files.read(np.arange(30))[0])
