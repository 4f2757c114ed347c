"""Materialises the example experiments' data from images that ship with scikit-learn.

Nothing is downloaded. Each function writes into a temporary folder and
renames it into place, so an interrupted preparation is redone, not half used.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.cluster import KMeans
from sklearn.datasets import load_diabetes, load_digits, load_sample_images


def _atomic_folder(final: Path, fill: Callable[[Path], None]) -> None:
    tmp = final.with_name(f".{final.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    fill(tmp)
    tmp.rename(final)


def _digit_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 digits as uint8 16x16 images (upscaled from 8x8) and their labels."""
    digits = load_digits()
    images = [
        np.asarray(Image.fromarray((im * 255 / 16).astype(np.uint8)).resize((16, 16), Image.Resampling.BILINEAR))
        for im in digits.images
    ]
    return np.stack(images), digits.target


def prepare_images(experiment_dir: Path) -> None:
    """data/digits_images/<digit>/<i>.png: the layout of keras.utils.image_dataset_from_directory."""

    def fill(folder: Path) -> None:
        images, labels = _digit_images()
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            (folder / str(label)).mkdir(exist_ok=True)
            Image.fromarray(image).save(folder / str(label) / f"{i:04d}.png")

    _atomic_folder(experiment_dir / "data" / "digits_images", fill)


def prepare_images_if_missing(experiment_dir: Path) -> None:
    """prepare_images, unless the folder is there: kind: python names no file gridcv could check, so this runs
    at every run and returns at once when the data exists."""
    if not (experiment_dir / "data" / "digits_images").is_dir():
        prepare_images(experiment_dir)


def prepare_diabetes(experiment_dir: Path) -> None:
    """data/diabetes_x.npy (442, 10) float32, standardised, and data/diabetes_y.npy, the float64 target."""
    x, y = load_diabetes(return_X_y=True)
    out = experiment_dir / "data"
    out.mkdir(exist_ok=True)
    np.save(out / "diabetes_x.npy", ((x - x.mean(axis=0)) / x.std(axis=0)).astype(np.float32))
    np.save(out / "diabetes_y.npy", y.astype(np.float64))


def prepare_csv(experiment_dir: Path) -> None:
    """data/digits_csv/: one .npy per sample and manifest.csv (file, label, group).

    The digits carry no writer id, so the group is a stand-in: consecutive
    blocks of 60 samples, as if each block came from one scanning session.
    """

    def fill(folder: Path) -> None:
        images, labels = _digit_images()
        (folder / "samples").mkdir()
        with (folder / "manifest.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "label", "session"])
            for i, (image, label) in enumerate(zip(images, labels, strict=True)):
                np.save(folder / "samples" / f"{i:04d}.npy", (image[..., None] / 255).astype(np.float32))
                writer.writerow([f"samples/{i:04d}.npy", f"digit_{label}", f"s{i // 60:02d}"])

    _atomic_folder(experiment_dir / "data" / "digits_csv", fill)


def prepare_segmentation(experiment_dir: Path, tile: int = 48) -> None:
    """data/segmentation/{images,masks}: tiles of scikit-learn's two sample photos.

    The mask of a tile gives each pixel one of 3 colour clusters (k-means on
    the photos' colours): a small, learnable per-pixel task.
    """

    def fill(folder: Path) -> None:
        photos = load_sample_images().images
        pixels = np.concatenate([p.reshape(-1, 3) for p in photos])[::97].astype(np.float32)
        kmeans = KMeans(n_clusters=3, n_init=4, random_state=0).fit(pixels)
        (folder / "images").mkdir()
        (folder / "masks").mkdir()
        for k, photo in enumerate(photos):
            classes = kmeans.predict(photo.reshape(-1, 3).astype(np.float32)).reshape(photo.shape[:2])
            for r in range(0, photo.shape[0] - tile + 1, tile):
                for c in range(0, photo.shape[1] - tile + 1, tile):
                    name = f"p{k}_{r:03d}_{c:03d}"
                    Image.fromarray(photo[r : r + tile, c : c + tile]).save(folder / "images" / f"{name}.jpg")
                    mask = classes[r : r + tile, c : c + tile].astype(np.uint8)
                    Image.fromarray(mask).save(folder / "masks" / f"{name}.png")

    _atomic_folder(experiment_dir / "data" / "segmentation", fill)
