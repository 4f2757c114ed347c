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
