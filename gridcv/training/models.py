"""Built-in model builders: ``model: gridcv.models:small_cnn`` or ``gridcv.models:application``.

Both return uncompiled models, so gridcv compiles them from ``compile:`` (and
grid keys such as ``learning_rate``). They read their settings from the
candidate's parameters, so every setting below can be a grid key. The last
layer computes in float32, as mixed precision needs for a stable softmax.
Users name them ``gridcv.models:<name>`` (see :mod:`gridcv.models`).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import keras

from gridcv.errors import BuilderError

# Light Keras applications that make sense for a grid search on a small machine.
APPLICATIONS = (
    "MobileNetV3Small",
    "MobileNetV3Large",
    "MobileNetV2",
    "EfficientNetB0",
    "EfficientNetV2B0",
    "NASNetMobile",
    "DenseNet121",
    "ResNet50",
)


def small_cnn(params: dict[str, Any], input_shape: tuple[int, ...], n_classes: int) -> keras.Model:
    """A small convolutional network: ``depth`` blocks of conv-conv-pool, then a dense head.

    Args:
        params: ``width`` (filters of the first block, doubled each block; 16),
            ``depth`` (blocks; 2), ``dropout`` (before the last layer; 0.2),
            ``dense_units`` (hidden dense layer, 0 for none; 0),
            ``batch_norm`` (after each convolution; false).
        input_shape: Shape of one sample, (height, width, channels); a 2-D
            sample gets a channel axis.
        n_classes: Units of the softmax output.

    Returns:
        An uncompiled model.
    """
    width, depth = int(params.get("width", 16)), int(params.get("depth", 2))
    layers: list[keras.layers.Layer] = [keras.Input(shape=input_shape)]
    if len(input_shape) == 2:
        layers.append(keras.layers.Reshape((*input_shape, 1)))
    for block in range(depth):
        for _ in range(2):
            layers.append(keras.layers.Conv2D(width * 2**block, 3, padding="same", use_bias=False))
            if params.get("batch_norm", False):
                layers.append(keras.layers.BatchNormalization())
            layers.append(keras.layers.Activation("relu"))
        layers.append(keras.layers.MaxPooling2D(2, padding="same"))
    layers.append(keras.layers.GlobalAveragePooling2D())
    if int(params.get("dense_units", 0)):
        layers.append(keras.layers.Dense(int(params["dense_units"]), activation="relu"))
    layers.append(keras.layers.Dropout(float(params.get("dropout", 0.2))))
    layers.append(keras.layers.Dense(n_classes, activation="softmax", dtype="float32"))
    return keras.Sequential(layers, name="small_cnn")


def application(params: dict[str, Any], input_shape: tuple[int, ...], n_classes: int) -> keras.Model:
    """A Keras application as the base of a new classifier, for transfer learning.

    Nothing is downloaded: the base starts from random weights, or from a local
    weights file (saved from the same application with ``include_top=False``).

    Args:
        params: ``application`` (a name in :data:`APPLICATIONS`; MobileNetV3Small),
            ``weights`` (path to a ``.weights.h5`` file, relative to the current
            folder or absolute; null for random weights), ``freeze_base``
            (train the head only; false), ``fine_tune_at`` (layers of the base
            from this index on are trained, the ones before stay frozen),
            ``dropout`` (before the head; 0.2), ``input_scale`` and ``input_offset``
            (a ``Rescaling(input_scale, input_offset)`` layer before the base, saved
            with the model; none by default), and any keyword argument of the
            application itself (``alpha``, ``minimalistic``,
            ``include_preprocessing``, ...). gridcv's image sources feed [0, 1];
            applications with built-in preprocessing (MobileNetV3*, EfficientNet*)
            expect 0-255 (``input_scale: 255``), MobileNetV2 and NASNetMobile [-1, 1]
            (``input_scale: 2, input_offset: -1``).
        input_shape: Shape of one image (height, width, channels).
        n_classes: Units of the softmax output.

    Returns:
        An uncompiled model.

    Raises:
        BuilderError: Unknown application, or a weights file that does not exist.
    """
    name = str(params.get("application", "MobileNetV3Small"))
    if name not in APPLICATIONS:
        raise BuilderError(
            f"key 'grid.application' (gridcv.models:application) is {name!r}; use one of {', '.join(APPLICATIONS)}."
        )
    weights = params.get("weights")
    if weights is not None:
        if weights == "imagenet":
            raise BuilderError(
                "key 'grid.weights' is 'imagenet', which would be downloaded at run time; gridcv "
                "does not download. Save the weights to a file once and give its path."
            )
        path = Path(str(weights)).expanduser()
        if not path.is_file():
            raise BuilderError(
                f"key 'grid.weights' points at {path}, which does not exist. Give the path of a "
                f"weights file saved from {name}(include_top=False), or null for random weights."
            )
        weights = str(path.resolve())
    cls = getattr(keras.applications, name)
    accepted = set(inspect.signature(cls).parameters) - {"include_top", "weights", "input_shape", "pooling", "classes"}
    extra = {k: v for k, v in params.items() if k in accepted}
    base = cls(include_top=False, weights=weights, input_shape=input_shape, pooling="avg", **extra)
    frozen = bool(params.get("freeze_base", False))
    fine_tune_at = params.get("fine_tune_at")
    base.trainable = not frozen or fine_tune_at is not None
    if fine_tune_at is not None:
        for layer in base.layers[: int(fine_tune_at)]:
            layer.trainable = False
    inputs = keras.Input(shape=input_shape)
    scaled = _rescaled(inputs, params)
    # A frozen base runs in inference mode, so its BatchNorm statistics stay as loaded.
    features = base(scaled, training=False) if frozen or fine_tune_at is not None else base(scaled)
    features = keras.layers.Dropout(float(params.get("dropout", 0.2)))(features)
    outputs = keras.layers.Dense(n_classes, activation="softmax", dtype="float32")(features)
    return keras.Model(inputs, outputs, name=f"{name}_classifier")


def _rescaled(inputs: Any, params: dict[str, Any]) -> Any:
    """``inputs * input_scale + input_offset`` when either is set (the range the application expects)."""
    scale, offset = params.get("input_scale"), params.get("input_offset")
    if scale is None and offset is None:
        return inputs
    return keras.layers.Rescaling(float(1 if scale is None else scale), float(offset or 0), name="input_scaling")(
        inputs
    )
