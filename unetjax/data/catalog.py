"""TFDS catalog datasets (e.g. oxford_iiit_pet): prepared with TensorFlow, read without it."""

import importlib.util

import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from unetjax.data import kinds
from unetjax.data.errors import DataError


def builder(data_config: ml_collections.ConfigDict, data_dir: str) -> tfds.core.DatasetBuilder:
    """The catalog builder, prepared in `data_dir` as array_record if it is not yet."""
    try:
        catalog_builder = tfds.builder(
            data_config.name, data_dir=data_dir, file_format="array_record"
        )
    except tfds.core.registered.DatasetNotFoundError as error:
        raise DataError(
            f"unknown dataset {data_config.name!r}; expected {', '.join(kinds.names())} "
            "or a TFDS catalog name"
        ) from error
    if not catalog_builder.is_prepared():
        if importlib.util.find_spec("tensorflow") is None:
            raise DataError(
                f"{data_config.name} is not prepared in {data_dir}; preparing a catalog dataset "
                "needs TensorFlow (pip install 'unetjax[tensorflow]') and network access. "
                "Prepare it once with file_format='array_record'; reading needs neither."
            )
        catalog_builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=data_config.manual_dir)
        )
    for key in (data_config.image_key, data_config.mask_key):
        if key not in catalog_builder.info.features:
            raise DataError(
                f"{data_config.name} has no feature {key!r}; its features are "
                f"{sorted(catalog_builder.info.features)} (set image_key / mask_key)"
            )
    return catalog_builder


def in_channels(catalog_builder: tfds.core.DatasetBuilder, image_key: str) -> int:
    return int(catalog_builder.info.features[image_key].shape[-1])


class ToExample:
    """A catalog record as our example: the image as stored, mask uint8 class indices."""

    def __init__(self, image_key: str, mask_key: str, label_offset: int):
        self.image_key = image_key
        self.mask_key = mask_key
        self.label_offset = label_offset

    def __call__(self, record: dict) -> dict:
        image = np.asarray(record[self.image_key])
        mask = np.asarray(record[self.mask_key])
        if mask.ndim == image.ndim and mask.shape[-1] == 1:
            mask = mask[..., 0]
        return {
            "image": image,
            "mask": (mask.astype(np.int32) - self.label_offset).astype(np.uint8),
        }
