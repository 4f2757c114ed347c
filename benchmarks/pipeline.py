"""Training throughput from memory, from a memory-mapped .npy, and from an image folder (with and without the cache).

Usage:
    PYTHONPATH=. python benchmarks/pipeline.py [--samples 8192] [--size 32] [--epochs 4]

The same model (same seed) is fitted on the same data fed four ways:
(a) in-memory numpy arrays, (b) gridcv's generator over ``kind: arrays``
(a .npy read batch by batch), (c) gridcv's generator over ``kind: images``
(PNG and JPEG files decoded per batch), (d) the same image folders through
``data: cache: true`` (decoded once into a memory-mapped cache; its build time
is printed). Throughput is training samples per second, the median over
epochs after the first (which includes tracing); "x (a)" and "x (b)" compare
it with the in-memory and memmap rows of the same run. "loader alone" is one
epoch of batches read without training: when it is slower than training, the
loader is the bottleneck. The data is scikit-learn's digits, upscaled and
jittered to the requested count, written to a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def make_data(folder: Path, n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Writes x.npy/y.npy and an image folder (one sub-folder per class) of the same images."""
    digits = load_digits()
    rng = np.random.default_rng(0)
    pick = rng.integers(0, len(digits.images), n)
    images = np.empty((n, size, size), dtype=np.uint8)
    for i, j in enumerate(pick):
        im = Image.fromarray((digits.images[j] * 255 / 16).astype(np.uint8)).resize((size, size), Image.BILINEAR)
        dy, dx = rng.integers(-2, 3, 2)
        images[i] = np.roll(np.asarray(im), (dy, dx), axis=(0, 1))
    y = digits.target[pick].astype(np.int64)
    np.save(folder / "x.npy", (images[..., None] / np.float32(255)).astype(np.float32))
    np.save(folder / "y.npy", y)
    for i in range(n):
        for kind, ext in (("images", "png"), ("jpeg", "jpg")):
            d = folder / kind / str(y[i])
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[i]).save(d / f"{i:06d}.{ext}", **({"quality": 95} if ext == "jpg" else {}))
    return np.load(folder / "x.npy"), y


def cached_source(folder: Path, section: dict[str, Any]) -> tuple[Any, float]:
    """The image folder of ``section`` through gridcv's decoded-image cache, and the seconds its build took."""
    from gridcv.config import parse_data
    from gridcv.data.cache import build_cache, plan_cache
    from gridcv.data.cached import open_cached
    from gridcv.data.sources import open_source

    spec = parse_data({**section, "cache": True})
    files = open_source(spec, folder)
    plan = plan_cache(spec, files, folder, folder / "results", "benchmark")
    assert plan is not None
    start = time.perf_counter()
    build_cache(plan, files, "benchmark", lambda _: None)
    seconds = time.perf_counter() - start
    return open_cached(plan.stem, spec), seconds


def build_model(input_shape: tuple[int, ...], kind: str) -> Any:
    """A small CNN (the kind of model a grid search trains hundreds of), or a tiny MLP.

    The MLP does so little work per sample that any cost of feeding shows.
    """
    import keras

    keras.utils.set_random_seed(0)
    if kind == "mlp":
        layers = [keras.layers.Flatten(), keras.layers.Dense(32, activation="relu")]
    else:
        layers = [
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
        ]
    model = keras.Sequential([keras.Input(shape=input_shape), *layers, keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def epoch_rate(fit: Any, n: int) -> float:
    """Samples/second: the median over epochs after the first."""
    import keras

    times: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            times.append(time.perf_counter() - self.start)

    fit(Clock())
    return n / statistics.median(times[1:])


def loader_rate(batches: Any) -> float:
    """Samples/second of reading one epoch of batches, without training."""
    start = time.perf_counter()
    for i in range(len(batches)):
        batches.load(1, i)
    return len(batches.indices) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    """Runs the three (plus variant) fits and prints the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=8192)
    parser.add_argument("--size", type=int, default=32, help="images are size x size, grayscale")
    parser.add_argument("--epochs", type=int, default=4, help="2 or more: the first (tracing, warm-up) is not timed")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--model", choices=["cnn", "mlp"], default="cnn")
    parser.add_argument(
        "--rounds", type=int, default=2, help="every feed is measured once per round; the median is shown"
    )
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be 2 or more: the first epoch (tracing, warm-up) is not timed")

    from gridcv.config import parse_data
    from gridcv.data.sources import open_source
    from gridcv.training.batches import IndexBatches

    with tempfile.TemporaryDirectory(prefix="gridcv-bench-") as tmp:
        folder = Path(tmp)
        x, y = make_data(folder, args.samples, args.size)
        arrays = open_source(parse_data({"kind": "arrays", "x": "x.npy", "y": "y.npy"}), folder)
        png = {"kind": "images", "root": "images", "image_size": [args.size] * 2, "color_mode": "grayscale"}
        jpeg = {**png, "root": "jpeg"}
        images = open_source(parse_data(png), folder)
        jpegs = open_source(parse_data(jpeg), folder)
        png_cache, png_build = cached_source(folder, png)
        jpeg_cache, jpeg_build = cached_source(folder, jpeg)
        n, bs, epochs = args.samples, args.batch_size, args.epochs
        rates: dict[str, list[float]] = {}
        loaders: dict[str, float | None] = {}

        def fit_arrays(clock: Any) -> None:
            build_model(x.shape[1:], args.model).fit(x, y, batch_size=bs, epochs=epochs, verbose=0, callbacks=[clock])

        variants = [
            ("(b) memmap .npy, tf_data feed", arrays, {}),
            ("(b) memmap .npy, py_dataset feed", arrays, {"feed": "py_dataset"}),
            ("(c) image folder (PNG), tf_data feed", images, {}),
            ("(c) image folder (PNG), tf_data, workers=2", images, {"workers": 2}),
            ("(c) image folder (JPEG), tf_data feed", jpegs, {}),
            ("(d) image folder (PNG), data.cache", png_cache, {}),
            ("(d) image folder (JPEG), data.cache", jpeg_cache, {}),
        ]
        # Rounds interleave the feeds, so a machine whose load drifts slows them alike.
        for _ in range(args.rounds):
            rates.setdefault("(a) in-memory numpy arrays", []).append(epoch_rate(fit_arrays, n))
            loaders["(a) in-memory numpy arrays"] = None
            # The image folder lists files class by class: index i is not x[i], but the
            # samples are the same set, which is all a throughput comparison needs.
            for label, source, options in variants:
                batches = IndexBatches(source, np.arange(n), bs, shuffle=True, seed=0, **options)

                def fit_generator(clock: Any, batches: IndexBatches = batches, source: Any = source) -> None:
                    model = build_model(source.input_shape, args.model)
                    model.fit(
                        batches.feed(0, epochs),
                        steps_per_epoch=len(batches),
                        epochs=epochs,
                        verbose=0,
                        shuffle=False,
                        callbacks=[clock],
                    )

                rates.setdefault(label, []).append(epoch_rate(fit_generator, n))
                loaders[label] = loader_rate(batches)
        rows = [(label, statistics.median(r), loaders[label]) for label, r in rates.items()]

    base, memmap = rows[0][1], rows[1][1]
    print(
        f"\n{n} samples {args.size}x{args.size}x1, batch {bs}, {epochs} epochs, model {args.model}, median of "
        f"{args.rounds} rounds; {os.cpu_count()} CPUs; Python {sys.version.split()[0]}"
    )
    print(f"{'feed':46} {'fit samples/s':>14} {'x (a)':>7} {'x (b)':>7} {'loader alone/s':>15}")
    for label, rate, loader in rows:
        shown = "" if loader is None else f"{loader:15,.0f}"
        print(f"{label:46} {rate:14,.0f} {rate / base:7.2f} {rate / memmap:7.2f} {shown}")
    print(
        f"\ncache build (decoding every image once, {os.cpu_count()} threads): PNG {png_build:.1f} s "
        f"({n / png_build:,.0f} images/s), JPEG {jpeg_build:.1f} s ({n / jpeg_build:,.0f} images/s)"
    )


if __name__ == "__main__":
    main()
