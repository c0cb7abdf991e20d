"""Datasets (TFDS builders) and input pipelines (grain) for segmentation training.

Importing it registers the dataset kinds (`kinds`): image folders, volumes, synthetic cells.
"""

from unetjax.data import folders, synthetic, volumes  # noqa: F401  (registers the kinds)
from unetjax.data.config import default_config
from unetjax.data.datasets import Dataset, DatasetInfo, prepare
from unetjax.data.errors import DataError
from unetjax.data.normalization import normalize
from unetjax.data.pipeline import eval_batches, eval_examples, train_iterator
from unetjax.data.resize import resize_image, resize_mask

__all__ = [
    "DataError",
    "Dataset",
    "DatasetInfo",
    "default_config",
    "eval_batches",
    "eval_examples",
    "normalize",
    "prepare",
    "resize_image",
    "resize_mask",
    "train_iterator",
]
