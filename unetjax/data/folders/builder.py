"""The folder TFDS builders (image_folder, isbi2012_em, dsb2018_nuclei): 2D (or 3D) image
files and their masks, found and validated by `prepare`, stored as array_record."""

import dataclasses

import tensorflow_datasets as tfds

from unetjax.data import summary
from unetjax.data.folders import examples
from unetjax.data.local_builder import LocalBuilder, build_metadata, features
from unetjax.data.samples import Sample


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


class _FolderBuilder(LocalBuilder):
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
