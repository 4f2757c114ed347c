"""What a model trained on a source was fed: input shape, dtype, scaling, class names. No Keras.

Every source describes itself with :class:`InputFormat` (``Source.describe()``);
the refit writes it into ``best_model.json`` and :func:`gridcv.load_best_model`
hands it back, so new data can be prepared exactly as the generator prepared
the training data (:meth:`InputFormat.read_images` decodes files the same way).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gridcv.errors import DataError


@dataclass(frozen=True)
class InputFormat:
    """How the generator turned samples into the arrays the model was trained on.

    Attributes:
        task: ``"classification"``, ``"segmentation"``, ``"regression"`` or ``"multilabel"``.
        input_shape: Shape of one input sample, as the model received it.
        dtype: dtype of the inputs (``float32`` or ``float16``).
        classes: Class names in label order: output unit ``i`` is ``classes[i]``
            (folder names, CSV labels as written, or ``0 .. n-1`` for arrays and masks).
        decoding: ``"image"`` (files decoded with Pillow), ``"npy"`` (one ``.npy``
            file per sample), ``"array"`` (rows of ``data.x``) or ``"python"`` (the user's
            own pipeline, ``data: kind: python``: its input shape and dtype are not recorded).
        image_size: ``(height, width)`` images were resized to (bilinear), or None.
        color_mode: ``"rgb"`` or ``"grayscale"`` for images, else None.
        rescale: Factor the raw values were multiplied by (``1/255`` for images), or None.
        value_range: Range of the inputs after scaling (``(0.0, 1.0)`` for images), or None
            when values were fed as stored.
    """

    task: str
    input_shape: tuple[int, ...]
    dtype: str
    classes: tuple[str | int, ...]
    decoding: str
    image_size: tuple[int, int] | None = None
    color_mode: str | None = None
    rescale: float | None = None
    value_range: tuple[float, float] | None = None

    @property
    def n_classes(self) -> int:
        """Number of classes (output units)."""
        return len(self.classes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (tuples become lists)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputFormat:
        """The format :meth:`to_dict` wrote."""

        def pair(key: str) -> Any:
            value = data.get(key)
            return None if value is None else tuple(value)

        return cls(
            task=str(data["task"]),
            input_shape=tuple(int(d) for d in data["input_shape"]),
            dtype=str(data["dtype"]),
            classes=tuple(data["classes"]),
            decoding=str(data["decoding"]),
            image_size=pair("image_size"),
            color_mode=data.get("color_mode"),
            rescale=data.get("rescale"),
            value_range=pair("value_range"),
        )

    def read_images(self, paths: Sequence[str | Path]) -> np.ndarray:
        """Image files decoded, resized and scaled as the training images were, ready for ``predict``.

        Args:
            paths: Image files (any format Pillow reads).

        Returns:
            An array of shape ``(len(paths), *input_shape)`` in :attr:`dtype`.

        Raises:
            DataError: The model was not trained on images, or an image has
                another size than the training images and no ``image_size`` was set.
        """
        if self.decoding != "image" or self.color_mode is None:
            raise DataError(
                f"this model was trained on {self.decoding} inputs, not image files: give it arrays of "
                f"shape (n, {', '.join(map(str, self.input_shape))}) and dtype {self.dtype}."
            )
        from gridcv.data.files import Decoding  # Pillow, only when images are read

        decoding = Decoding(self.image_size, 1 if self.color_mode == "grayscale" else 3, self.dtype)
        x = np.empty((len(paths), *self.input_shape), dtype=self.dtype)
        for row, path in enumerate(paths):
            image = decoding.image(Path(path))
            if image.shape != self.input_shape:
                raise DataError(
                    f"{path} is {image.shape[0]}x{image.shape[1]} but the model was trained on "
                    f"{self.input_shape[0]}x{self.input_shape[1]} images (no data.image_size was set); "
                    "resize it first."
                )
            x[row] = image
        return x * np.asarray(self.rescale or 1, dtype=self.dtype)
