"""A real kernel OOM kill: gridcv runs in a memory cgroup too small for one candidate's batch.

Not gridcv's memory guard (no max_worker_memory here): the kernel's OOM killer picks the worker
(workers ask for it with oom_score_adj 1000), the runner survives, and the candidate is retried at
half the batch with twice the accumulation. Its other folds and its refit then start at the batch
that fit (one OOM per candidate, not one per fold), which the rows say.

The model's memory need is made proportional to its batch: a layer touches 12 MiB per sample of
each batch it sees. So that the cap fits any machine, the run first goes uncapped: the first full
batch waits (a file says so) until the test has measured what the runner and the idle worker
hold, then the test caps the cgroup at that plus what half a batch needs plus a margin, below
what a full batch needs, and lets the batch go. Needs root and a writable memory cgroup (v1 or
v2); elsewhere it is skipped, with the reason in pytest's output.
"""

from __future__ import annotations

import json
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

pytestmark = pytest.mark.slow

MIB = 2**20
RUN = [sys.executable, "-m", "gridcv.cli", "run"]
PER_SAMPLE = 12 * MIB
BATCH = 64

BUILDER = f"""
import pathlib
import time

import keras
import numpy as np
import tensorflow as tf

HERE = pathlib.Path(__file__).parent


def _use_memory(n):
    n = int(n)
    if n >= {BATCH} and not (HERE / "go").exists():  # the first full batch waits for the cap
        (HERE / "ready").write_text("waiting")
        while not (HERE / "go").exists():
            time.sleep(0.05)
    held = np.ones(n * {PER_SAMPLE} // 8)  # what a batch of n samples needs, touched
    return np.float32(held[-1] * 0.0)


class BatchMemory(keras.layers.Layer):
    def call(self, x):
        used = tf.numpy_function(_use_memory, [tf.shape(x)[0]], tf.float32)
        return x + tf.reshape(used, [])

    def compute_output_shape(self, input_shape):
        return input_shape


def build(params, input_shape, n_classes):
    model = keras.Sequential([
        keras.Input(shape=input_shape),
        BatchMemory(),
        keras.layers.Dense(params["units"], activation="relu"),
        keras.layers.Dense(n_classes, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", jit_compile=False)
    return model
"""


class MemoryCgroup:
    """A child memory cgroup of this process's own, v1 or v2: cap, processes, OOM kills, usage."""

    def __init__(self, path: Path, version: int) -> None:
        self.path, self.version = path, version

    @classmethod
    def create(cls, name: str) -> MemoryCgroup:
        """Makes one, or skips the test saying why it cannot."""
        if os.geteuid() != 0:
            pytest.skip("a real OOM kill needs root, to make a memory cgroup")
        lines = Path("/proc/self/cgroup").read_text().splitlines()
        v1 = [line.split(":", 2)[2] for line in lines if line.split(":", 2)[1] == "memory"]
        v2 = [line.split(":", 2)[2] for line in lines if line.startswith("0::")]
        if v1 and Path("/sys/fs/cgroup/memory").is_dir():
            parent, version = Path("/sys/fs/cgroup/memory" + v1[0]), 1
        elif v2 and "memory" in _read(Path("/sys/fs/cgroup/cgroup.controllers")).split():
            parent, version = Path("/sys/fs/cgroup" + v2[0]), 2
        else:
            pytest.skip("no memory cgroup controller on this machine (v1 or v2): no real OOM kill to test")
        try:
            if version == 2:
                (parent / "cgroup.subtree_control").write_text("+memory")
            (parent / name).mkdir()
        except OSError as exc:
            pytest.skip(f"cannot make a memory cgroup under {parent}: {exc}")
        return cls(parent / name, version)

    def stat(self, key: str) -> int:
        """A counter of memory.stat (v1's hierarchical total_<key>, v2's <key>)."""
        name = f"total_{key}" if self.version == 1 else key
        for line in _read(self.path / "memory.stat").splitlines():
            field, _, value = line.partition(" ")
            if field == name:
                return int(value)
        return 0

    def held(self) -> int:
        """What its processes hold that no reclaim can free: anonymous and shared memory, kernel memory."""
        if self.version == 1:
            kernel = int(_read(self.path / "memory.kmem.usage_in_bytes") or 0)
            return self.stat("rss") + self.stat("shmem") + kernel
        return self.stat("anon") + self.stat("shmem") + self.stat("kernel")

    def cap(self, limit: int) -> None:
        if self.version == 1:
            (self.path / "memory.limit_in_bytes").write_text(str(limit))
            if (self.path / "memory.memsw.limit_in_bytes").exists():  # no swapping out of the cap
                (self.path / "memory.memsw.limit_in_bytes").write_text(str(limit))
        else:
            (self.path / "memory.max").write_text(str(limit))
            if (self.path / "memory.swap.max").exists():
                (self.path / "memory.swap.max").write_text("0")

    def oom_kills(self) -> int | None:
        """How many processes the kernel's OOM killer killed in it (None where the kernel does not say)."""
        text = _read(self.path / ("memory.oom_control" if self.version == 1 else "memory.events"))
        found = re.search(r"^oom_kill (\d+)$", text, re.M)
        return int(found.group(1)) if found else None

    def pids(self) -> list[int]:
        return [int(p) for p in _read(self.path / "cgroup.procs").split()]

    def remove(self) -> None:
        """Kills what is left in it (only this test's processes are), then removes it."""
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 30
        while True:
            try:
                self.path.rmdir()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


@pytest.fixture
def cgroup():
    group = MemoryCgroup.create(f"gridcv-oom-test-{os.getpid()}")
    try:
        yield group
    finally:
        group.remove()


def wait_for(condition, what: str, run: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert run.poll() is None, f"the run ended ({run.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_the_kernels_oom_killer_kills_the_worker_and_the_candidate_goes_on_at_half_the_batch(
    make_experiment, tmp_path, cgroup
):
    y = np.arange(192) % 3
    x = np.random.default_rng(0).normal(size=(192, 8)).astype(np.float32)
    (tmp_path / "data").mkdir()
    np.save(tmp_path / "data" / "x.npy", x)
    np.save(tmp_path / "data" / "y.npy", y)
    path = make_experiment(
        builder=BUILDER,
        grid={"units": [8]},
        fit={"epochs": 1, "batch_size": BATCH},
        cv={"splitter": "StratifiedKFold", "n_splits": 3, "shuffle": True, "random_state": 0},
        refit=True,
        execution={"isolation": "process"},  # and no max_worker_memory: gridcv's guard stays out of it
    )
    run = subprocess.Popen(
        ["sh", "-c", f'echo $$ > {cgroup.path}/cgroup.procs && exec "$@"', "sh", *RUN, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for(lambda: (tmp_path / "ready").exists(), "the first full batch", run)
        runner_pid = run.pid
        assert runner_pid in cgroup.pids() and len(cgroup.pids()) >= 2  # the runner and its worker, in the cgroup
        idle = cgroup.held()
        limit = idle + BATCH // 2 * PER_SAMPLE + BATCH // 4 * PER_SAMPLE  # half a batch fits; a full one does not
        cgroup.cap(limit)
        (tmp_path / "go").touch()
        out, err = run.communicate(timeout=600)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    assert run.returncode == 0, err  # the runner was untouched: it finished the run
    kills = cgroup.oom_kills()
    assert kills in (1, None), kills  # the kernel killed once: one OOM per candidate, not per fold

    attempts = gridcv.load_attempts(path)
    killed = attempts[attempts["outcome"] == "killed"]
    assert len(killed) == 1 and killed["batch_size"].iloc[0] == BATCH
    assert (
        killed["message"]
        .iloc[0]
        .startswith("the worker was killed by SIGKILL (most likely the kernel's out-of-memory killer)")
    )
    assert (attempts["outcome"] == "done").sum() == 4  # 3 folds and the refit
    folds = gridcv.load_folds(path)
    assert folds["status"].tolist() == ["done"] * 3
    assert folds["attempts"].tolist() == [2, 1, 1]
    assert folds["batch_size"].tolist() == [32] * 3 and folds["accumulation_steps"].tolist() == [2] * 3
    assert folds["effective_batch_size"].tolist() == [BATCH] * 3
    assert folds["batch_lowered_by"].fillna("").tolist() == ["", *["fold 0 ran out of memory at batch 64"] * 2]
    assert folds["worker_id"].tolist() == ["w2"] * 3  # w1 died; its successor ran every fold
    refit = json.loads((path.parent / "results" / "tiny" / "best_model.json").read_text())["refit"]
    assert (refit["batch_size"], refit["accumulation_steps"]) == (32, 2)
    assert refit["batch_lowered_by"] == {"fold": 0, "oom_batch_size": BATCH}
    assert "retry  0/3 candidate 1 fold 1 (units=8): killed: the worker was killed by SIGKILL" in out
