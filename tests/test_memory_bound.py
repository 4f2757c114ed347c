"""A dataset larger than the worker may hold trains in a worker whose own memory stays small.

The worker's anonymous memory (RssAnon: heap, tensors, batches) is what a
dataset loaded into memory would fill; file pages in the page cache are the
kernel's to drop. The builder below runs inside the real worker process and
samples its RssAnon while the folds train.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import gridcv
from gridcv.store import FoldStatus

pytestmark = pytest.mark.slow

SAMPLING_BUILDER = """
import json
import os
import threading
import time
from pathlib import Path

import keras

OUT = Path(__file__).with_name("rss_anon.json")
_state = {"baseline": None, "peak": 0, "pid": os.getpid()}


def _rss_anon():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def _sample():
    while True:
        _state["peak"] = max(_state["peak"], _rss_anon())
        tmp = OUT.with_suffix(".tmp")
        tmp.write_text(json.dumps(_state))
        os.replace(tmp, OUT)
        time.sleep(0.02)


def build(params, input_shape, n_classes):
    if _state["baseline"] is None:  # TensorFlow imported, nothing trained yet
        _state["baseline"] = _rss_anon()
        threading.Thread(target=_sample, daemon=True).start()
    model = keras.Sequential([keras.Input(shape=input_shape), keras.layers.Dense(n_classes, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model
"""

ROWS, WIDTH = 1_000_000, 1024  # float32: 4.1 GB on disk, over three times what the worker may hold
LIMIT = 1200 * 2**20  # the worker's memory guard: below the dataset's size


def write_big_arrays(folder) -> int:
    (folder / "data").mkdir()
    x = np.lib.format.open_memmap(folder / "data" / "x.npy", mode="w+", dtype=np.float32, shape=(ROWS, WIDTH))
    block = np.random.default_rng(0).random((4096, WIDTH), dtype=np.float32)
    for start in range(0, ROWS, len(block)):
        x[start : start + len(block)] = block[: ROWS - start]
    x.flush()
    del x
    np.save(folder / "data" / "y.npy", np.arange(ROWS) % 2)
    return (folder / "data" / "x.npy").stat().st_size


@pytest.fixture
def big_folder(tmp_path):
    """tmp_path with room for the 4 GB dataset, which is deleted afterwards (pytest keeps tmp dirs)."""
    free = shutil.disk_usage(tmp_path).free
    if free < ROWS * WIDTH * 4 * 2:
        pytest.skip(f"needs {ROWS * WIDTH * 8 / 1e9:.0f} GB free disk, {free / 1e9:.1f} GB available")
    yield tmp_path
    shutil.rmtree(tmp_path / "data", ignore_errors=True)


def test_a_memmap_larger_than_the_worker_limit_trains_in_a_few_batches_of_memory(make_experiment, big_folder):
    tmp_path = big_folder
    size = write_big_arrays(tmp_path)
    path = make_experiment(
        builder=SAMPLING_BUILDER,
        grid={"units": [1]},
        fit={"epochs": 1, "batch_size": 1024},
        cv={"splitter": "KFold", "n_splits": 2},
        execution={"isolation": "process", "max_worker_memory": LIMIT},
    )
    summary = gridcv.run_experiment(path)
    assert summary.counts[FoldStatus.DONE] == 2  # the memory guard never stopped the worker
    rss = json.loads((tmp_path / "rss_anon.json").read_text())
    assert rss["pid"] != __import__("os").getpid()  # sampled in the worker, not here
    assert size > 3 * LIMIT
    # Training read the whole dataset (twice: fit, then predict, per fold) and grew the
    # worker's own memory by a small fraction of it.
    assert rss["peak"] - rss["baseline"] < size / 8, rss
    assert rss["peak"] < size / 6, rss
