"""The kinds of dataset `prepare` builds itself, and what each one brings.

Each kind's package registers its datasets when `unetjax.data` is imported (`folders`,
`volumes`, `synthetic`, in their `__init__`): the TFDS builder, the function that makes its
builder config from `config.data`, the pipeline's transforms and the facts `config.check` and
`prepare` need about it. Any other `data.name` is a TFDS catalog dataset (`catalog`), described
by a kind with the defaults below. No other module branches on a dataset's name: they ask its
kind (`get(data_config.name)`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import ml_collections

from unetjax.data import transforms

# config.data -> (the built config's name, a function making the config: called only when that
# name is not built yet, since it may read every file).
BuilderConfig = Callable[[ml_collections.ConfigDict], tuple[str, Callable[[], Any]]]
# A prepared dataset (`datasets.Dataset`, which imports this module) -> its grain transform (a
# RandomMap for training, a Map for evaluation).
TransformFactory = Callable[[Any], Any]


@dataclasses.dataclass(frozen=True)
class DatasetKind:
    """One `data.name` and what unetjax knows about it.

    Attributes:
      name: the `data.name`, also the TFDS builder's name (the built folder's name).
      builder: the TFDS builder class; None for a TFDS catalog dataset.
      builder_config: see `BuilderConfig`; None for a catalog dataset.
      train_transform, eval_transform: the pipeline's transforms (`train_iterator`,
        `eval_batches`); by default the image transforms of `transforms`.
      binary: always binary masks, so data.ignore_index does not apply.
      image_files: reads the user's image and mask files: data.mask_threshold and data.resize
        apply to it.
      mask_layouts: honours data.mask_layout ("single" class-index masks or "per_class" folders).
      dataset_statistics: per-channel statistics are computed at preparation
        (data.normalize="zscore_dataset" needs them).
      normalised_when_built: why data.normalize must stay "unit" (the volumes are stored
        normalised), or None where data.normalize applies.
      pads_small_images: its training patches pad images smaller than data.patch_size (nnU-Net),
        so preparation does not require every training image to hold a patch.
      nonfinite_fill: data.nonfinite_fill (replacing NaN / inf voxels) applies to it.
      takes_volumes: a run trained on it predicts NIfTI volumes with their geometry, and keeps
        the training grid and intensities (`volumes.preprocessing`, preprocessing.json).
      resize_hint: what to do instead of data.resize, where data.resize does not apply.
    """

    name: str
    builder: type | None = None
    builder_config: BuilderConfig | None = None
    train_transform: TransformFactory = transforms.train_transform
    eval_transform: TransformFactory = transforms.eval_transform
    binary: bool = False
    image_files: bool = False
    mask_layouts: bool = False
    dataset_statistics: bool = False
    normalised_when_built: str | None = None
    pads_small_images: bool = False
    nonfinite_fill: bool = False
    takes_volumes: bool = False
    resize_hint: str = "resize when preparing it"

    @property
    def catalog(self) -> bool:
        """Whether this is a TFDS catalog dataset (prepared by TFDS, not built here)."""
        return self.builder is None


_KINDS: dict[str, DatasetKind] = {}


def register(kind: DatasetKind) -> None:
    """Adds a kind (its package's `__init__` calls this); a name is registered once."""
    if kind.name in _KINDS:
        raise ValueError(f"dataset kind {kind.name!r} is registered twice")
    _KINDS[kind.name] = kind


def get(name: str) -> DatasetKind:
    """The registered kind of `name`, or a catalog dataset's kind for any other name."""
    return _KINDS.get(name) or DatasetKind(name=name)


def names() -> tuple[str, ...]:
    """The registered names, in registration order."""
    return tuple(_KINDS)


def padded_patch(data_config) -> tuple[int, ...] | None:
    """The patch that training pads smaller images to, for a kind that pads them
    (`pads_small_images`); prediction pads them alike (`tiling.pad_with_minimum`). Else None."""
    if not data_config or not get(data_config.get("name")).pads_small_images:
        return None
    return tuple(int(p) for p in data_config["patch_size"])
