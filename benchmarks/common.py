"""What the digits benchmarks share: the grid they run and how they measure memory.

``memory.py``, ``overhead.py`` and ``slots.py`` train the same small CNN on scikit-learn's
digits (it ships with scikit-learn: nothing is downloaded), 5-fold stratified CV, one candidate
per 5 folds asked for. Memory is counted one way everywhere, the way gridcv's memory guard
counts it: :func:`gridcv.execution.memory.proportional_of`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import yaml

N_SPLITS = 5

BUILDER = """
import keras

def build(params, input_shape, n_classes):
    model = keras.Sequential([
        keras.Input(shape=input_shape),
        keras.layers.Conv2D(params["filters"], 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dropout(0.2),
        keras.layers.Dense(n_classes, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(params["learning_rate"]), loss="sparse_categorical_crossentropy")
    return model
"""


def write_digits_experiment(folder: Path, name: str, folds: int, epochs: int, batch_size: int = 32) -> Path:
    """Digits as .npy, the builder, and an experiment of ``folds`` fold tasks (rounded up to whole candidates)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    (folder / "data").mkdir(parents=True, exist_ok=True)
    np.save(folder / "data" / "x.npy", (digits.images / 16.0).astype(np.float32)[..., None])
    np.save(folder / "data" / "y.npy", digits.target.astype(np.int64))
    (folder / "builder.py").write_text(BUILDER)
    candidates = math.ceil(folds / N_SPLITS)
    config = {
        "name": name,
        "data": {"kind": "arrays", "x": "data/x.npy", "y": "data/y.npy"},
        "model": "builder.py:build",
        "fit": {"epochs": epochs, "batch_size": batch_size},
        "grid": {"filters": list(range(4, 4 + candidates)), "learning_rate": [0.003]},
        "cv": {"splitter": "StratifiedKFold", "n_splits": N_SPLITS, "shuffle": True, "random_state": 0},
        "scoring": "accuracy",
    }
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(config))
    return path
