"""TFDS builders. Features are `tfds.features.Tensor`, so array_record files are written and
read without TensorFlow. Images are stored in their source dtype (uint8, uint16 or float32);
the pipeline converts them to float. While writing, each builder gathers the dataset
statistics (`summary.StatisticsAccumulator`) into its metadata."""

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from unetjax import progress
from unetjax.data import examples, summary, synthetic
from unetjax.data.folder import Sample

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


class _LocalBuilder(tfds.core.GeneratorBasedBuilder):
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


@dataclasses.dataclass(eq=False, repr=False)
class SyntheticConfig(tfds.core.BuilderConfig):
    spatial_dims: int = 2
    image_size: int = 128
    counts: tuple[tuple[str, int], ...] = ()
    seed: int = 0

    def __repr__(self) -> str:
        return f"SyntheticConfig({self.name})"


class SyntheticCells(_LocalBuilder):
    """Nuclei-like images with binary masks and instance labels (see `synthetic`)."""

    def _info(self) -> tfds.core.DatasetInfo:
        config: SyntheticConfig = self.builder_config
        size = [config.image_size] * config.spatial_dims
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=features(config.spatial_dims, 1, None, "float32"),
            metadata=tfds.core.MetadataDict(
                build_metadata(
                    "binary",
                    1,
                    1,
                    {split: size for split, _ in config.counts},
                    "float32",
                    task_rule="synthetic binary masks",
                )
            ),
        )

    def split_counts(self) -> dict[str, int]:
        return {split: count for split, count in self.builder_config.counts if count > 0}

    def _split_generators(self, dl_manager):
        del dl_manager
        accumulator = summary.StatisticsAccumulator("binary", 1)
        return {
            split: self._accumulating(split, self._generate_examples(index, count), accumulator)
            for index, (split, count) in enumerate(self.builder_config.counts)
            if count > 0
        }

    def _generate_examples(self, split_index: int, count: int):
        config: SyntheticConfig = self.builder_config
        for i in range(count):
            rng = np.random.default_rng([config.seed, split_index, i])
            image, instances = synthetic.generate(rng, config.image_size, config.spatial_dims)
            mask = (instances > 0).astype(np.uint8)
            yield i, {"id": f"{i:05d}", "image": image, "mask": mask, "instances": instances}


@dataclasses.dataclass(eq=False, repr=False)
class FolderConfig(tfds.core.BuilderConfig):
    """Validated samples per split and how to turn them into examples.

    Its repr is short: TFDS logs it ("Using custom data configuration: ..."), and the default
    dataclass repr would list every sample path.
    """

    splits: dict[str, list[Sample]] = dataclasses.field(default_factory=dict)
    spec: examples.LabelSpec | None = None
    in_channels: int = 1
    image_dtype: str = "uint8"
    min_shape: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    source_sizes: dict[str, dict] = dataclasses.field(default_factory=dict)
    class_names: tuple[str, ...] | None = None
    task_rule: str | None = None
    exif_oriented: int = 0

    def __repr__(self) -> str:
        counts = ", ".join(f"{split} {len(samples)}" for split, samples in self.splits.items())
        return f"FolderConfig({self.name}: {counts})"


class _FolderBuilder(_LocalBuilder):
    """Examples read from local files that `prepare` found and validated."""

    def _info(self) -> tfds.core.DatasetInfo:
        config: FolderConfig = self.builder_config
        spec = config.spec
        mask_channels = spec.num_classes if spec.task == "multilabel" else None
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.__doc__,
            features=features(
                spec.spatial_dims, config.in_channels, mask_channels, config.image_dtype
            ),
            metadata=tfds.core.MetadataDict(
                build_metadata(
                    spec.task,
                    spec.num_classes,
                    config.in_channels,
                    config.min_shape,
                    config.image_dtype,
                    class_names=list(config.class_names) if config.class_names else None,
                    task_rule=config.task_rule,
                    mask_threshold=spec.mask_threshold,
                    ignore_index=spec.ignore_index,
                    resize=list(spec.resize) if spec.resize is not None else None,
                    source_sizes=config.source_sizes,
                    exif_oriented=config.exif_oriented,
                    split_stems={
                        split: [sample.stem for sample in samples]
                        for split, samples in config.splits.items()
                    },
                )
            ),
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        spec = self.builder_config.spec
        accumulator = summary.StatisticsAccumulator(spec.task, spec.num_classes, spec.ignore_index)
        return {
            split: self._accumulating(split, self._generate_examples(samples), accumulator)
            for split, samples in self.builder_config.splits.items()
        }

    def _generate_examples(self, samples: list[Sample]):
        for sample in samples:
            yield sample.stem, examples.load_example(sample, self.builder_config.spec)


class ImageFolder(_FolderBuilder):
    """The user's images and masks, paired by file stem."""


class Isbi2012Em(_FolderBuilder):
    """ISBI 2012 EM membranes (Cardona et al. 2010), from a local copy."""


class Dsb2018Nuclei(_FolderBuilder):
    """2018 Data Science Bowl stage1_train nuclei, per-nucleus masks merged, instances kept."""
