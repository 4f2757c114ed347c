"""Every kind of source: what it reads, and the one-paragraph errors bad data gets."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from gridcv.config import parse_data
from gridcv.data.sources import ArraySource, open_source
from gridcv.errors import DataError
from tests.conftest import source_of, write_arrays, write_image_folder, write_segmentation

W = "exp.yaml"


def test_arrays_read_by_pread_equals_the_memory_map(tmp_path):
    write_arrays(tmp_path, n=50, shape=(3, 2))
    source = source_of({"kind": "arrays", "x": "data/x.npy", "y": "data/y.npy"}, tmp_path, W)
    assert isinstance(source, ArraySource)
    x = np.load(tmp_path / "data" / "x.npy")
    wanted = np.array([7, 3, 4, 5, 49, 0, 7])  # unsorted, a run (3, 4, 5), a repeat
    got, y = source.read(wanted)
    assert got.dtype == np.float32 and np.array_equal(got, x[wanted])
    assert np.array_equal(y, np.load(tmp_path / "data" / "y.npy")[wanted])


def test_arrays_are_read_as_float32_by_default_and_float16_on_request(tmp_path):
    (tmp_path / "data").mkdir()
    np.save(tmp_path / "data" / "x.npy", np.arange(12, dtype=np.float64).reshape(6, 2))
    np.save(tmp_path / "data" / "y.npy", np.arange(6) % 2)
    spec = {"kind": "arrays", "x": "data/x.npy", "y": "data/y.npy"}
    assert source_of(spec, tmp_path, W).read(np.arange(2))[0].dtype == np.float32
    half = source_of({**spec, "dtype": "float16"}, tmp_path, W).read(np.array([5]))[0]
    assert half.dtype == np.float16 and half.tolist() == [[10.0, 11.0]]


def test_image_folder_classes_pixels_and_order(tmp_path):
    images = write_image_folder(tmp_path / "images")
    source = source_of({"kind": "images", "root": "images", "color_mode": "grayscale"}, tmp_path, W)
    assert (source.n_samples, source.input_shape, source.n_classes, source.task) == (30, (8, 8, 1), 3, "classification")
    assert source.labels().tolist() == [0] * 10 + [1] * 10 + [2] * 10
    x, y = source.read(np.array([12, 0, 29]))
    assert x.dtype == np.float32 and y.tolist() == [1, 0, 2]
    np.testing.assert_allclose(x[..., 0], images[[12, 0, 29]] / 255, atol=1e-7)
    assert 0.0 <= x.min() and x.max() <= 1.0


def test_image_folder_class_names_fix_the_order_and_image_size_resizes(tmp_path):
    write_image_folder(tmp_path / "images")
    spec = {"kind": "images", "root": "images", "class_names": ["c", "a", "b"], "image_size": [4, 6]}
    source = source_of(spec, tmp_path, W)
    assert source.input_shape == (4, 6, 3)  # rgb by default
    assert source.files(np.array([0]))[0].endswith("images/c/002.png")
    assert source.read(np.array([0, 10]))[1].tolist() == [0, 1]


def test_csv_manifest_with_string_labels_groups_and_npy_files(tmp_path):
    (tmp_path / "samples").mkdir()
    lines = ["path,diagnosis,patient"]
    for i in range(8):
        np.save(tmp_path / "samples" / f"{i}.npy", np.full((2, 3), i, dtype=np.float64))
        lines.append(f"{i}.npy,{'sick' if i % 2 else 'well'},p{i // 4}")
    (tmp_path / "list.csv").write_text("\n".join(lines) + "\n")
    spec = {
        "kind": "csv",
        "path": "list.csv",
        "root": "samples",
        "x_column": "path",
        "y_column": "diagnosis",
        "group_column": "patient",
        "class_names": ["well", "sick"],
    }
    source = source_of(spec, tmp_path, W)
    assert source.labels().tolist() == [0, 1] * 4 and source.groups().tolist() == ["p0"] * 4 + ["p1"] * 4
    x, y = source.read(np.array([5, 2]))
    assert x.dtype == np.float32 and x.shape == (2, 2, 3) and x[:, 0, 0].tolist() == [5.0, 2.0]
    assert y.tolist() == [1, 0]


def test_csv_manifest_of_images_relative_to_its_folder_with_integer_labels(tmp_path):
    write_image_folder(tmp_path / "images", n=6)
    rows = [f"images/{'abc'[i % 3]}/{i:03d}.png,{i % 3}" for i in range(6)]
    (tmp_path / "m.csv").write_text("file,label\n" + "\n".join(rows) + "\n")
    source = source_of({"kind": "csv", "path": "m.csv", "color_mode": "grayscale"}, tmp_path, W)
    assert source.n_classes == 3 and source.labels().tolist() == [0, 1, 2, 0, 1, 2]
    assert source.read(np.arange(6))[0].shape == (6, 8, 8, 1)


def test_segmentation_masks_pair_with_images_by_name(tmp_path):
    write_segmentation(tmp_path)
    spec = {"kind": "images", "root": "images", "masks": "masks", "n_classes": 3, "color_mode": "grayscale"}
    source = source_of(spec, tmp_path, W)
    assert source.task == "segmentation" and source.labels().tolist() == [0] * 12
    x, masks = source.read(np.array([3]))
    assert masks.dtype == np.int32 and masks.shape == (1, 8, 8)
    expected = np.asarray(Image.open(tmp_path / "masks" / "s03.png"))
    assert np.array_equal(masks[0], expected)
    assert np.array_equal(x[0, ..., 0] > 0.5, expected == 1)


# --- bad data ----------------------------------------------------------------------------------


def test_a_corrupt_image_is_named_when_read(tmp_path):
    write_image_folder(tmp_path / "images")
    bad = tmp_path / "images" / "a" / "bad.png"
    bad.write_bytes(b"not a png")
    source = source_of({"kind": "images", "root": "images"}, tmp_path, W)
    with pytest.raises(DataError) as err:
        source.read(np.arange(11))
    assert str(err.value) == (
        f"{W}: {bad} cannot be read as an image (cannot identify image file '{bad}'). Replace or delete the "
        "file, or set data.on_bad_file: skip to leave such files out with a warning."
    )


def test_on_bad_file_skip_leaves_corrupt_files_out_with_a_warning(tmp_path):
    write_image_folder(tmp_path / "images")
    bad = tmp_path / "images" / "a" / "bad.png"
    bad.write_bytes(b"\x89PNG truncated")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        source = source_of({"kind": "images", "root": "images", "on_bad_file": "skip"}, tmp_path, W)
    assert [str(w.message) for w in caught] == [f"{W}: skipping 1 unreadable file(s) (data.on_bad_file: skip): {bad}"]
    assert source.n_samples == 30 and source.read(np.arange(30))[0].shape == (30, 8, 8, 3)


def test_an_empty_class_folder_is_an_error(tmp_path):
    write_image_folder(tmp_path / "images")
    (tmp_path / "images" / "d").mkdir()
    with pytest.raises(DataError) as err:
        source_of({"kind": "images", "root": "images"}, tmp_path, W)
    assert str(err.value) == (
        f"{W}: class folder {tmp_path / 'images' / 'd'} (class 'd') holds no images (.bmp, .gif, .jpeg, .jpg, "
        ".png). Add images, or remove the folder."
    )


def test_mismatched_image_sizes_without_image_size_are_an_error(tmp_path):
    write_image_folder(tmp_path / "images")
    odd = tmp_path / "images" / "b" / "odd.png"
    Image.fromarray(np.zeros((9, 8), np.uint8)).save(odd)
    source = source_of({"kind": "images", "root": "images", "color_mode": "grayscale"}, tmp_path, W)
    with pytest.raises(DataError) as err:
        source.read(np.arange(source.n_samples))
    assert str(err.value) == (
        f"{W}: {odd} has shape (9, 8, 1) but the first sample, {tmp_path / 'images' / 'a' / '000.png'}, has "
        "(8, 8, 1); every sample must have the same shape. Set data.image_size: [height, width] to resize "
        "images on reading."
    )


def test_a_missing_label_column_is_an_error(tmp_path):
    (tmp_path / "m.csv").write_text("file,class\nx.npy,1\n")
    with pytest.raises(DataError) as err:
        source_of({"kind": "csv", "path": "m.csv"}, tmp_path, W)
    assert str(err.value) == (
        f"{W}: key 'data.y_column' is 'label', but {tmp_path / 'm.csv'} has no such column (its columns are "
        "file, class). Fix data.y_column or the CSV header."
    )


def test_a_missing_mask_is_an_error(tmp_path):
    write_segmentation(tmp_path)
    (tmp_path / "masks" / "s03.png").unlink()
    with pytest.raises(DataError) as err:
        source_of({"kind": "images", "root": "images", "masks": "masks", "n_classes": 3}, tmp_path, W)
    assert str(err.value) == (
        f"{W}: image {tmp_path / 'images' / 's03.png'} has no mask in {tmp_path / 'masks'} (expected a file named "
        "s03.png or s03.npy). Add the mask or remove the image."
    )


def test_a_file_missing_from_the_manifest_is_an_error(tmp_path):
    (tmp_path / "m.csv").write_text("file,label\ngone.png,0\n")
    with pytest.raises(DataError) as err:
        source_of({"kind": "csv", "path": "m.csv"}, tmp_path, W)
    assert str(err.value) == (
        f"{W}: row 2 of {tmp_path / 'm.csv'} names file {tmp_path / 'gone.png'}, which does not exist (paths "
        f"are relative to {tmp_path}). Fix the row or data.root."
    )


def test_an_unknown_label_is_an_error(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(2))
    (tmp_path / "m.csv").write_text("file,label\na.npy,cat\n")
    with pytest.raises(DataError) as err:
        source_of({"kind": "csv", "path": "m.csv", "class_names": ["dog"]}, tmp_path, W)
    assert str(err.value) == (
        f"{W}: row 2 of {tmp_path / 'm.csv'} has label 'cat', which is not in data.class_names (dog). "
        "Add it there or fix the row."
    )


def test_numeric_labels_named_in_class_names_are_classes(tmp_path):
    """Refusing numbers that are not integers is for guessed classes: declared names are taken as written."""
    for i in range(4):
        np.save(tmp_path / f"{i}.npy", np.zeros(2))
    (tmp_path / "m.csv").write_text("file,label\n0.npy,0.5\n1.npy,1.5\n2.npy,0.5\n3.npy,1.5\n")
    source = source_of({"kind": "csv", "path": "m.csv", "class_names": ["1.5", "0.5"]}, tmp_path, W)
    assert source.labels().tolist() == [1, 0, 1, 0] and source.task == "classification"
    # Without class_names, numbers that are not all whole are a regression target ...
    guessed = source_of({"kind": "csv", "path": "m.csv"}, tmp_path, W)
    assert (guessed.task, guessed.labels().tolist(), guessed.n_classes) == ("regression", [0.5, 1.5, 0.5, 1.5], 1)
    # ... and refused as classes when the task is declared so.
    with pytest.raises(DataError, match=r"holds 2 distinct numbers that are not all integers \(e.g. '0.5' in row 2\)"):
        open_source(parse_data({"kind": "csv", "path": "m.csv"}), tmp_path, W, task="classification")


# --- segmentation: a label per image to stratify by ---------------------------------------------


def write_dominant_masks(folder, n: int = 12) -> list[int]:
    """images/<i>.png and masks/<i>.png whose dominant class is i % 3 (two thirds of the pixels)."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    dominant = [i % 3 for i in range(n)]
    for i, c in enumerate(dominant):
        mask = np.full((6, 6), c, dtype=np.uint8)
        mask[:2] = (c + 1) % 3
        Image.fromarray(mask).save(folder / "masks" / f"s{i:02d}.png")
        Image.fromarray((mask * 80).astype(np.uint8)).save(folder / "images" / f"s{i:02d}.png")
    return dominant


def test_segmentation_images_are_labelled_by_their_masks_dominant_class_or_a_csv_column(tmp_path):
    dominant = write_dominant_masks(tmp_path)
    source = source_of({"kind": "images", "root": "images", "masks": "masks", "n_classes": 3}, tmp_path, W)
    assert source.labels().tolist() == dominant
    rows = ["file,mask,label"] + [f"images/s{i:02d}.png,masks/s{i:02d}.png,{'ab'[i % 2]}" for i in range(12)]
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    section = {"kind": "csv", "path": "m.csv", "x_column": "file", "mask_column": "mask", "n_classes": 3}
    assert source_of(section, tmp_path, W).labels().tolist() == [0, 1] * 6  # the column, not the masks


def test_stratified_splits_of_segmentation_keep_each_dominant_class_in_every_fold(tmp_path):
    from gridcv.config import ExperimentSpec
    from gridcv.plan import make_plan
    from gridcv.runner.checks import labels_to_split

    write_dominant_masks(tmp_path)
    data = {"kind": "images", "root": "images", "masks": "masks", "n_classes": 3}
    source = source_of(data, tmp_path, W)

    def spec(splitter: str) -> ExperimentSpec:
        cv = {"splitter": splitter, "n_splits": 4, "shuffle": True, "random_state": 0}
        return ExperimentSpec(name="s", data=data, model="m.py:b", grid={"a": [1]}, cv=cv, scoring="mean_iou")

    plan = make_plan(spec("StratifiedKFold"), labels_to_split(spec("StratifiedKFold"), source), None, W)
    assert [sorted(source.labels()[test].tolist()) for _, test in plan.splits] == [[0, 1, 2]] * 4
    # KFold reads no mask to plan: every image is label 0, as before images had labels
    fresh = source_of(data, tmp_path, W)
    assert labels_to_split(spec("KFold"), fresh).tolist() == [0] * 12 and fresh._labels is None


def test_on_bad_file_skip_reads_headers_not_pixels(tmp_path, monkeypatch):
    from PIL import ImageFile

    write_image_folder(tmp_path / "images")
    noise = np.random.default_rng(0).integers(0, 255, size=(8, 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    Image.fromarray(noise).resize((8, 8)).save(tmp_path / "images" / "a" / "photo.jpg", quality=95)
    Image.fromarray(noise).save(tmp_path / "images" / "c" / "big.jpg", quality=95)
    png = (tmp_path / "images" / "a" / "000.png").read_bytes()
    (tmp_path / "images" / "b" / "cut.png").write_bytes(png[: len(png) - 20])  # header intact, data cut
    jpeg = (tmp_path / "images" / "c" / "big.jpg").read_bytes()  # 64x64: the scan data is most of the file
    (tmp_path / "images" / "c" / "big.jpg").unlink()
    (tmp_path / "images" / "c" / "cut.jpg").write_bytes(jpeg[: len(jpeg) * 2 // 3])

    def no_decoding(self: object) -> None:
        raise AssertionError("a pixel was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        source = source_of({"kind": "images", "root": "images", "on_bad_file": "skip"}, tmp_path, W)
    monkeypatch.undo()
    # The PNG's checksums find it; the JPEG's header is intact, so it is kept ...
    cut_png, cut_jpeg = tmp_path / "images" / "b" / "cut.png", tmp_path / "images" / "c" / "cut.jpg"
    assert [str(w.message) for w in caught] == [
        f"{W}: skipping 1 unreadable file(s) (data.on_bad_file: skip): {cut_png}"
    ]
    assert source.n_samples == 32
    # ... and named when its batch is read, with what the header check cannot see.
    where = int(np.flatnonzero([f.endswith("cut.jpg") for f in source.files(np.arange(32))])[0])
    with pytest.raises(DataError) as err:
        source.read(np.array([where]))
    assert str(err.value) == (
        f"{W}: {cut_jpeg} cannot be read as an image (image file is truncated (51 bytes not processed)). "
        "data.on_bad_file: skip checks each file's header (and a PNG's checksums) when the data is opened, not its "
        "pixel data, so this file was found only now. Replace or delete it, then run again: finished folds are kept."
    )
