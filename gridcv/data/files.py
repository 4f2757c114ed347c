"""A source that is one file per sample (an image or a ``.npy`` array), read a batch at a time.

Only the file list, the labels and the groups are held in memory; a batch
is decoded (Pillow for images, numpy for ``.npy``) when it is read. Images
become float arrays in [0, 1] of shape ``(h, w, channels)``; masks become
integer class maps of shape ``(h, w)``. :mod:`gridcv.data.listing` finds
the files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from gridcv.config.data import CsvData, ImagesData
from gridcv.config.tasks import DECLARED
from gridcv.data.inputs import InputFormat
from gridcv.errors import DataError

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")  # what Keras's image loader accepts
# Telling Pillow the format skips its probing of every plugin: ~10% of a small PNG's decode.
_FORMATS = {".bmp": ["BMP"], ".gif": ["GIF"], ".jpeg": ["JPEG"], ".jpg": ["JPEG"], ".png": ["PNG"]}
SAMPLE_EXTENSIONS = (*IMAGE_EXTENSIONS, ".npy")
SKIP_HINT = "Replace or delete the file, or set data.on_bad_file: skip to leave such files out with a warning."
# With on_bad_file: skip, files were checked by their headers only (gridcv.data.listing._readable).
HEADER_HINT = (
    "data.on_bad_file: skip checks each file's header (and a PNG's checksums) when the data is opened, not its "
    "pixel data, so this file was found only now. Replace or delete it, then run again: finished folds are kept."
)


def _open_image(path: Path) -> Image.Image:
    try:
        return Image.open(path, formats=_FORMATS.get(path.suffix.lower()))
    except UnidentifiedImageError:  # a misnamed file (a JPEG called .png): let Pillow probe
        return Image.open(path)


@dataclass(frozen=True)
class Decoding:
    """How a sample file becomes an array.

    Attributes:
        image_size: ``(height, width)`` images are resized to, or None to keep their size.
        channels: 1 (grayscale) or 3 (rgb).
        dtype: dtype of the decoded inputs.
    """

    image_size: tuple[int, int] | None
    channels: int
    dtype: str

    def image(self, path: Path) -> np.ndarray:
        """Decodes one image to uint8 ``(h, w, channels)``, resized if an image size is set."""
        with _open_image(path) as im:
            mode = "L" if self.channels == 1 else "RGB"
            if self.image_size is not None and im.format == "JPEG":
                # JPEG can decode straight at a smaller scale: much less work for big photos.
                im.draft(mode, (self.image_size[1], self.image_size[0]))
            im = im.convert(mode)
            if self.image_size is not None and im.size != (self.image_size[1], self.image_size[0]):
                im = im.resize((self.image_size[1], self.image_size[0]), Image.Resampling.BILINEAR)
            return np.asarray(im, dtype=np.uint8).reshape(im.size[1], im.size[0], self.channels)

    def mask(self, path: Path) -> np.ndarray:
        """Decodes one mask to int32 ``(h, w)`` class ids (nearest-neighbour resize: ids stay ids)."""
        if path.suffix.lower() == ".npy":
            return np.load(path, allow_pickle=False).astype(np.int32)
        with Image.open(path) as opened:
            im: Image.Image = opened
            if im.mode not in ("L", "P", "I", "I;16", "1"):
                raise ValueError(f"mode {im.mode} has several channels; a mask holds one class id per pixel")
            if self.image_size is not None and im.size != (self.image_size[1], self.image_size[0]):
                im = im.resize((self.image_size[1], self.image_size[0]), Image.Resampling.NEAREST)
            return np.asarray(im).astype(np.int32)


class FileSource:
    """A source that reads one file per sample (an image or a ``.npy`` array).

    Args:
        files: One input file per sample.
        labels: The target of each sample (class id, number or 0/1 row); for segmentation a label per
            image to stratify by, or None: the dominant class of its mask, read when first asked for.
        groups: Group per sample, or None.
        masks: One mask file per sample for segmentation, else None.
        n_classes: Number of classes (of samples, or of mask pixels), of targets or of labels.
        decoding: How files become arrays.
        what: Names the data in error messages (e.g. ``data.root``).
        class_names: Class names in label order (default: ``0 .. n_classes - 1``).
        task: The task; default: classification, or segmentation with masks.
    """

    def __init__(
        self,
        files: Sequence[Path],
        labels: np.ndarray | None,
        groups: np.ndarray | None,
        masks: Sequence[Path] | None,
        n_classes: int,
        decoding: Decoding,
        what: str,
        class_names: Sequence[str] | None = None,
        task: str | None = None,
    ) -> None:
        self._files = np.array([str(f) for f in files])
        self._masks = None if masks is None else np.array([str(m) for m in masks])
        if labels is not None:
            labels = np.asarray(labels)
            labels = labels if labels.dtype == np.float64 else labels.astype(np.int64)
        self._labels = labels
        self._groups = groups
        self._n_classes = n_classes
        self.decoding = decoding
        self.what = what
        self.class_names = tuple(class_names) if class_names is not None else None
        self.task = task or ("classification" if masks is None else "segmentation")
        self.task_origin = DECLARED
        self.headers_checked = False  # on_bad_file: skip checked headers (messages then say so)
        self.value_range = (0.0, 1.0) if self._is_image(self._files[0]) else None
        self._shape = self._first_shape()

    @staticmethod
    def _is_image(path: str) -> bool:
        return path.lower().endswith(IMAGE_EXTENSIONS)

    def _first_shape(self) -> tuple[int, ...]:
        first = Path(self._files[0])
        if not self._is_image(str(first)):
            return tuple(int(d) for d in self._load_npy(first).shape)
        if self.decoding.image_size is not None:
            return (*self.decoding.image_size, self.decoding.channels)
        try:
            with Image.open(first) as im:  # reads the header only
                return (im.size[1], im.size[0], self.decoding.channels)
        except (OSError, ValueError, SyntaxError) as exc:
            raise DataError(f"{self.what}: {first} cannot be read as an image ({exc}). {SKIP_HINT}") from None

    @property
    def n_samples(self) -> int:
        return len(self._files)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def n_classes(self) -> int:
        return self._n_classes

    def labels(self) -> np.ndarray:
        if self._labels is None:  # segmentation: each mask's dominant class, to stratify by
            self._labels = self.dominant_classes()
        return self._labels

    def dominant_classes(self) -> np.ndarray:
        """The most frequent class of each mask (the lowest id on a tie): reads every mask once.

        Masks are small class maps: a 64x64 PNG mask reads and counts in ~0.23 ms (2,000 in 0.46 s
        on one core), so 100,000 masks take ~25 s, once per run, in the parent, and only for a
        stratified splitter (see gridcv.runner.checks.labels_to_split).
        """
        assert self._masks is not None
        out = np.empty(len(self._masks), dtype=np.int64)
        for i, file in enumerate(self._masks):
            out[i] = np.bincount(self._mask(str(file)).ravel(), minlength=self._n_classes).argmax()
        return out

    def groups(self) -> np.ndarray | None:
        return self._groups

    def describe(self) -> InputFormat:
        """Images decoded with Pillow (resized bilinear to ``image_size`` if set) and scaled by 1/255
        to [0, 1]; ``.npy`` samples as stored. Masks' classes are their ids 0 .. n-1."""
        images = self.value_range is not None
        return InputFormat(
            task=self.task,
            input_shape=self._shape,
            dtype=self.decoding.dtype,
            classes=self.class_names or tuple(range(self._n_classes)),
            decoding="image" if images else "npy",
            image_size=self.decoding.image_size if images else None,
            color_mode=("grayscale" if self.decoding.channels == 1 else "rgb") if images else None,
            rescale=1 / 255 if images else None,
            value_range=self.value_range,
        )

    def files(self, indices: np.ndarray) -> list[str]:
        """The input files of the given samples."""
        return [str(f) for f in self._files[indices]]

    def mask_files(self) -> list[str] | None:
        """Every sample's mask file (segmentation), else None."""
        return None if self._masks is None else [str(m) for m in self._masks]

    @property
    def all_images(self) -> bool:
        """Whether every sample is an image (decoded to uint8, scaled when read), not a ``.npy``."""
        return all(self._is_image(f) for f in self._files)

    def decode(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Sample ``index`` as decoded, before scaling (uint8 for an image), and its mask (or None)."""
        x = self._sample(str(self._files[index]))
        return x, None if self._masks is None else self._mask(str(self._masks[index]))

    def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        indices = np.asarray(indices, dtype=np.int64)
        images = all(self._is_image(f) for f in self._files[indices])
        x = np.empty((len(indices), *self._shape), dtype=np.uint8 if images else self.decoding.dtype)
        for row, i in enumerate(indices):
            x[row] = self._sample(str(self._files[i]))
        if images:  # scale in one vectorised step, not per image
            x = np.multiply(x, np.asarray(1 / 255, dtype=self.decoding.dtype), dtype=self.decoding.dtype)
        if self._masks is None:
            return x, self.labels()[indices]
        y = np.empty((len(indices), *self._shape[:2]), dtype=np.int32)
        for row, i in enumerate(indices):
            y[row] = self._mask(str(self._masks[i]))
        return x, y

    def _sample(self, file: str) -> np.ndarray:
        path = Path(file)
        if self._is_image(file):
            try:
                array = self.decoding.image(path)
            except (OSError, ValueError, SyntaxError) as exc:
                hint = HEADER_HINT if self.headers_checked else SKIP_HINT
                raise DataError(f"{self.what}: {path} cannot be read as an image ({exc}). {hint}") from None
        else:
            array = self._load_npy(path)
        if array.shape != self._shape:
            raise DataError(
                f"{self.what}: {path} has shape {array.shape} but the first sample, {self._files[0]}, has "
                f"{self._shape}; every sample must have the same shape. "
                + ("Set data.image_size: [height, width] to resize images on reading." if self._is_image(file) else "")
            )
        return array

    def _mask(self, file: str) -> np.ndarray:
        try:
            mask = self.decoding.mask(Path(file))
        except (OSError, ValueError, SyntaxError) as exc:
            raise DataError(f"{self.what}: mask {file} cannot be read ({exc}). {SKIP_HINT}") from None
        if mask.shape != self._shape[:2]:
            raise DataError(
                f"{self.what}: mask {file} is {mask.shape[0]}x{mask.shape[1]} but its image is "
                f"{self._shape[0]}x{self._shape[1]}; a mask must match its image, or set data.image_size."
            )
        if mask.size and (mask.min() < 0 or mask.max() >= self._n_classes):
            raise DataError(
                f"{self.what}: mask {file} holds class id {int(mask.max())}, outside 0 .. {self._n_classes - 1}; "
                "raise data.n_classes or fix the mask."
            )
        return mask

    def _load_npy(self, path: Path) -> np.ndarray:
        try:
            return np.load(path, allow_pickle=False).astype(self.decoding.dtype, copy=False)
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"{self.what}: {path} is not a readable .npy file ({exc}). {SKIP_HINT}") from None


def decoding_of(spec: ImagesData | CsvData) -> Decoding:
    """How the ``data:`` section asks for files to be decoded."""
    size = spec.image_size
    return Decoding(
        image_size=None if size is None else (int(size[0]), int(size[1])),
        channels=1 if spec.color_mode == "grayscale" else 3,
        dtype=spec.dtype,
    )
