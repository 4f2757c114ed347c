"""The ``data:`` section of the experiment file: one schema per ``kind``.

The validated section is what crosses to the worker (pydantic models are
frozen and pickle), so readers take every value and default from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, TypeAdapter


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AugmentSpec(_Section):
    """``data.augment:``: random transforms of training batches (never of validation ones).

    Draws are a pure function of (fold seed, epoch, batch index). Masks of a
    segmentation source get the same geometric transforms as their images.
    """

    horizontal_flip: bool = False
    vertical_flip: bool = False
    rotation: float = Field(default=0.0, ge=0, le=180, description="max degrees, either way")
    shift: float = Field(default=0.0, ge=0, lt=1, description="max fraction of height/width")
    zoom: float = Field(default=0.0, ge=0, lt=1, description="scale drawn from [1 - zoom, 1 + zoom]")
    brightness: float = Field(default=0.0, ge=0, le=1, description="added value from [-b, b]")
    contrast: float = Field(default=0.0, ge=0, lt=1, description="factor from [1 - c, 1 + c] about the mean")

    @property
    def geometric(self) -> bool:
        """Whether pixels move (so masks must move with them)."""
        return bool(self.rotation or self.shift or self.zoom)

    @property
    def is_identity(self) -> bool:
        """Whether it changes nothing."""
        return self == AugmentSpec()


class _Prepared(_Section):
    prepare: str | None = Field(
        default=None,
        description="'file.py:function' called with the experiment folder when the data is missing",
    )


class DataSection(_Prepared):
    """Keys every kind of gridcv's own data shares: how batches are made, not where samples live."""

    dtype: Literal["float32", "float16"] = "float32"
    balance: Literal["none", "oversample", "class_weight"] = "none"
    augment: AugmentSpec | None = None
    feed: Literal["tf_data", "py_dataset"] = "tf_data"
    workers: PositiveInt = 1
    use_multiprocessing: bool = False


class ArraysData(DataSection):
    """``data: kind: arrays``: two ``.npy`` files opened as memory maps."""

    kind: Literal["arrays"]
    x: str
    y: str
    groups: str | None = None


class _FileData(DataSection):
    """Keys of sources that are one file per sample (images or ``.npy``)."""

    image_size: tuple[PositiveInt, PositiveInt] | None = None
    color_mode: Literal["grayscale", "rgb"] = "rgb"
    class_names: list[str] | None = None
    n_classes: PositiveInt | None = Field(default=None, description="segmentation: number of mask classes")
    on_bad_file: Literal["error", "skip"] = "error"
    # Decode every sample once into a memory-mapped array reused by every fold (gridcv.data.cache).
    cache: bool = False
    cache_dir: str | None = Field(default=None, description="where the cache goes (default: <results>/cache)")


class ImagesData(_FileData):
    """``data: kind: images``: one sub-folder of images per class, or images and a ``masks`` folder."""

    kind: Literal["images"]
    root: str
    masks: str | None = None


class CsvData(_FileData):
    """``data: kind: csv``: a manifest listing each sample's file, label and group."""

    kind: Literal["csv"]
    path: str
    root: str | None = Field(default=None, description="folder the file column is relative to (default: the CSV's)")
    x_column: str = "file"
    y_column: str | list[str] | None = Field(
        default="label", description="label column; several: 0/1 labels (multilabel) or numeric targets"
    )
    group_column: str | None = None
    mask_column: str | None = None


class PythonData(_Prepared):
    """``data: kind: python``: the user's own pipeline, made per fold by a factory in the worker.

    ``factory`` is called as ``make(indices, batch_size, seed, training)`` (plus
    ``epoch=`` and ``params=`` when it names them) and returns a ``keras.utils.PyDataset``
    (a ``Sequence``), a ``tf.data.Dataset`` or a generator of batches. ``labels`` and
    ``groups`` give the parent what it plans with: a function (no arguments) or a ``.npy`` file.
    """

    kind: Literal["python"]
    factory: str = Field(description="'file.py:function' making the batches of the given samples")
    labels: str = Field(description="'file.py:function' returning every sample's target, or a .npy file")
    groups: str | None = Field(default=None, description="the same for groups (GroupKFold and friends)")


DataSpec = ArraysData | ImagesData | CsvData | PythonData
_DATA = TypeAdapter(Annotated[DataSpec, Field(discriminator="kind")])
SEGMENTATION_SCORERS = ("mean_iou", "pixel_accuracy")


def parse_data(section: Mapping[str, Any]) -> DataSpec:
    """Validates a ``data:`` section on its own (the experiment file validates it as part of the whole)."""
    return _DATA.validate_python(dict(section))


def is_segmentation(data: DataSpec) -> bool:
    """Whether the data pairs images with per-pixel masks instead of class labels."""
    return bool(getattr(data, "masks", None) or getattr(data, "mask_column", None))


def is_python(data: DataSpec) -> bool:
    """Whether the data is the user's own pipeline (``kind: python``)."""
    return isinstance(data, PythonData)


def augmentation_of(data: DataSpec, params: Mapping[str, Any]) -> AugmentSpec | None:
    """The augmentation of one candidate: grid key ``augment`` overrides ``data.augment``.

    ``augment: false`` turns it off, ``true`` uses ``data.augment`` as declared,
    a mapping replaces it, so "augmentation on/off" can be a grid dimension.
    None when nothing would change.
    """
    choice = params.get("augment", True)
    if choice is False or isinstance(data, PythonData):
        return None
    chosen = AugmentSpec.model_validate(choice) if isinstance(choice, Mapping) else data.augment
    return None if chosen is None or chosen.is_identity else chosen


def balance_of(data: DataSpec, params: Mapping[str, Any]) -> str:
    """The class balancing of one candidate: grid key ``balance`` overrides ``data.balance``."""
    return str(params.get("balance", getattr(data, "balance", "none")))
