"""TFDS builders. Features are `tfds.features.Tensor`, so array_record files are written and
read without TensorFlow."""

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from unetjax.data import examples, synthetic
from unetjax.data.folder import Sample

VERSION = tfds.core.Version("1.0.0")


def features(
    spatial_dims: int, in_channels: int, mask_channels: int | None
) -> tfds.features.FeaturesDict:
    """image float32 (*spatial, C) in [0, 1]; mask uint8 (*spatial[, K]); instances int32."""
    spatial = (None,) * spatial_dims
    mask_shape = spatial if mask_channels is None else (*spatial, mask_channels)
    return tfds.features.FeaturesDict(
        {
            "id": tfds.features.Tensor(shape=(), dtype=np.str_),
            "image": tfds.features.Tensor(
                shape=(*spatial, in_channels), dtype=np.float32, encoding="zlib"
            ),
            "mask": tfds.features.Tensor(shape=mask_shape, dtype=np.uint8, encoding="zlib"),
            "instances": tfds.features.Tensor(shape=spatial, dtype=np.int32, encoding="zlib"),
        }
    )


def summary_metadata(
    task: str, num_classes: int, in_channels: int, min_shape: dict, class_names=None
) -> dict:
    """What `prepare` reads back from a built dataset (saved to metadata.json)."""
    return {
        "task": task,
        "num_classes": num_classes,
        "in_channels": in_channels,
        "min_shape": min_shape,
        "class_names": list(class_names) if class_names else None,
    }


class _LocalBuilder(tfds.core.GeneratorBasedBuilder):
    """A builder that downloads nothing.

    No code path means no checksums file to look for, which also keeps TFDS from importing
    `importlib_resources` (used on that path, but only a dependency for Python < 3.9).
    """

    VERSION = VERSION
    code_path = None


@dataclasses.dataclass(eq=False)
class SyntheticConfig(tfds.core.BuilderConfig):
    spatial_dims: int = 2
    image_size: int = 128
    counts: tuple[tuple[str, int], ...] = ()
    seed: int = 0


class SyntheticCells(_LocalBuilder):
    """Nuclei-like images with binary masks and instance labels (see `synthetic`)."""

    def _info(self) -> tfds.core.DatasetInfo:
        config: SyntheticConfig = self.builder_config
        size = [config.image_size] * config.spatial_dims
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=features(config.spatial_dims, 1, None),
            metadata=tfds.core.MetadataDict(
                summary_metadata("binary", 1, 1, {split: size for split, _ in config.counts})
            ),
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        return {
            split: self._generate_examples(index, count)
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


@dataclasses.dataclass(eq=False)
class FolderConfig(tfds.core.BuilderConfig):
    """Validated samples per split and how to turn them into examples."""

    splits: dict[str, list[Sample]] = dataclasses.field(default_factory=dict)
    spec: examples.LabelSpec | None = None
    in_channels: int = 1
    min_shape: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    class_names: tuple[str, ...] | None = None


class _FolderBuilder(_LocalBuilder):
    """Examples read from local files that `prepare` found and validated."""

    def _info(self) -> tfds.core.DatasetInfo:
        config: FolderConfig = self.builder_config
        spec = config.spec
        mask_channels = spec.num_classes if spec.task == "multilabel" else None
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.__doc__,
            features=features(spec.spatial_dims, config.in_channels, mask_channels),
            metadata=tfds.core.MetadataDict(
                summary_metadata(
                    spec.task,
                    spec.num_classes,
                    config.in_channels,
                    config.min_shape,
                    config.class_names,
                )
            ),
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        return {
            split: self._generate_examples(samples)
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
