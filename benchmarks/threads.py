"""Does TensorFlow's thread count change a deterministic fit's numbers on this machine?

    python benchmarks/threads.py

Trains the same small CNN on scikit-learn's digits (op determinism on, the same seed) in fresh
processes with 1, 2 and 4 intra-op threads and with TensorFlow's defaults, and prints a hash of
the trained weights and the final loss of each. Different hashes mean the thread count changes
floating-point results (oneDNN and Eigen split sums by thread), which is why gridcv gives every
worker the same threads in deterministic mode whatever the slot count
(:mod:`gridcv.execution.placement`).
"""

from __future__ import annotations

import subprocess
import sys

FIT = r"""
import hashlib, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
threads = int(sys.argv[1])
if threads:
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
tf.config.experimental.enable_op_determinism()
import keras
from sklearn.datasets import load_digits
x, y = load_digits(return_X_y=True)
x = (x / 16.0).reshape(-1, 8, 8, 1).astype("float32")
keras.utils.set_random_seed(0)
model = keras.Sequential([
    keras.Input((8, 8, 1)),
    keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
    keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
    keras.layers.Flatten(),
    keras.layers.Dense(256, activation="relu"),
    keras.layers.Dense(10, activation="softmax"),
])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
model.fit(x, y, epochs=3, batch_size=64, verbose=0, shuffle=False)
weights = hashlib.sha256(b"".join(v.numpy().tobytes() for v in model.weights)).hexdigest()[:16]
print(weights, repr(float(model.evaluate(x, y, verbose=0))))
"""


def main() -> int:
    results = {}
    for threads in (1, 2, 4, 0):
        out = subprocess.run([sys.executable, "-c", FIT, str(threads)], capture_output=True, text=True, check=True)
        results[threads] = out.stdout.split()
        label = "default" if threads == 0 else str(threads)
        print(f"intra-op threads {label:>7}: weights {results[threads][0]}  loss {results[threads][1]}")
    distinct = len({r[0] for r in results.values()})
    print(f"\n{distinct} different results from 4 thread settings")
    return 0


if __name__ == "__main__":
    sys.exit(main())
