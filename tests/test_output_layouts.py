"""Every output layout Keras users write is scored as Keras trains it (issue 10).

Each model here has fixed weights and trains with learning rate 0, so its
outputs are known in advance; the expected accuracy, log loss, mean IoU and
pixel accuracy are computed by hand with numpy and compared with gridcv's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import gridcv
from gridcv.errors import BuilderError

# A builder whose last layer has fixed weights; the grid key `layout` picks the output layout.
FIXED_BUILDER = """
import keras
import numpy as np

W3, B3 = np.array([[1.5, -1.0, 0.2], [0.3, 1.2, -1.4]]), np.array([0.1, -0.2, 0.05])
W1, B1 = np.array([[1.5], [-0.8]]), np.array([0.2])
# Per pixel of a one-channel image x in [0, 1]: the logit 10 x - 5 of class 1 (class 1 where x > 0.5).
S2, C2 = np.array([[[[0.0, 10.0]]]]), np.array([0.0, -5.0])
S1, C1 = np.array([[[[10.0]]]]), np.array([-5.0])

LAYOUTS = {  # layout -> (units, activation, loss)
    "softmax": (None, "softmax", "sparse_categorical_crossentropy"),
    "logits": (None, None, keras.losses.SparseCategoricalCrossentropy(from_logits=True)),
    "sigmoid": (1, "sigmoid", "binary_crossentropy"),
    "logit": (1, None, keras.losses.BinaryCrossentropy(from_logits=True)),
}


def build(params, input_shape, n_classes):
    units, activation, loss = LAYOUTS[params["layout"]]
    units = units or n_classes
    if len(input_shape) == 3:  # segmentation: a 1x1 convolution per pixel
        last = keras.layers.Conv2D(units, 1, activation=activation)
        weights = [S1, C1] if units == 1 else [S2, C2]
    else:
        last = keras.layers.Dense(units, activation=activation)
        weights = [W1, B1] if units == 1 else [W3[:, :units], B3[:units]]
    model = keras.Sequential([keras.Input(shape=input_shape), last])
    last.set_weights(weights)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss=loss)
    return model
"""

W3, B3 = np.array([[1.5, -1.0, 0.2], [0.3, 1.2, -1.4]]), np.array([0.1, -0.2, 0.05])
W1, B1 = np.array([[1.5], [-0.8]]), np.array([0.2])


def write_classification(folder: Path, n_classes: int, n: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels that the fixed model gets mostly, not entirely, right."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(n, 2)).astype(np.float32)
    noise = rng.normal(scale=0.8, size=(n, n_classes if n_classes > 2 else 1))
    if n_classes == 2:
        y = ((x @ W1 + B1 + noise)[:, 0] > 0).astype(np.int64)
    else:
        y = (x @ W3 + B3 + noise).argmax(axis=1).astype(np.int64)
    assert set(y) == set(range(n_classes))
    (folder / "data").mkdir(exist_ok=True)
    np.save(folder / "data" / "x.npy", x)
    np.save(folder / "data" / "y.npy", y)
    return x, y


def expected_classification(x: np.ndarray, y: np.ndarray, units: int) -> dict[str, float]:
    """Accuracy and neg_log_loss of the fixed model with ``units`` outputs, by hand."""
    x = x.astype(np.float64)
    if units == 1:
        z = (x @ W1 + B1)[:, 0]
        predicted = (z > 0).astype(int)
        p_true = np.where(y == 1, 1 / (1 + np.exp(-z)), 1 / (1 + np.exp(z)))
    else:
        z = x @ W3[:, :units] + B3[:units]
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        predicted = z.argmax(axis=1)
        p_true = p[np.arange(len(y)), y]
    return {"accuracy": float(np.mean(predicted == y)), "neg_log_loss": float(np.mean(np.log(p_true)))}


def run_fixed(make_experiment, layout: str, data: dict, scoring: list[str], **overrides) -> object:
    path = make_experiment(
        builder=FIXED_BUILDER,
        data=data,
        grid={"layout": [layout]},
        cv={"splitter": "KFold", "n_splits": 2},
        fit={"epochs": 1, "batch_size": 4},
        scoring=scoring,
        **overrides,
    )
    gridcv.run_experiment(path)
    return gridcv.load_results(path)


@pytest.mark.parametrize(
    ("layout", "n_classes"), [("softmax", 3), ("logits", 3), ("sigmoid", 2), ("logit", 2), ("softmax", 2)]
)
def test_classification_layouts_score_as_computed_by_hand(make_experiment, tmp_path, layout, n_classes):
    x, y = write_classification(tmp_path, n_classes)
    results = run_fixed(
        make_experiment,
        layout,
        {"kind": "arrays", "x": "data/x.npy", "y": "data/y.npy"},
        ["accuracy", "neg_log_loss"],
        return_train_score=True,
    )
    half = len(y) // 2
    tests = [slice(0, half), slice(half, None)]  # KFold without shuffling
    units = 1 if layout in ("sigmoid", "logit") else n_classes
    for k, (test, train) in enumerate(zip(tests, tests[::-1], strict=True)):
        for scorer, value in expected_classification(x[test], y[test], units).items():
            assert results[f"split{k}_test_{scorer}"].item() == pytest.approx(value, rel=1e-5), (k, scorer)
        for scorer, value in expected_classification(x[train], y[train], units).items():
            assert results[f"split{k}_train_{scorer}"].item() == pytest.approx(value, rel=1e-5), (k, scorer)


def write_binary_masks(folder: Path, n: int = 8, size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Images with a bright object (class 1) on a dark background, and some dim object pixels the
    fixed model misses; returns the uint8 images and masks in file order."""
    rng = np.random.default_rng(5)
    masks = (rng.random((n, size, size)) < 0.35).astype(np.uint8)
    images = np.where(masks == 1, 210, 30).astype(np.uint8)
    dim = (rng.random((n, size, size)) < 0.1) & (masks == 1)
    images[dim] = 100  # below the model's threshold (x > 0.5): object pixels predicted as background
    (folder / "images").mkdir()
    (folder / "masks").mkdir()
    for i in range(n):
        Image.fromarray(images[i]).save(folder / "images" / f"s{i:02d}.png")
        Image.fromarray(masks[i]).save(folder / "masks" / f"s{i:02d}.png")
    return images, masks


def expected_segmentation(images: np.ndarray, masks: np.ndarray) -> dict[str, float]:
    """Mean IoU (over the classes present) and pixel accuracy of the fixed model, by hand."""
    predicted = (images.astype(np.float64) / 255 > 0.5).astype(int)
    ious = []
    for c in (0, 1):
        union = np.sum((predicted == c) | (masks == c))
        if union:
            ious.append(np.sum((predicted == c) & (masks == c)) / union)
    return {"mean_iou": float(np.mean(ious)), "pixel_accuracy": float(np.mean(predicted == masks))}


SEGMENTATION_DATA = {"kind": "images", "root": "images", "masks": "masks", "n_classes": 2, "color_mode": "grayscale"}


@pytest.mark.parametrize("layout", ["sigmoid", "logit", "softmax", "logits"])
def test_segmentation_layouts_score_as_computed_by_hand(make_experiment, tmp_path, layout):
    images, masks = write_binary_masks(tmp_path)
    results = run_fixed(make_experiment, layout, SEGMENTATION_DATA, ["mean_iou", "pixel_accuracy"])
    for k, test in enumerate([slice(0, 4), slice(4, None)]):
        for scorer, value in expected_segmentation(images[test], masks[test]).items():
            assert results[f"split{k}_test_{scorer}"].item() == pytest.approx(value, rel=1e-9), (k, scorer)


def test_one_sigmoid_channel_for_a_binary_mask_scores_well_above_the_background_baseline(make_experiment, tmp_path):
    # The case: Conv2D(1, 1, activation="sigmoid") scored exactly the all-background
    # baseline, because the class was the argmax over one channel.
    images, masks = write_binary_masks(tmp_path)
    results = run_fixed(make_experiment, "sigmoid", SEGMENTATION_DATA, ["mean_iou", "pixel_accuracy"])
    iou = results["mean_test_mean_iou"].item()
    expected = np.mean([expected_segmentation(images[s], masks[s])["mean_iou"] for s in (slice(0, 4), slice(4, None))])
    baseline = np.mean([np.mean(masks[s] == 0) / 2 for s in (slice(0, 4), slice(4, None))])  # IoU 0 for class 1
    assert iou == pytest.approx(expected, rel=1e-9)
    assert iou > 0.8 and baseline < 0.35


# --- the rules, on models built in the test (no run) --------------------------------------------

WHO = "exp.yaml: key 'model': models.py:build"


def layout_of(model, loss, n_classes: int = 3, task: str = "classification", input_shape=(4,)):
    from gridcv.training.outputs import Culprit, output_layout, static_output_shapes

    model.compile(optimizer="sgd", loss=loss)
    shapes = static_output_shapes(model, input_shape)
    return output_layout(model, task, n_classes, input_shape, shapes, Culprit(WHO))


def dense_model(*layers, input_shape=(4,)):
    import keras

    return keras.Sequential([keras.Input(shape=input_shape), *layers])


def test_layouts_are_read_from_the_loss_and_the_output_layer():
    import functools

    import keras

    from gridcv.training.outputs import OutputKind

    layers = keras.layers
    cases = [
        # the mixed-precision guide's float32 output layer, after a linear Dense
        (
            dense_model(layers.Dense(3), layers.Activation("softmax", dtype="float32")),
            "sparse_categorical_crossentropy",
        ),
        (dense_model(layers.Dense(3, activation="softmax"), layers.Dropout(0.5)), "crossentropy"),
        (dense_model(dense_model(layers.Dense(3, activation="softmax"))), "sparse_categorical_crossentropy"),
    ]
    for model, loss in cases:
        assert layout_of(model, loss).kind is OutputKind.PROBABILITIES
    inputs = keras.Input(shape=(4,))
    functional = keras.Model(inputs, keras.ops.sigmoid(layers.Dense(1)(inputs)))
    assert layout_of(functional, "binary_crossentropy", n_classes=2).kind is OutputKind.SIGMOID
    partial = functools.partial(keras.losses.binary_crossentropy, from_logits=True)
    assert layout_of(dense_model(layers.Dense(1)), partial, n_classes=2).kind is OutputKind.LOGIT

    def custom_loss(y_true, y_pred):
        return keras.ops.mean(y_pred)

    assert layout_of(dense_model(layers.Dense(3)), custom_loss).kind is OutputKind.LOGITS

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.head = layers.Dense(3)

        def call(self, x):
            return self.head(x)

    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    assert layout_of(Subclassed(), loss).kind is OutputKind.LOGITS


def refusal(model, loss, **kwargs) -> str:
    with pytest.raises(BuilderError) as info:
        layout_of(model, loss, **kwargs)
    return str(info.value)


def test_layouts_that_cannot_be_scored_are_refused():
    import keras

    layers = keras.layers
    assert refusal(dense_model(layers.Dense(3)), "sparse_categorical_crossentropy") == (
        f"{WHO} returned a model whose output layer has no activation (its outputs are logits), but the loss "
        "'sparse_categorical_crossentropy' expects probabilities (from_logits=False). Add activation='softmax' "
        "(or 'sigmoid' for one unit) to the last layer, or compile with a loss that has from_logits=True."
    )
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    assert refusal(dense_model(layers.Dense(3, activation="softmax")), loss) == (
        f"{WHO} returned a model whose output layer applies softmax, but the loss 'sparse_categorical_crossentropy' "
        "has from_logits=True and applies it again. Remove the activation, or use from_logits=False."
    )
    assert refusal(dense_model(layers.Dense(1, activation="softmax")), "binary_crossentropy", n_classes=2) == (
        f"{WHO} returned a model whose one output unit has a softmax activation, which always outputs 1. Use "
        "activation='sigmoid' with binary_crossentropy, or 2 units with softmax."
    )
    assert refusal(dense_model(layers.Dense(3, activation="softmax")), "binary_crossentropy") == (
        f"{WHO} returned a model with 3 outputs per sample and the loss 'binary_crossentropy', which compares "
        "each of them with the class id. Use sparse_categorical_crossentropy with 3 outputs."
    )
    one_sigmoid = dense_model(layers.Dense(1, activation="sigmoid"))
    assert refusal(one_sigmoid, "sparse_categorical_crossentropy", n_classes=2) == (
        f"{WHO} returned a model with one output unit and the loss 'sparse_categorical_crossentropy', which needs "
        "one output per class. Use binary_crossentropy with one sigmoid unit, or 2 units with softmax."
    )

    def custom_loss(y_true, y_pred):
        return keras.ops.mean(y_pred)

    assert refusal(dense_model(layers.Dense(3), layers.Lambda(lambda t: t * 2)), custom_loss) == (
        f"{WHO} returned a model whose outputs gridcv cannot read as probabilities or logits: its output layer "
        "has no known activation and the loss 'custom_loss' does not say (no from_logits). End the model with "
        "a softmax or sigmoid activation, or compile with a Keras crossentropy loss."
    )
    unflattened = dense_model(layers.Dense(3, activation="softmax"), input_shape=(2, 4))
    assert refusal(unflattened, "sparse_categorical_crossentropy", input_shape=(2, 4)) == (
        f"{WHO} returned a model with an output of shape (2, 3) per sample, but the data has 3 classes; end the "
        "model with Dense(3, activation='softmax')."
    )
    inputs = keras.Input(shape=(4,))
    two = keras.Model(inputs, [layers.Dense(3, activation="softmax")(inputs), layers.Dense(1)(inputs)])
    assert refusal(two, ["sparse_categorical_crossentropy", "mse"]) == (
        f"{WHO} returned a model with 2 outputs; gridcv scores models with one output (end the model with "
        "Dense(3, activation='softmax'))."
    )


def test_a_logit_threshold_is_exact_where_its_sigmoid_rounds_to_one_half():
    from gridcv.training.outputs import OutputKind, OutputLayout

    layout = OutputLayout(OutputKind.LOGIT, 2)
    raw = np.array([[1e-17], [-1e-17], [3.0]])
    assert layout.classes(raw).tolist() == [1, 0, 1]
    assert layout.probabilities(raw)[:2].tolist() == [[0.5, 0.5], [0.5, 0.5]]
    logits = OutputLayout(OutputKind.LOGITS, 3).probabilities(np.array([[1000.0, 0.0, -1000.0]]))
    assert logits.tolist() == [[1.0, 0.0, 0.0]]  # a stable softmax, not a clipped renormalisation
