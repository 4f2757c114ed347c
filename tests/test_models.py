"""Built-in builders on tiny inputs: shapes, freezing, local weights, and the clear errors."""

from __future__ import annotations

import numpy as np
import pytest

import gridcv
from gridcv.errors import BuilderError

keras = pytest.importorskip("keras")
from gridcv import models  # noqa: E402 (imports Keras)


def _train_one_step(model, shape, n_classes=3):
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).random((4, *shape), dtype=np.float32)
    model.fit(x, np.arange(4) % n_classes, epochs=1, verbose=0)
    return model.predict(x, verbose=0)


@pytest.mark.parametrize("shape", [(8, 8, 1), (8, 8)])
def test_small_cnn_width_depth_dropout(shape):
    model = models.small_cnn({"width": 4, "depth": 2, "dropout": 0.3, "dense_units": 8}, shape, 3)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [4, 4, 8, 8]
    assert [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)] == [0.3]
    assert _train_one_step(model, shape).shape == (4, 3)


def test_mobilenet_v3_small_frozen_base_trains_the_head_only():
    params = {"application": "MobileNetV3Small", "minimalistic": True, "alpha": 0.75, "freeze_base": True}
    model = models.application(params, (32, 32, 3), 3)
    assert len(model.trainable_weights) == 2  # the head's kernel and bias
    assert _train_one_step(model, (32, 32, 3)).shape == (4, 3)


def test_fine_tune_at_freezes_the_layers_before_it():
    params = {"application": "MobileNetV3Small", "minimalistic": True, "freeze_base": True, "fine_tune_at": 100}
    model = models.application(params, (32, 32, 3), 2)
    base = model.layers[1]
    assert not any(layer.trainable for layer in base.layers[:100])
    assert all(layer.trainable for layer in base.layers[100:])


def test_local_weights_file_is_loaded(tmp_path):
    shape = (32, 32, 3)
    source = keras.applications.MobileNetV3Small(
        include_top=False, weights=None, input_shape=shape, pooling="avg", minimalistic=True
    )
    path = tmp_path / "base.weights.h5"
    source.save_weights(path)
    model = models.application({"minimalistic": True, "weights": str(path)}, shape, 3)
    loaded = model.layers[1].get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(loaded, source.get_weights(), strict=True))


def test_missing_weights_file_and_downloads_are_clear_errors(tmp_path):
    missing = tmp_path / "nope.weights.h5"
    with pytest.raises(BuilderError) as info:
        models.application({"weights": str(missing)}, (32, 32, 3), 3)
    assert str(info.value) == (
        f"key 'grid.weights' points at {missing}, which does not exist. Give the path of a weights file saved "
        "from MobileNetV3Small(include_top=False), or null for random weights."
    )
    with pytest.raises(BuilderError, match="would be downloaded at run time"):
        models.application({"weights": "imagenet"}, (32, 32, 3), 3)
    with pytest.raises(BuilderError, match="is 'MobileNetV9'; use one of MobileNetV3Small"):
        models.application({"application": "MobileNetV9"}, (32, 32, 3), 3)


@pytest.mark.slow
def test_efficientnet_b0_builds_on_a_tiny_input():
    model = models.application({"application": "EfficientNetB0", "freeze_base": True}, (32, 32, 3), 3)
    assert model.output_shape == (None, 3)


def test_small_cnn_end_to_end_compiled_from_the_file(make_experiment, tmp_path):
    rng = np.random.default_rng(0)
    y = np.arange(48) % 3
    x = rng.normal(size=(48, 8, 8, 1)).astype(np.float32)
    x[:, 0, 0, 0] += y * 3.0
    (tmp_path / "data").mkdir(exist_ok=True)
    np.save(tmp_path / "data" / "x.npy", x)
    np.save(tmp_path / "data" / "y.npy", y)
    path = make_experiment(
        model="gridcv.models:small_cnn",
        grid={"width": [4], "learning_rate": [0.01, 0.001]},
        compile={"optimizer": "adam", "learning_rate": 0.5, "metrics": ["accuracy"]},
        # Never reduces: there only to log the learning rate each epoch ran with.
        fit={"epochs": 2, "batch_size": 16, "callbacks": [{"name": "reduce_lr_on_plateau", "patience": 100}]},
    )
    gridcv.run_experiment(path)
    folds = gridcv.load_folds(path)
    assert folds["status"].tolist() == ["done"] * 4
    assert folds["param_learning_rate"].tolist() == [0.01, 0.01, 0.001, 0.001]
    assert np.isfinite(folds["best_val_accuracy"]).all()  # the compiled metric reached the history
    from gridcv.store import ResultStore

    with ResultStore.open(path.parent / "results" / "tiny", readonly=True) as store:
        rates = [r.history["learning_rate"][0] for r in store.fold_rows()]
    assert rates == pytest.approx([0.01, 0.01, 0.001, 0.001])  # the grid key overrides compile.learning_rate
