"""GPU smoke test for a GPU owner: one worker per GPU for real, memory growth, peak GPU memory per fold.

    python benchmarks/gpu_smoke.py              # 2 or more GPUs: devices: auto, one slot per GPU
    python benchmarks/gpu_smoke.py --one-gpu    # 1 GPU: workers_per_device: 2 under gpu_memory_limit

tests/test_gpu.py runs it where there is a GPU and skips elsewhere (tests/test_slots.py fakes
nvidia-smi instead). It trains a small CNN on scikit-learn's digits (3 candidates x 4 folds,
nothing downloaded) with two slots, then checks what the workers and the results folder say:

- every fold is done, on two slots (``GPU 0``, ``GPU 1``, or ``GPU 0 1/2`` and ``GPU 0 2/2``),
  each attempt on the device its slot names, and the two slots trained at the same time;
- every worker saw exactly one GPU (its ``CUDA_VISIBLE_DEVICES`` entry), with memory growth on
  (or, with ``--one-gpu``, one logical device capped at ``gpu_memory_limit``): the builder
  records what TensorFlow shows it, in ``seen.jsonl`` next to it;
- every fold recorded its peak GPU memory (``gpu_peak_memory`` in ``gridcv.load_folds``);
- the runner itself never imported TensorFlow (so it never initialised CUDA).

Prints the folds and ``RESULT OK`` or ``RESULT FAILED`` with what failed; exit code 0 or 1.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

BUILDER = """
import json, os, pathlib
import keras
import tensorflow as tf

SEEN = pathlib.Path(__file__).with_name("seen.jsonl")


def build(params, input_shape, n_classes):
    gpus = tf.config.list_physical_devices("GPU")
    record = {
        "pid": os.getpid(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "cuda_device_order": os.environ.get("CUDA_DEVICE_ORDER"),
        "gpus": len(gpus),
        "memory_growth": [tf.config.experimental.get_memory_growth(g) for g in gpus],
        "memory_limits": [
            [c.memory_limit for c in (tf.config.get_logical_device_configuration(g) or [])] for g in gpus
        ],
    }
    with open(SEEN, "a") as f:
        f.write(json.dumps(record) + "\\n")
    model = keras.Sequential([
        keras.Input(shape=input_shape),
        keras.layers.Conv2D(params["filters"], 3, padding="same", activation="relu"),
        keras.layers.Conv2D(params["filters"], 3, padding="same", activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(n_classes, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model
"""

RUNNER = """
import sys, gridcv
gridcv.run_experiment(sys.argv[1])
print(sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")))
"""


def write_experiment(folder: Path, one_gpu: bool) -> Path:
    from sklearn.datasets import load_digits

    digits = load_digits()
    (folder / "data").mkdir(parents=True, exist_ok=True)
    np.save(folder / "data" / "x.npy", (digits.images / 16.0).astype(np.float32)[..., None])
    np.save(folder / "data" / "y.npy", digits.target.astype(np.int64))
    (folder / "builder.py").write_text(BUILDER)
    execution = {"devices": "auto"}
    if one_gpu:
        execution = {"devices": [0], "workers_per_device": 2, "gpu_memory_limit": "2GiB"}
    config = {
        "name": "gpu-smoke",
        "data": {"kind": "arrays", "x": "data/x.npy", "y": "data/y.npy"},
        "model": "builder.py:build",
        "fit": {"epochs": 5, "batch_size": 64},
        "grid": {"filters": [16, 32, 64]},
        "cv": {"splitter": "StratifiedKFold", "n_splits": 4, "shuffle": True, "random_state": 0},
        "scoring": "accuracy",
        "output": str(folder / "results"),
        "execution": execution,
    }
    path = folder / "gpu-smoke.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def same_gpu(slot: str, device: str) -> bool:
    """Whether a slot's name (``GPU 0``, ``GPU 0 1/2``, ``GPU-5c3e1a2b…``) names the device ``GPU <entry>``."""
    label = re.sub(r" \d+/\d+$", "", slot)
    entry = device.removeprefix("GPU ")
    return label == f"GPU {entry}" or (label.endswith("…") and entry.startswith(label[:-1]))


def overlapped(attempts: list[dict]) -> bool:
    """Whether attempts on two different slots ran at the same time."""
    for a in attempts:
        for b in attempts:
            if a["slot"] != b["slot"] and a["started_at"] < b["finished_at"] and b["started_at"] < a["finished_at"]:
                return True
    return False


def check(folder: Path, one_gpu: bool, runner_modules: str) -> list[str]:
    """What went wrong (nothing: an empty list)."""
    import gridcv

    failures = []
    folds = gridcv.load_folds(folder / "results")
    attempts = gridcv.load_attempts(folder / "results").to_dict("records")
    print(folds[["param_filters", "fold", "status", "test_accuracy", "worker_id", "gpu_peak_memory"]].to_string())
    print()
    print(gridcv.load_attempts(folder / "results")[["task_id", "attempt", "outcome", "slot", "device", "host"]])
    if not (folds["status"] == "done").all():
        failures.append(f"not every fold is done: {folds['status'].tolist()}")
    slots = sorted({a["slot"] for a in attempts})
    expected = ["GPU 0 1/2", "GPU 0 2/2"] if one_gpu else None
    if len(slots) != 2 or (expected is not None and slots != expected):
        failures.append(f"expected folds on two slots, found {slots}")
    for a in attempts:
        if not same_gpu(a["slot"], a["device"] or ""):
            failures.append(f"attempt {a['task_id']}/{a['attempt']} on slot {a['slot']} ran on {a['device']}")
    if not overlapped(attempts):
        failures.append("the two slots never trained at the same time")
    if folds["gpu_peak_memory"].isna().any():
        failures.append("some folds recorded no peak GPU memory")
    records = [json.loads(line) for line in (folder / "seen.jsonl").read_text().splitlines()]
    seen = {json.dumps(r, sort_keys=True): r for r in records}.values()  # each worker's view once
    for s in seen:
        if s["gpus"] != 1:
            failures.append(
                f"worker {s['pid']} (CUDA_VISIBLE_DEVICES={s['cuda_visible_devices']}) saw {s['gpus']} GPUs"
            )
        elif one_gpu and s["memory_limits"] != [[2048]]:
            failures.append(f"worker {s['pid']} has logical devices {s['memory_limits']}, not one capped at 2 GiB")
        elif not one_gpu and s["memory_growth"] != [True]:
            failures.append(f"worker {s['pid']} has memory growth {s['memory_growth']}")
    if runner_modules.strip() != "[]":
        failures.append(f"the runner imported {runner_modules.strip()}")
    return failures


def smoke(folder: Path, one_gpu: bool) -> list[str]:
    """Runs the smoke experiment in ``folder`` (its runner in a fresh interpreter); what went wrong."""
    import subprocess

    path = write_experiment(folder, one_gpu)
    done = subprocess.run([sys.executable, "-c", RUNNER, str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        return [f"the run failed:\n{done.stderr[-3000:]}"]
    return check(folder, one_gpu, done.stdout.splitlines()[-1])


def main() -> int:
    from gridcv.execution.placement import visible_gpus

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one-gpu", action="store_true", help="two workers on GPU 0 under gpu_memory_limit")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    gpus = visible_gpus()
    if len(gpus) < (1 if args.one_gpu else 2):
        print(f"this machine shows {len(gpus)} GPU(s) ({', '.join(gpus) or 'none'}); run with --one-gpu for one")
        return 1
    folder = args.workdir or Path(tempfile.mkdtemp(prefix="gridcv-gpu-smoke-"))
    failures = smoke(folder, args.one_gpu)
    print(f"\nvisible GPUs: {', '.join(gpus)}; results in {folder}")
    for failure in failures:
        print(f"FAILED: {failure}")
    print("RESULT", "OK" if not failures else "FAILED")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
