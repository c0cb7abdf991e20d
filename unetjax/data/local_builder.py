"""What every kind's TFDS builder shares. Features are `tfds.features.Tensor`, so array_record
files are written and read without TensorFlow. Images are stored in their source dtype (uint8,
uint16 or float32); the pipeline converts them to float. While writing, each builder gathers the
dataset statistics (`summary.StatisticsAccumulator`) into its metadata."""

import numpy as np
import tensorflow_datasets as tfds

from unetjax import progress
from unetjax.data import summary

# 2.0.0: images in their source dtype, statistics and split membership in the metadata.
# 2.1.0: photos turned upright by their EXIF orientation tag, volumes checked for non-finite
# voxels (datasets built before were read without them, so they are built anew).
VERSION = tfds.core.Version("2.1.0")


def features(
    spatial_dims: int, in_channels: int, mask_channels: int | None, image_dtype: str
) -> tfds.features.FeaturesDict:
    """image (*spatial, C) in `image_dtype`; mask uint8 (*spatial[, K]); instances int32."""
    spatial = (None,) * spatial_dims
    mask_shape = spatial if mask_channels is None else (*spatial, mask_channels)
    return tfds.features.FeaturesDict(
        {
            "id": tfds.features.Tensor(shape=(), dtype=np.str_),
            "image": tfds.features.Tensor(
                shape=(*spatial, in_channels), dtype=np.dtype(image_dtype), encoding="zlib"
            ),
            "mask": tfds.features.Tensor(shape=mask_shape, dtype=np.uint8, encoding="zlib"),
            "instances": tfds.features.Tensor(shape=spatial, dtype=np.int32, encoding="zlib"),
        }
    )


def build_metadata(
    task: str,
    num_classes: int,
    in_channels: int,
    min_shape: dict,
    image_dtype: str,
    **extra,
) -> dict:
    """What `prepare` reads back from a built dataset (saved to metadata.json).

    `extra`: class_names, task_rule, mask_threshold, ignore_index, resize, source_sizes,
    exif_oriented and split_stems where the builder knows them; "statistics" is added while
    examples are written.
    """
    return {
        "task": task,
        "num_classes": num_classes,
        "in_channels": in_channels,
        "min_shape": min_shape,
        "image_dtype": image_dtype,
        "class_names": None,
        "split_stems": None,
        **extra,
    }


class LocalBuilder(tfds.core.GeneratorBasedBuilder):
    """A builder that downloads nothing.

    No code path means no checksums file to look for, which also keeps TFDS from importing
    `importlib_resources` (used on that path, but only a dependency for Python < 3.9).
    """

    VERSION = VERSION
    code_path = None
    EXAMPLE_UNIT = "image"
    show_progress = True  # `datasets.prepare(..., progress=False)` turns the bars off

    def split_counts(self) -> dict[str, int]:
        """Examples per split that preparation writes."""
        return {split: len(found) for split, found in self.builder_config.splits.items()}

    def _accumulating(self, split: str, examples, accumulator: summary.StatisticsAccumulator):
        """Yields `examples`, adding each to the statistics, saved to the metadata when done
        (TFDS writes the metadata after every split is generated); a progress bar with an ETA
        on a terminal (reading hundreds of volumes takes minutes)."""
        examples = progress.bar(
            examples,
            total=self.split_counts()[split],
            unit=self.EXAMPLE_UNIT,
            desc=f"preparing {split}",
            enabled=self.show_progress,
            leave=False,
        )
        for key, example in examples:
            accumulator.add(split, example)
            yield key, example
        self.info.metadata["statistics"] = accumulator.result()
