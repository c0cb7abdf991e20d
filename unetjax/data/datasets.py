"""`prepare`: builds a dataset once (validated first), then describes it for the model."""

import dataclasses
import hashlib
import json
import logging
import pathlib
import shutil
import tempfile

import ml_collections
import tensorflow_datasets as tfds

from unetjax.data import (
    builders,
    catalog,
    decathlon_builder,
    decathlon_setup,
    examples,
    folder,
    validation,
)
from unetjax.data.errors import DataError

logger = logging.getLogger(__name__)

BUILDERS = {
    "synthetic_cells": builders.SyntheticCells,
    "image_folder": builders.ImageFolder,
    "isbi2012_em": builders.Isbi2012Em,
    "dsb2018_nuclei": builders.Dsb2018Nuclei,
    "decathlon": decathlon_builder.Decathlon,
}
ACTIVATIONS = {"binary": "sigmoid", "multiclass": "softmax", "multilabel": "sigmoid"}


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What the model and the training loop need to know about a prepared dataset.

    Attributes:
      num_classes: model output channels: 1 for binary, K for multiclass / multilabel.
      split_sizes: examples per split ("train", "validation", "test" where present).
      class_names: per-class mask folders of multi-label data, else None.
    """

    name: str
    task: str
    num_classes: int
    in_channels: int
    output_activation: str
    spatial_dims: int
    split_sizes: dict[str, int]
    class_names: tuple[str, ...] | None = None


SPLIT_KEYS = {"train": "train_split", "validation": "val_split", "test": "test_split"}


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A prepared dataset, opened once and handed to the pipelines.

    Opening validates the data (for a folder: reads every file once, when it is built) and
    opens the array_record readers; every training epoch and evaluation pass then reuses them.

    Attributes:
      info: what the model and the training loop need to know.
      config: the `config.data` section it was prepared from (the pipelines read its options).
      reader: a read-only TFDS builder over the array_record files.
    """

    info: DatasetInfo
    config: ml_collections.ConfigDict
    reader: tfds.core.DatasetBuilder
    _sources: dict = dataclasses.field(default_factory=dict, repr=False)

    def split_name(self, split: str) -> str:
        """Our split names ("train", "validation", "test") as the dataset spells them."""
        if self.config.name in BUILDERS or split not in SPLIT_KEYS:
            return split
        return self.config[SPLIT_KEYS[split]]

    def source(self, split: str):
        """The split's random-access data source (opened on first use, then reused)."""
        name = self.split_name(split)
        if name not in self.reader.info.splits:
            raise DataError(
                f"{self.info.name} has no split {name!r}; it has {sorted(self.reader.info.splits)}"
            )
        if name not in self._sources:
            self._sources[name] = self.reader.as_data_source(split=name)
        return self._sources[name]


def data_dir(data_config: ml_collections.ConfigDict) -> str:
    return data_config.data_dir or str(tfds.core.constants.DATA_DIR)


def prepare(data_config: ml_collections.ConfigDict) -> Dataset:
    """Builds the dataset if needed and opens it; raises DataError for bad input before
    training starts."""
    _check_config(data_config)
    if data_config.name not in BUILDERS:
        reader = catalog.builder(data_config, data_dir(data_config))
        info = _catalog_info(data_config, reader)
    else:
        reader = _build_or_load(data_config)
        metadata, features = reader.info.metadata, reader.info.features
        info = DatasetInfo(
            name=data_config.name,
            task=metadata["task"],
            num_classes=metadata["num_classes"],
            in_channels=metadata["in_channels"],
            output_activation=ACTIVATIONS[metadata["task"]],
            spatial_dims=len(features["instances" if "instances" in features else "mask"].shape),
            split_sizes={name: split.num_examples for name, split in reader.info.splits.items()},
            class_names=tuple(metadata["class_names"]) if metadata["class_names"] else None,
        )
        if data_config.name != "decathlon":  # its patch sampling pads small volumes (nnU-Net)
            validation.check_patch_fits(
                metadata["min_shape"], data_config.patch_size, data_config.name
            )
    _check_against_config(info, data_config)
    return Dataset(info=info, config=data_config, reader=reader)


def _check_config(data_config: ml_collections.ConfigDict) -> None:
    dims = data_config.spatial_dims
    for field in ("patch_size", "eval_patch_size"):
        size = data_config[field]
        if size is not None and (len(size) != dims or min(size) < 1):
            raise DataError(f"data.{field}={size}; expected {dims} positive sizes (spatial_dims)")
    for field in data_config:
        if field.endswith("_prob") and not 0 <= data_config[field] <= 1:
            raise DataError(f"data.{field}={data_config[field]}; expected a probability in [0, 1]")
    if data_config.task not in (None, *validation.TASKS):
        raise DataError(f"data.task={data_config.task!r}; expected one of {validation.TASKS}")


def _check_against_config(info: DatasetInfo, data_config: ml_collections.ConfigDict) -> None:
    for field in ("task", "num_classes", "in_channels", "spatial_dims"):
        declared = data_config[field]
        if declared is not None and declared != getattr(info, field):
            raise DataError(
                f"data.{field}={declared!r} but {info.name} has {field}={getattr(info, field)!r}"
            )


def _catalog_info(data_config, reader) -> DatasetInfo:
    if data_config.task is None or data_config.num_classes is None:
        raise DataError(
            f"{data_config.name}: set data.task and data.num_classes for a catalog dataset"
        )
    return DatasetInfo(
        name=data_config.name,
        task=data_config.task,
        num_classes=data_config.num_classes,
        in_channels=catalog.in_channels(reader, data_config.image_key),
        output_activation=ACTIVATIONS[data_config.task],
        spatial_dims=len(reader.info.features[data_config.image_key].shape) - 1,
        split_sizes={name: split.num_examples for name, split in reader.info.splits.items()},
    )


def _build_or_load(data_config: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
    builder_class = BUILDERS[data_config.name]
    config_name, make_config = _builder_config(data_config)
    dataset_dir = pathlib.Path(data_dir(data_config)) / builder_class.name
    version_dir = dataset_dir / config_name / str(builders.VERSION)
    if not (version_dir / "dataset_info.json").exists():
        builder = builder_class(
            data_dir=data_dir(data_config), config=make_config(), file_format="array_record"
        )
        _build_cleanly(builder, dataset_dir / config_name)
    return tfds.builder_from_directory(version_dir)


def _build_cleanly(builder: tfds.core.DatasetBuilder, config_dir: pathlib.Path) -> None:
    """download_and_prepare, removing whatever it created if it fails."""
    created = [p for p in (config_dir.parent, config_dir) if not p.exists()]
    logger.info("preparing %s in %s", builder.name, config_dir)
    try:
        with tempfile.TemporaryDirectory() as download_dir:
            builder.download_and_prepare(download_dir=download_dir)
    except BaseException:
        if created:
            shutil.rmtree(created[0], ignore_errors=True)
        raise


def _builder_config(data_config: ml_collections.ConfigDict):
    """The builder config's name (a fingerprint of the inputs) and a function making it.

    Making a folder config validates every file, so it only runs when the name is not built.
    """
    if data_config.name == "synthetic_cells":
        counts = (
            ("train", data_config.num_train),
            ("validation", data_config.num_val),
            ("test", data_config.num_test),
        )
        name = (
            f"{data_config.spatial_dims}d_{data_config.image_size}px_"
            f"{'_'.join(str(c) for _, c in counts)}_seed{data_config.dataset_seed}"
        )
        return name, lambda: builders.SyntheticConfig(
            name=name,
            version=builders.VERSION,
            spatial_dims=data_config.spatial_dims,
            image_size=data_config.image_size,
            counts=counts,
            seed=data_config.dataset_seed,
        )
    if data_config.manual_dir is None:
        raise DataError(f"{data_config.name} reads local files: set data.manual_dir")
    root = pathlib.Path(data_config.manual_dir).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"{root}: no such folder (data.manual_dir)")
    if data_config.name == "decathlon":
        return decathlon_setup.builder_config(data_config, root)
    options = {
        key: data_config[key]
        for key in (
            "spatial_dims",
            "image_subdir",
            "mask_subdir",
            "mask_layout",
            "class_names",
            "color_mode",
            "val_fraction",
            "test_fraction",
            "dataset_seed",
            "train_stems",
            "val_stems",
            "test_stems",
            "isbi_foreground",
            "task",
            "num_classes",
        )
    }
    files = sorted(
        (str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
    )
    digest = hashlib.sha1(json.dumps([str(root), options, files]).encode()).hexdigest()[:12]
    name = f"{root.name}_{digest}"
    return name, lambda: _folder_config(data_config, root, name)


def _folder_config(data_config, root: pathlib.Path, name: str) -> builders.FolderConfig:
    spec, samples, class_names = _find_samples(data_config, root)
    stem_lists = None
    if data_config.train_stems is not None:
        stem_lists = {
            "train": data_config.train_stems,
            "validation": data_config.val_stems or (),
            "test": data_config.test_stems or (),
        }
    splits = folder.split_samples(
        samples,
        val_fraction=data_config.val_fraction,
        test_fraction=data_config.test_fraction,
        seed=data_config.dataset_seed,
        stem_lists=stem_lists,
    )
    summary = validation.validate(
        splits,
        spec=spec,
        declared_task=data_config.task,
        declared_num_classes=data_config.num_classes,
        declared_in_channels=data_config.in_channels,
        patch_size=data_config.patch_size,
    )
    return builders.FolderConfig(
        name=name,
        version=builders.VERSION,
        splits=splits,
        spec=dataclasses.replace(spec, task=summary.task, num_classes=summary.num_classes),
        in_channels=summary.in_channels,
        min_shape=summary.min_shape,
        class_names=class_names,
    )


def _find_samples(data_config, root: pathlib.Path):
    """The label spec (task possibly still open), the samples and the class names."""

    def spec(mask_mode: str, task: str | None, num_classes: int | None, dims: int = 2):
        return examples.LabelSpec(
            spatial_dims=dims,
            color_mode=data_config.color_mode,
            mask_mode=mask_mode,
            task=task,
            num_classes=num_classes,
            isbi_foreground=data_config.isbi_foreground,
        )

    if data_config.name == "isbi2012_em":
        if data_config.isbi_foreground not in ("membrane", "interior"):
            raise DataError(
                f"isbi_foreground={data_config.isbi_foreground!r}; expected "
                "'membrane' or 'interior'"
            )
        samples = folder.scan_pairs(root / "images", [root / "masks"])
        return spec("isbi", "binary", 1), samples, None
    if data_config.name == "dsb2018_nuclei":
        return spec("instances", "binary", 1), folder.scan_dsb2018(root), None
    image_dir, mask_dir = root / data_config.image_subdir, root / data_config.mask_subdir
    dims = data_config.spatial_dims
    if data_config.mask_layout == "per_class":
        names = folder.class_folders(mask_dir, data_config.class_names)
        samples = folder.scan_pairs(image_dir, [mask_dir / n for n in names])
        return spec("per_class", "multilabel", len(names), dims), samples, tuple(names)
    if data_config.mask_layout != "single":
        raise DataError(
            f"mask_layout={data_config.mask_layout!r}; expected 'single' or 'per_class'"
        )
    samples = folder.scan_pairs(image_dir, [mask_dir])
    return spec("single", data_config.task, data_config.num_classes, dims), samples, None
