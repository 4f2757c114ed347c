"""The ``data:`` section: one schema per kind, and the errors that point at the fix."""

from __future__ import annotations

import pytest
import yaml

from gridcv.config import CsvData, ImagesData, load_experiment
from gridcv.errors import ConfigError
from tests.conftest import base_config

SEG = {"kind": "images", "root": "images", "masks": "masks"}
TAIL = " See experiments/digits.yaml for a valid file."


def error_of(tmp_path, **sections) -> str:
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump(base_config(**sections)))
    with pytest.raises(ConfigError) as err:
        load_experiment(path)
    return str(err.value).replace(f"{path}: ", "")


def test_each_kind_validates_to_its_own_model(tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump(base_config(data={"kind": "images", "root": "im", "image_size": [32, 32]})))
    data = load_experiment(path).spec.data
    assert isinstance(data, ImagesData) and data.image_size == (32, 32) and data.dtype == "float32"
    path.write_text(yaml.safe_dump(base_config(data={"kind": "csv", "path": "m.csv", "group_column": "patient"})))
    assert isinstance(load_experiment(path).spec.data, CsvData)


def test_an_unknown_key_gets_did_you_mean_from_the_kind_in_use(tmp_path):
    assert error_of(tmp_path, data={"kind": "images", "root": "im", "colour_mode": "rgb"}) == (
        "unknown key 'colour_mode' in 'data' (did you mean 'color_mode'?); valid keys there are prepare, dtype, "
        "balance, augment, feed, workers, use_multiprocessing, image_size, color_mode, class_names, n_classes, "
        "on_bad_file, cache, cache_dir, kind, root, masks." + TAIL
    )


def test_an_unknown_or_missing_kind(tmp_path):
    assert error_of(tmp_path, data={"kind": "parquet"}) == (
        "key 'data.kind' is 'parquet' but must be one of 'arrays', 'images', 'csv', 'python'." + TAIL
    )
    assert error_of(tmp_path, data={"x": "a.npy"}) == (
        "required key 'data.kind' is missing; add it (one of 'arrays', 'images', 'csv', 'python')." + TAIL
    )


def test_augment_keys_are_checked(tmp_path):
    assert error_of(tmp_path, data={"kind": "arrays", "x": "x", "y": "y", "augment": {"rotate": 5}}) == (
        "unknown key 'rotate' in 'data.augment' (did you mean 'rotation'?); valid keys there are "
        "horizontal_flip, vertical_flip, rotation, shift, zoom, brightness, contrast." + TAIL
    )


def test_grid_keys_augment_and_balance_are_checked(tmp_path):
    assert error_of(tmp_path, grid={"augment": [True, {"zoom": 2}]}) == (
        "key 'grid.augment' overrides data.augment and must hold true (data.augment as declared), false (no "
        "augmentation) or a mapping of augment keys (horizontal_flip, vertical_flip, rotation, shift, zoom, "
        "brightness, contrast); {'zoom': 2} is none of those (Input should be less than 1)."
    )
    assert error_of(tmp_path, grid={"balance": ["none", "undersample"]}) == (
        "key 'grid.balance' overrides data.balance and must hold values from 'none', 'oversample', "
        "'class_weight', got 'undersample'."
    )


def test_segmentation_needs_n_classes_and_pixel_scorers(tmp_path):
    assert error_of(tmp_path, data=SEG, scoring="mean_iou") == (
        "key 'data.n_classes' is missing; with data.masks set, the data is a segmentation task and masks hold "
        "class ids 0 .. n_classes-1, so give their number (e.g. n_classes: 3)."
    )
    assert error_of(tmp_path, data={**SEG, "n_classes": 3}) == (
        "key 'scoring' names 'accuracy', but the data is a segmentation task (per-pixel masks), which is "
        "scored with 'mean_iou' or 'pixel_accuracy'. Set scoring to one or both of them."
    )
    assert error_of(tmp_path, scoring=["accuracy", "pixel_accuracy"]) == (
        "key 'scoring' names 'pixel_accuracy', which scores per-pixel masks, but the data has one class per "
        "sample. Set data.masks (or data.mask_column) for segmentation, or use a classification scorer such "
        "as 'accuracy'."
    )
    assert error_of(tmp_path, data={**SEG, "n_classes": 3}, scoring="mean_iou", grid={"balance": ["oversample"]}) == (
        "key 'data.balance' (or grid key 'balance') asks for class balancing, which works on one class per "
        "sample; with data.masks set, labels are per-pixel masks. Use balance: none (or weight classes in the "
        "model's loss)."
    )


def test_kind_python_takes_a_factory_and_labels_not_gridcvs_batch_options(tmp_path):
    python = {"kind": "python", "factory": "p.py:make", "labels": "p.py:labels"}
    assert error_of(tmp_path, data={**python, "augment": {"rotation": 5}}) == (
        "unknown key 'augment' in 'data'; valid keys there are prepare, kind, factory, labels, groups." + TAIL
    )
    assert error_of(tmp_path, data=python, grid={"augment": [True, False]}) == (
        "grid key 'augment' overrides data.augment of gridcv's own batches, but data: kind: python makes its batches "
        "with data.factory. Remove the key, or take a grid key of your own in the factory (it gets the candidate's "
        "parameters as params= when it names that parameter)."
    )
    assert error_of(tmp_path, data={**python, "factory": "p.py"}) == (
        "key 'data.factory' is 'p.py'; write it as 'path/to/file.py:function' (relative to the experiment file) or "
        "'package.module:function'."
    )
