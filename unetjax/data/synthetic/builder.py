"""The `synthetic_cells` TFDS builder: procedural nuclei-like images (`cells`), no download."""

import dataclasses

import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from unetjax.data import summary
from unetjax.data.local_builder import VERSION, LocalBuilder, build_metadata, features
from unetjax.data.synthetic import cells


@dataclasses.dataclass(eq=False, repr=False)
class SyntheticConfig(tfds.core.BuilderConfig):
    spatial_dims: int = 2
    image_size: int = 128
    counts: tuple[tuple[str, int], ...] = ()
    seed: int = 0

    def __repr__(self) -> str:
        return f"SyntheticConfig({self.name})"


class SyntheticCells(LocalBuilder):
    """Nuclei-like images with binary masks and instance labels (see `cells`)."""

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
            image, instances = cells.generate(rng, config.image_size, config.spatial_dims)
            mask = (instances > 0).astype(np.uint8)
            yield i, {"id": f"{i:05d}", "image": image, "mask": mask, "instances": instances}


def builder_config(data_config: ml_collections.ConfigDict):
    """The builder config's name (its size, counts and seed) and a function making it."""
    counts = (
        ("train", data_config.num_train),
        ("validation", data_config.num_val),
        ("test", data_config.num_test),
    )
    name = (
        f"{data_config.spatial_dims}d_{data_config.image_size}px_"
        f"{'_'.join(str(c) for _, c in counts)}_seed{data_config.dataset_seed}"
    )
    return name, lambda show_progress=True: SyntheticConfig(
        name=name,
        version=VERSION,
        spatial_dims=data_config.spatial_dims,
        image_size=data_config.image_size,
        counts=counts,
        seed=data_config.dataset_seed,
    )
