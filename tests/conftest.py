"""Shared fixtures: tiny experiments written to tmp_path, fast enough for unit tests."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TINY_BUILDER = """
import keras


def build(params, input_shape, n_classes):
    if params.get("explode") == "yes":
        raise ValueError("this candidate always fails")
    model = keras.Sequential([
        keras.Input(shape=input_shape),
        keras.layers.Flatten(),
        keras.layers.Dense(params.get("units", 8), activation="relu"),
        keras.layers.Dropout(params.get("dropout", 0.1)),
        keras.layers.Dense(n_classes, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(params.get("learning_rate", 0.01)),
                  loss="sparse_categorical_crossentropy")
    return model
"""


def write_arrays(folder: Path, n: int = 60, n_classes: int = 3, shape: tuple[int, ...] = (4,), seed: int = 0) -> None:
    """Writes data/x.npy and data/y.npy: learnable, balanced, tiny."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    x = rng.normal(size=(n, *shape)).astype(np.float32)
    x.reshape(n, -1)[:, 0] += y * 2.0
    (folder / "data").mkdir(parents=True, exist_ok=True)
    np.save(folder / "data" / "x.npy", x)
    np.save(folder / "data" / "y.npy", y.astype(np.int64))


def source_of(section: dict[str, Any], folder: Path, where: str = "experiment file") -> Any:
    """Opens the data a ``data:`` section (as written in YAML) describes, relative to ``folder``."""
    from gridcv.config import parse_data
    from gridcv.data.sources import open_source

    return open_source(parse_data(section), folder, where)


def base_config(**overrides: Any) -> dict[str, Any]:
    """A valid experiment dict for the tiny data; keys in ``overrides`` replace its sections."""
    config: dict[str, Any] = {
        "name": "tiny",
        "seed": 0,
        "data": {"kind": "arrays", "x": "data/x.npy", "y": "data/y.npy"},
        "model": "builder.py:build",
        "fit": {"epochs": 2, "batch_size": 16},
        "grid": {"units": [4, 8]},
        "cv": {"splitter": "StratifiedKFold", "n_splits": 2, "shuffle": True, "random_state": 0},
        "scoring": "accuracy",
        "execution": {"isolation": "inline"},
    }
    config.update(overrides)
    return config


@pytest.fixture
def make_experiment(tmp_path: Path) -> Callable[..., Path]:
    """Writes a tiny experiment (data, builder, YAML) into tmp_path; returns the YAML path.

    Keyword arguments replace top-level sections of :func:`base_config`;
    ``builder=`` replaces the builder's source; ``raw=`` writes that text as the YAML.
    """

    def make(
        builder: str = TINY_BUILDER, raw: str | None = None, name: str = "experiment.yaml", **overrides: Any
    ) -> Path:
        if not (tmp_path / "data" / "x.npy").exists():
            write_arrays(tmp_path)
        (tmp_path / "builder.py").write_text(textwrap.dedent(builder))
        path = tmp_path / name
        config = base_config(**overrides)
        config.setdefault("output", str(tmp_path / "results" / config["name"]))
        path.write_text(raw if raw is not None else yaml.safe_dump(config, sort_keys=False))
        return path

    return make


SEGMENTATION_BUILDER = """
import keras


def build(params, input_shape, n_classes):
    model = keras.Sequential([
        keras.Input(shape=input_shape),
        keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(n_classes, 1, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
    return model
"""


def tiny_images(
    n: int, n_classes: int = 3, size: tuple[int, int] = (8, 8), seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 grayscale images whose class is a bright horizontal band (learnable), and their labels."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    images = rng.integers(0, 60, size=(n, *size), dtype=np.uint8)
    band = size[0] // n_classes
    for i, c in enumerate(y):
        images[i, c * band : (c + 1) * band] += 180
    return images, y


def write_image_folder(
    root: Path, n: int = 30, n_classes: int = 3, size: tuple[int, int] = (8, 8), ext: str = ".png"
) -> np.ndarray:
    """Writes ``root/<class>/<i>.png`` (classes 'a', 'b', 'c', ...); returns the uint8 images in file order."""
    images, y = tiny_images(n, n_classes, size)
    order = []
    for c in range(n_classes):
        (root / "abcdefgh"[c]).mkdir(parents=True, exist_ok=True)
        for i in np.flatnonzero(y == c):
            Image.fromarray(images[i]).save(root / "abcdefgh"[c] / f"{i:03d}{ext}")
            order.append(i)
    return images[order]


def write_segmentation(folder: Path, n: int = 12, size: tuple[int, int] = (8, 8)) -> None:
    """Writes ``images/<i>.png`` and ``masks/<i>.png``: class 1 where the pixel is bright, class 2 in the
    bottom-right quarter, else 0."""
    rng = np.random.default_rng(0)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        mask = (rng.random(size) < 0.3).astype(np.uint8)
        mask[size[0] // 2 :, size[1] // 2 :] = 2
        image = np.where(mask == 1, 220, np.where(mask == 2, 120, 20)).astype(np.uint8)
        Image.fromarray(image).save(folder / "images" / f"s{i:02d}.png")
        Image.fromarray(mask).save(folder / "masks" / f"s{i:02d}.png")


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """A folder of 30 tiny PNGs in class sub-folders a, b, c (10 each)."""
    write_image_folder(tmp_path / "images")
    return tmp_path / "images"


UNCOMPILED_BUILDER = '''
import keras


def build(params, input_shape, n_classes):
    return keras.Sequential([
        keras.Input(shape=input_shape),
        keras.layers.Flatten(),
        keras.layers.Dense(params.get("units", 8), activation="relu"),
        keras.layers.Dense(n_classes, activation="softmax", dtype="float32"),
    ])


class StopOnMarker(keras.callbacks.Callback):
    """Asks gridcv to stop (as Ctrl-C does) after the first epoch that finds `marker`."""

    def __init__(self, marker):
        super().__init__()
        self.marker = marker

    def on_epoch_end(self, epoch, logs=None):
        import os
        from gridcv.execution.worker import _stop_requested

        if os.path.exists(self.marker):
            os.remove(self.marker)
            _stop_requested.set()
'''


@pytest.fixture
def uncompiled_experiment(make_experiment: Callable[..., Path]) -> Callable[..., Path]:
    """Like ``make_experiment``, with a builder that returns an uncompiled model.

    Its builder file also defines ``StopOnMarker``, a callback that requests a
    stop (as Ctrl-C does) once a marker file exists.
    """

    def make(**overrides: Any) -> Path:
        return make_experiment(builder=UNCOMPILED_BUILDER, **overrides)

    return make


@pytest.fixture
def clear_stop_request() -> Any:
    """The in-process stop flag (an inline stop request leaves it set), cleared before and after."""
    from gridcv.execution.worker import _stop_requested

    _stop_requested.clear()
    yield _stop_requested
    _stop_requested.clear()


def write_crashed_run(folder: Path) -> None:
    """A store as a crashed run leaves it: one fold done, one still marked running, two never started."""
    from gridcv.config import ExperimentSpec
    from gridcv.execution.messages import FoldOutcome, OutcomeKind
    from gridcv.plan import make_plan
    from gridcv.store import FoldStatus, ResultStore

    spec = ExperimentSpec.model_validate(
        {
            "name": "mid",
            "data": {"kind": "arrays", "x": "x", "y": "y"},
            "model": "m.py:f",
            "grid": {"u": [1, 2]},
            "cv": {"splitter": "KFold", "n_splits": 2},
            "scoring": "accuracy",
        }
    )
    plan = make_plan(spec, np.arange(10) % 2)
    with ResultStore.open(folder, create=True) as store:
        store.set_meta(scoring="accuracy", candidates=[t.candidate_id for t in plan.tasks if t.fold == 0], n_splits=2)
        store.add_tasks(plan.tasks)
        first = plan.tasks[0].task_id
        store.mark_running(first, 8, 1)
        outcome = FoldOutcome(first, OutcomeKind.DONE, scores={"accuracy": 0.8}, fit_time=2.0, score_time=0.5)
        store.record(outcome, FoldStatus.DONE)
        store.mark_running(plan.tasks[1].task_id, 8, 1)


SEEN_BUILDER = '''
import hashlib
import json
import pathlib

import keras
import numpy as np
import tensorflow as tf

LOG = pathlib.Path(__file__).with_name("seen.txt")


def _log(kind, x):
    with LOG.open("a") as f:
        for row in np.asarray(x):
            f.write(f"{kind} {hashlib.sha1(np.ascontiguousarray(row).tobytes()).hexdigest()}\\n")
    return np.float32(0.0)


class Seen(keras.layers.Layer):
    """Passes its input through; logs a hash of every sample it sees, trained on or predicted."""

    def call(self, x, training=None):
        kind = "train" if training else "infer"
        seen = tf.numpy_function(lambda a: _log(kind, a), [x], tf.float32)
        return x + 0.0 * tf.reshape(seen, [])

    def compute_output_shape(self, input_shape):
        return input_shape


def build(params, input_shape, n_classes):
    with LOG.open("a") as f:
        f.write(f"build {json.dumps(params, sort_keys=True)}\\n")
    model = keras.Sequential([
        keras.Input(shape=input_shape),
        Seen(),
        keras.layers.Flatten(),
        keras.layers.Dense(8, activation="relu"),
        keras.layers.Dense(n_classes, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", jit_compile=False)
    return model
'''


def row_hashes(x: np.ndarray) -> list[str]:
    """The hash :data:`SEEN_BUILDER` logs for each sample (row) of ``x``, as fed to the model."""
    import hashlib

    return [hashlib.sha1(np.ascontiguousarray(row).tobytes()).hexdigest() for row in np.asarray(x)]


def seen_by_build(folder: Path) -> list[tuple[dict[str, Any], list[str], list[str]]]:
    """What a model of :data:`SEEN_BUILDER` saw, per build in order (the first is gridcv's up-front
    check): its parameters, the hashes it trained on, the hashes it predicted (scoring)."""
    import json

    builds: list[tuple[dict[str, Any], list[str], list[str]]] = []
    for line in (folder / "seen.txt").read_text().splitlines():
        kind, value = line.split(" ", 1)
        if kind == "build":
            builds.append((json.loads(value), [], []))
        else:
            builds[-1][1 if kind == "train" else 2].append(value)
    return builds
