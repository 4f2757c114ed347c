"""Model builders for the example experiments."""

from typing import Any

import keras


def build(params: dict[str, Any], input_shape: tuple[int, ...], n_classes: int) -> keras.Model:
    """A small CNN: conv -> pool -> dense, compiled with Adam."""
    model = keras.Sequential(
        [
            keras.Input(shape=input_shape),
            keras.layers.Conv2D(params.get("filters", 8), 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dropout(params.get("dropout", 0.2)),
            keras.layers.Dense(n_classes, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=params.get("learning_rate", 1e-3)),
        loss="sparse_categorical_crossentropy",
    )
    return model


def build_segmentation(params: dict[str, Any], input_shape: tuple[int, ...], n_classes: int) -> keras.Model:
    """A tiny fully-convolutional net: one class distribution per pixel."""
    filters = params.get("filters", 8)
    model = keras.Sequential(
        [
            keras.Input(shape=input_shape),
            keras.layers.Conv2D(filters, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(filters, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(n_classes, 1, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=params.get("learning_rate", 3e-3)),
        loss="sparse_categorical_crossentropy",
    )
    return model


def build_regressor(params: dict[str, Any], input_shape: tuple[int, ...], n_classes: int) -> keras.Model:
    """A small MLP with one linear output per target (``n_classes`` is the number of targets for regression)."""
    model = keras.Sequential(
        [
            keras.Input(shape=input_shape),
            keras.layers.Dense(params.get("units", 32), activation="relu"),
            keras.layers.Dense(n_classes),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=params.get("learning_rate", 3e-3)), loss="mse")
    return model
