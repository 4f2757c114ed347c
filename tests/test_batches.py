"""The training generator: order, augmentation and balancing are pure functions of (seed, epoch, batch)."""

from __future__ import annotations

import numpy as np
import pytest

from gridcv.config import AugmentSpec, parse_data
from gridcv.training.batches import EpochCursor, IndexBatches, fold_batches
from tests.conftest import source_of, write_arrays, write_image_folder, write_segmentation

FLIPS_AND_MORE = {"horizontal_flip": True, "vertical_flip": True, "rotation": 20, "zoom": 0.1, "brightness": 0.2}


@pytest.fixture
def images(tmp_path):
    write_image_folder(tmp_path / "images", n=30)
    return source_of({"kind": "images", "root": "images", "color_mode": "grayscale"}, tmp_path)


@pytest.fixture
def arrays(tmp_path):
    write_arrays(tmp_path, n=40)
    return source_of({"kind": "arrays", "x": "data/x.npy", "y": "data/y.npy"}, tmp_path)


def batches_of(source, **options):
    return IndexBatches(source, np.arange(source.n_samples), 8, shuffle=True, seed=3, **options)


def test_epoch_order_is_a_function_of_seed_and_epoch(arrays):
    a, b = batches_of(arrays), batches_of(arrays)
    assert np.array_equal(a.load(4, 2)[0], b.load(4, 2)[0])
    assert not np.array_equal(a.epoch_indices(4), a.epoch_indices(5))
    assert sorted(a.epoch_indices(5)) == list(range(40))


def test_tf_data_feed_is_the_batches_of_each_epoch_in_order(arrays):
    batches = batches_of(arrays)
    fed = [tuple(t.numpy() for t in batch) for batch in batches.feed(first_epoch=1, epochs=3)]
    assert len(fed) == 2 * len(batches) == 10
    for step, (x, y) in enumerate(fed):
        want_x, want_y = batches.load(1 + step // 5, step % 5)
        assert np.array_equal(x, want_x) and np.array_equal(y, want_y)


def test_py_dataset_feed_follows_the_epoch_cursor(arrays):
    batches = batches_of(arrays, feed="py_dataset")
    assert batches.feed(0, 3) is batches
    EpochCursor(batches).on_epoch_begin(2)
    assert np.array_equal(batches[1][0], batches.load(2, 1)[0])


def test_same_seed_same_augmented_batch(images):
    aug = AugmentSpec(**FLIPS_AND_MORE)
    one, two = batches_of(images, augment=aug), batches_of(images, augment=aug)
    x1, x2 = one.load(2, 1)[0], two.load(2, 1)[0]
    assert np.array_equal(x1, x2)
    assert not np.array_equal(x1, batches_of(images).load(2, 1)[0])  # it did augment
    assert not np.array_equal(x1, one.load(3, 1)[0])  # another epoch, other draws
    assert x1.dtype == np.float32 and 0.0 <= x1.min() and x1.max() <= 1.0  # brightness clipped to [0, 1]


def test_validation_batches_are_never_augmented(images):
    spec = parse_data({"kind": "images", "root": "images", "augment": FLIPS_AND_MORE, "balance": "oversample"})
    train_idx, test_idx = np.arange(0, 30, 2), np.arange(1, 30, 2)
    train, val = fold_batches(images, spec, {}, train_idx, test_idx, 4, seed=1, shuffle=True)
    assert train.augment == AugmentSpec(**FLIPS_AND_MORE) and train.balance == "oversample"
    assert val.augment is None and val.balance == "none" and not val.shuffle
    for b in range(len(val)):
        x, y = val.load(b, b)
        want_x, want_y = images.read(test_idx[b * 4 : (b + 1) * 4])
        assert np.array_equal(x, want_x) and np.array_equal(y, want_y)


def test_grid_keys_switch_augmentation_and_balance_per_fold(images):
    spec = parse_data({"kind": "images", "root": "images", "augment": FLIPS_AND_MORE, "balance": "none"})
    idx = np.arange(30)
    off, _ = fold_batches(images, spec, {"augment": False, "balance": "class_weight"}, idx, idx, 4, 0, True)
    assert off.augment is None and off.balance == "class_weight"
    own, _ = fold_batches(images, spec, {"augment": {"vertical_flip": True}}, idx, idx, 4, 0, True)
    assert own.augment == AugmentSpec(vertical_flip=True)


def test_oversampling_tops_every_class_up_to_the_largest_each_epoch(arrays):
    idx = np.r_[np.flatnonzero(arrays.labels() == 0), np.flatnonzero(arrays.labels() == 1)[:3]]  # 14 vs 3
    batches = IndexBatches(arrays, idx, 5, shuffle=True, seed=0, balance="oversample")
    assert len(batches) == 6  # 2 classes x 14 samples, in batches of 5
    for epoch in (0, 1):
        order = batches.epoch_indices(epoch)
        assert np.bincount(arrays.labels()[order]).tolist() == [14, 14]
        assert set(order) == set(idx)
    assert not np.array_equal(batches.epoch_indices(0), batches.epoch_indices(1))
    again = IndexBatches(arrays, idx, 5, shuffle=True, seed=0, balance="oversample")
    assert np.array_equal(again.epoch_indices(1), batches.epoch_indices(1))


def test_class_weight_batches_carry_balanced_sample_weights(arrays):
    idx = np.r_[np.flatnonzero(arrays.labels() == 0)[:6], np.flatnonzero(arrays.labels() == 2)[:2]]
    batches = IndexBatches(arrays, idx, 8, balance="class_weight")
    _, y, w = batches.load(0, 0)
    assert dict(zip(y.tolist(), w.tolist(), strict=True)) == {0: pytest.approx(8 / 12), 2: pytest.approx(2.0)}


def test_masks_are_transformed_exactly_like_their_images(tmp_path):
    write_segmentation(tmp_path)
    spec = {"kind": "images", "root": "images", "masks": "masks", "n_classes": 3, "color_mode": "grayscale"}
    source = source_of(spec, tmp_path)
    flips = IndexBatches(
        source, np.arange(12), 12, seed=5, augment=AugmentSpec(horizontal_flip=True, vertical_flip=True)
    )
    x, masks = flips.load(0, 0)
    raw_masks = source.read(np.arange(12))[1]
    assert not np.array_equal(masks, raw_masks)
    # The images were drawn from their masks: the pairing must survive the transform exactly.
    assert np.array_equal(np.round(x[..., 0] * 255), np.where(masks == 1, 220, np.where(masks == 2, 120, 20)))
    warped = IndexBatches(source, np.arange(12), 12, seed=5, augment=AugmentSpec(rotation=30, shift=0.2, zoom=0.2))
    x, masks = warped.load(0, 0)
    assert masks.dtype == np.int32 and set(np.unique(masks)) <= {0, 1, 2}

    def agreement(m: np.ndarray) -> float:  # images are interpolated, masks are not: edges differ
        return float(np.mean(np.abs(x[..., 0] * 255 - np.where(m == 1, 220, np.where(m == 2, 120, 20))) < 50))

    assert agreement(masks) > 0.75 and agreement(raw_masks) < 0.6
