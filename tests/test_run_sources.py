"""End to end (inline) from each kind of data: images, CSV manifests with groups, segmentation."""

from __future__ import annotations

import numpy as np
import pytest

import gridcv
from gridcv.store import FoldStatus
from tests.conftest import (
    SEEN_BUILDER,
    SEGMENTATION_BUILDER,
    row_hashes,
    seen_by_build,
    source_of,
    write_image_folder,
    write_segmentation,
)

pytestmark = pytest.mark.slow


def test_image_folder_with_augmentation_as_a_grid_key(make_experiment, tmp_path):
    write_image_folder(tmp_path / "images", n=30)
    data = {"kind": "images", "root": "images", "color_mode": "grayscale", "augment": {"horizontal_flip": True}}
    path = make_experiment(
        builder=SEEN_BUILDER, data=data, grid={"augment": [False, True]}, fit={"epochs": 2, "batch_size": 8}
    )
    summary = gridcv.run_experiment(path)
    assert summary.counts[FoldStatus.DONE] == 4
    results = gridcv.load_results(path)
    assert results["param_augment"].tolist() == [False, True]
    assert np.isfinite(results["mean_test_score"]).all()
    # What the model saw: every image as read (decoded, scaled), or a flipped one where augmented.
    source = source_of(data, tmp_path)
    as_read = set(row_hashes(source.read(np.arange(30))[0]))
    folds = seen_by_build(tmp_path)[1:]  # the first build is the up-front check
    assert [params["augment"] for params, _, _ in folds] == [False, False, True, True]
    for params, trained, scored in folds:
        assert len(trained) == 2 * 15 and set(scored) <= as_read  # 2 epochs of the training split; scoring as read
        unseen = [h for h in trained if h not in as_read]
        if params["augment"]:
            assert 0.25 < len(unseen) / len(trained) < 0.75  # about half were flipped (noise makes a flip new)
        else:
            assert unseen == []


def test_csv_manifest_split_by_group_with_class_weights(make_experiment, tmp_path):
    write_image_folder(tmp_path / "images", n=24)
    rows = ["file,label,patient"]
    for name in "abc":
        for k, file in enumerate(sorted((tmp_path / "images" / name).iterdir())):
            rows.append(f"images/{name}/{file.name},{name},p{k % 4}")
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    data = {"kind": "csv", "path": "manifest.csv", "group_column": "patient", "balance": "class_weight"}
    path = make_experiment(
        builder=SEEN_BUILDER,
        data=data,
        cv={"splitter": "GroupKFold", "n_splits": 2},
        grid={"units": [4]},
        scoring=["accuracy", "f1_macro"],
    )
    gridcv.run_experiment(path)
    folds = gridcv.load_folds(path)
    assert folds["status"].tolist() == ["done", "done"]
    # No patient is both trained on and scored in a fold; each is scored in exactly one fold.
    source = source_of(data, tmp_path)
    patient = dict(zip(row_hashes(source.read(np.arange(24))[0]), source.groups(), strict=True))
    scored_in = []
    for _, trained, scored in seen_by_build(tmp_path)[1:]:
        train_groups, test_groups = {patient[h] for h in trained}, {patient[h] for h in scored}
        assert train_groups and test_groups and not train_groups & test_groups, (train_groups, test_groups)
        scored_in.append(test_groups)
    assert sorted(g for groups in scored_in for g in groups) == ["p0", "p1", "p2", "p3"]


def test_segmentation_is_scored_per_pixel(make_experiment, tmp_path):
    write_segmentation(tmp_path, n=24)
    path = make_experiment(
        builder=SEGMENTATION_BUILDER,
        data={
            "kind": "images",
            "root": "images",
            "masks": "masks",
            "n_classes": 3,
            "color_mode": "grayscale",
            "augment": {"horizontal_flip": True, "rotation": 10},
        },
        cv={"splitter": "KFold", "n_splits": 2},
        grid={"units": [1]},
        fit={"epochs": 10, "batch_size": 4},
        scoring=["mean_iou", "pixel_accuracy"],
    )
    gridcv.run_experiment(path)
    results = gridcv.load_results(path)
    iou, accuracy = results["mean_test_mean_iou"].item(), results["mean_test_pixel_accuracy"].item()
    assert 0.4 < iou <= 1.0 and 0.7 < accuracy <= 1.0  # three grey levels: easy to learn per pixel
