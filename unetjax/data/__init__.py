"""Datasets (TFDS builders) and input pipelines (grain) for segmentation training."""

from unetjax.data.config import default_config
from unetjax.data.datasets import Dataset, DatasetInfo, prepare
from unetjax.data.errors import DataError
from unetjax.data.pipeline import eval_batches, train_iterator

__all__ = [
    "DataError",
    "Dataset",
    "DatasetInfo",
    "default_config",
    "eval_batches",
    "prepare",
    "train_iterator",
]
