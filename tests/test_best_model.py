"""What a refit model needs to be used: class names, input shape and preprocessing in best_model.json."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

import gridcv
from gridcv.best_model import BestModelInfo
from gridcv.data.inputs import InputFormat
from gridcv.training import models
from tests.conftest import source_of, write_image_folder

GRAY_IMAGES = {"kind": "images", "root": "images", "color_mode": "grayscale", "image_size": [6, 6]}


def test_array_source_says_it_feeds_rows_as_stored(make_experiment, tmp_path):
    make_experiment()
    assert source_of({"kind": "arrays", "x": "data/x.npy", "y": "data/y.npy"}, tmp_path).describe() == InputFormat(
        task="classification", input_shape=(4,), dtype="float32", classes=(0, 1, 2), decoding="array"
    )


def test_image_folder_says_size_color_scaling_and_class_folders(image_folder):
    described = source_of({**GRAY_IMAGES, "class_names": ["c", "a", "b"]}, image_folder.parent).describe()
    assert described == InputFormat(
        task="classification",
        input_shape=(6, 6, 1),
        dtype="float32",
        classes=("c", "a", "b"),
        decoding="image",
        image_size=(6, 6),
        color_mode="grayscale",
        rescale=1 / 255,
        value_range=(0.0, 1.0),
    )
    assert InputFormat.from_dict(json.loads(json.dumps(described.to_dict()))) == described


@pytest.mark.parametrize(
    ("labels", "declared", "classes"),
    [
        (["dog", "cat", "dog"], None, ("cat", "dog")),  # sorted names, as the labels are numbered
        (["dog", "cat", "dog"], ["dog", "cat"], ("dog", "cat")),
        (["2", "0", "1"], None, ("0", "1", "2")),  # integer labels as written
    ],
)
def test_csv_class_names_are_in_label_order(image_folder, labels, declared, classes):
    files = sorted(image_folder.rglob("*.png"))[:3]
    rows = ["file,label", *(f"{f.relative_to(image_folder)},{label}" for f, label in zip(files, labels, strict=True))]
    (image_folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    section = {"kind": "csv", "path": "images/manifest.csv", "class_names": declared}
    source = source_of(section, image_folder.parent)
    described = source.describe()
    assert described.classes == classes
    assert [described.classes[i] for i in source.labels()] == labels


def test_best_model_json_and_the_loaded_model_carry_the_inputs(make_experiment, tmp_path):
    write_image_folder(tmp_path / "images", n=18)
    path = make_experiment(data=GRAY_IMAGES, grid={"units": [4]}, refit=True, fit={"epochs": 1, "batch_size": 8})
    search = gridcv.run(path, quiet=True)
    summary = json.loads((search.folder / "best_model.json").read_text())
    assert summary["inputs"] == {
        "task": "classification",
        "input_shape": [6, 6, 1],
        "dtype": "float32",
        "classes": ["a", "b", "c"],
        "decoding": "image",
        "image_size": [6, 6],
        "color_mode": "grayscale",
        "rescale": 1 / 255,
        "value_range": [0.0, 1.0],
    }
    model = gridcv.load_best_model(search.folder)
    info = model.gridcv_info
    assert type(info) is BestModelInfo  # Keras's attribute tracking left it as it is
    assert info == gridcv.load_best_model_info(search.folder) and info.classes == ("a", "b", "c")
    # read_images prepares new files exactly as the generator prepared the training batches.
    source = source_of(GRAY_IMAGES, tmp_path)
    files = source.files(np.arange(4))
    np.testing.assert_array_equal(info.inputs.read_images(files), source.read(np.arange(4))[0])
    assert model.predict(info.inputs.read_images(files), verbose=0).shape == (4, 3)
    model.save(tmp_path / "again.keras")  # the attribute does not get in the way of saving
    assert keras.saving.load_model(tmp_path / "again.keras").output_shape == (None, 3)


def test_a_model_trained_on_arrays_refuses_image_files():
    inputs = InputFormat("classification", (4,), "float32", (0, 1), "array")
    with pytest.raises(gridcv.DataError) as info:
        inputs.read_images(["x.png"])
    assert str(info.value) == (
        "this model was trained on array inputs, not image files: give it arrays of shape (n, 4) and dtype float32."
    )


def test_application_input_scale_feeds_the_range_the_application_expects():
    params = {"application": "MobileNetV3Small", "minimalistic": True, "input_scale": 255}
    model = models.application(params, (32, 32, 3), 3)
    scaling = model.get_layer("input_scaling")
    assert (scaling.scale, scaling.offset) == (255.0, 0.0)
    x = np.random.default_rng(0).random((2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(keras.Model(model.input, scaling.output)(x), x * 255, rtol=1e-6)
    default = models.application({"application": "MobileNetV3Small", "minimalistic": True}, (32, 32, 3), 3)
    assert "input_scaling" not in [layer.name for layer in default.layers]
    tf_range = models.application(
        {**params, "application": "MobileNetV2", "input_scale": 2, "input_offset": -1}, (32, 32, 3), 3
    )
    np.testing.assert_allclose(
        keras.Model(tf_range.input, tf_range.get_layer("input_scaling").output)(x), x * 2 - 1, rtol=1e-6
    )
