"""Datasets (TFDS builders) and input pipelines (grain) for segmentation training."""

from unetjax.data.config import default_config
from unetjax.data.datasets import DatasetInfo, prepare
from unetjax.data.errors import DataError
from unetjax.data.pipeline import eval_batches, train_iterator

__all__ = [
    "DataError",
    "DatasetInfo",
    "default_config",
    "eval_batches",
    "prepare",
    "train_iterator",
]
