"""`prepare`: builds a dataset once (validated first), then describes it for the model."""

import contextlib
import dataclasses
import io
import logging
import pathlib
import shutil
import tempfile
from collections.abc import Iterator

import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from unetjax.data import catalog, kinds, samples, summary
from unetjax.data import config as config_lib
from unetjax.data.errors import DataError

logger = logging.getLogger(__name__)

ACTIVATIONS = {"binary": "sigmoid", "multiclass": "softmax", "multilabel": "sigmoid"}


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What the model and the training loop need to know about a prepared dataset.

    Attributes:
      num_classes: model output channels: 1 for binary, K for multiclass / multilabel.
      split_sizes: examples per split ("train", "validation", "test" where present).
      class_names: per-class mask folders of multi-label data, else None.
      uniform_size: per split, whether all its images have one size (False where unknown):
        `eval_batches` needs it (or data.eval_patch_size), `eval_examples` does not.
      ignore_index: the multiclass mask value excluded from loss and metrics, or None.
    """

    name: str
    task: str
    num_classes: int
    in_channels: int
    output_activation: str
    spatial_dims: int
    split_sizes: dict[str, int]
    class_names: tuple[str, ...] | None = None
    uniform_size: dict[str, bool] = dataclasses.field(default_factory=dict)
    ignore_index: int | None = None


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
      summary: the JSON-able dataset summary (`summary.build`): samples and image sizes per
        split, channels, dtype, classes with pixel fractions, foreground fraction, declared
        and inferred task, resize, and "normalization" ({"kind", "mean", "std"}: what
        `normalization.normalize(image, kind, stats)` takes as kind and stats).
      split_stems: {"train": [...], "validation": [...], "test": [...]} file stems per split
        for the folder datasets, None for synthetic and catalog datasets.
    """

    info: DatasetInfo
    config: ml_collections.ConfigDict
    reader: tfds.core.DatasetBuilder
    summary: dict = dataclasses.field(default_factory=dict)
    split_stems: dict[str, list[str]] | None = None
    _sources: dict = dataclasses.field(default_factory=dict, repr=False)

    def summary_text(self) -> str:
        """The summary as the short block `prepare` logs."""
        return summary.text(self.summary)

    @property
    def normalization(self) -> dict:
        """{"kind", "mean", "std"}: the normalisation the pipelines apply (see `summary`)."""
        return self.summary["normalization"]

    def scored_at_full_size(self, split: str) -> bool:
        """Whether `split` is scored one whole image at a time (`eval_examples`), as `predict`
        predicts it: its images differ in size (`varied_sizes`), or they are volumes that no
        data.eval_patch_size crops (predicted padded as training pads them)."""
        if self.varied_sizes(split):
            return True
        return self.config.eval_patch_size is None and self.kind.pads_small_images

    def varied_sizes(self, split: str) -> bool:
        """Whether `split`'s images differ in size and no data.eval_patch_size crops them to one,
        so `eval_batches` cannot stack them."""
        return self.config.eval_patch_size is None and self.info.uniform_size.get(split) is False

    def split_name(self, split: str) -> str:
        """Our split names ("train", "validation", "test") as the dataset spells them."""
        if not self.kind.catalog or split not in SPLIT_KEYS:
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

    @property
    def kind(self) -> kinds.DatasetKind:
        """What unetjax knows about this `data.name` (builder, transforms, rules)."""
        return kinds.get(self.config.name)


def data_dir(data_config: ml_collections.ConfigDict) -> str:
    return data_config.data_dir or str(tfds.core.constants.DATA_DIR)


def prepare(data_config: ml_collections.ConfigDict, *, progress: bool = True) -> Dataset:
    """Builds the dataset if needed and opens it; raises DataError for bad input before
    training starts. Logs the dataset summary (once: callers do not log it again).

    progress: a bar with an ETA while examples are written (only on a terminal).
    """
    config_lib.check(data_config)
    kind = kinds.get(data_config.name)
    if kind.catalog:
        reader = catalog.builder(data_config, data_dir(data_config))
        info = _catalog_info(data_config, reader)
        feature = reader.info.features[data_config.image_key]
        dtype = str(np.dtype(feature.np_dtype))
        dataset_summary = summary.catalog_summary(info, data_config, dtype)
        split_stems = None
    else:
        reader = _build_or_load(data_config, kind, progress=progress)
        metadata = dict(reader.info.metadata)
        split_sizes = {name: split.num_examples for name, split in reader.info.splits.items()}
        sizes = metadata["statistics"]["sizes"]
        info = DatasetInfo(
            name=data_config.name,
            task=metadata["task"],
            num_classes=metadata["num_classes"],
            in_channels=metadata["in_channels"],
            output_activation=ACTIVATIONS[metadata["task"]],
            spatial_dims=_label_dims(reader.info.features),
            split_sizes=split_sizes,
            class_names=tuple(metadata["class_names"]) if metadata["class_names"] else None,
            uniform_size={split: sizes[split]["uniform"] for split in split_sizes},
            ignore_index=metadata.get("ignore_index"),
        )
        if not kind.pads_small_images:
            samples.check_patch_fits(
                metadata["min_shape"], data_config.patch_size, data_config.name
            )
        dataset_summary = summary.build(
            metadata,
            name=f"{data_config.name} ({reader.builder_config.name})",
            data_config=data_config,
            split_sizes=split_sizes,
        )
        _check_unit_range(dataset_summary, data_config, kind)
        split_stems = metadata.get("split_stems")
    _check_against_config(info, data_config)
    dataset = Dataset(
        info=info,
        config=data_config,
        reader=reader,
        summary=dataset_summary,
        split_stems=split_stems,
    )
    logger.info("%s", dataset.summary_text())
    return dataset


def _label_dims(features) -> int:
    """Spatial dims of the labels: instance ids (2D builders) or the class mask (decathlon)."""
    return len(features["instances" if "instances" in features else "mask"].shape)


def _check_unit_range(
    dataset_summary: dict, data_config: ml_collections.ConfigDict, kind: kinds.DatasetKind
) -> None:
    """Float images are used as they are under "unit": they must be in [0, 1].

    A kind stored normalised already (volumes: nnU-Net's CT / per-case z-score scheme,
    docs/medical.md) takes "unit" (as stored) only.
    """
    if kind.normalised_when_built:
        if data_config.normalize != "unit":
            raise DataError(
                f"data.normalize={data_config.normalize!r}: {kind.normalised_when_built}; "
                "leave data.normalize='unit'"
            )
        return
    if data_config.normalize != "unit" or dataset_summary["dtype"] != "float32":
        return
    low, high = min(dataset_summary["intensity_min"]), max(dataset_summary["intensity_max"])
    if low < 0 or high > 1:
        raise DataError(
            f"{dataset_summary['name']}: images with values {low:g}..{high:g} (stored as "
            "float32); data.normalize='unit' expects uint8 or uint16 images, or floats in "
            "[0, 1]; set data.normalize='zscore_image' or 'zscore_dataset'"
        )


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
    shape = tuple(reader.info.features[data_config.image_key].shape)
    split_sizes = {name: split.num_examples for name, split in reader.info.splits.items()}
    return DatasetInfo(
        name=data_config.name,
        task=data_config.task,
        num_classes=data_config.num_classes,
        in_channels=catalog.in_channels(reader, data_config.image_key),
        output_activation=ACTIVATIONS[data_config.task],
        spatial_dims=len(shape) - 1,
        split_sizes=split_sizes,
        uniform_size={split: None not in shape for split in split_sizes},
        ignore_index=data_config.ignore_index,
    )


def _build_or_load(
    data_config: ml_collections.ConfigDict, kind: kinds.DatasetKind, *, progress: bool = True
) -> tfds.core.DatasetBuilder:
    builder_class = kind.builder
    config_name, make_config = kind.builder_config(data_config)
    dataset_dir = pathlib.Path(data_dir(data_config)) / builder_class.name
    version_dir = dataset_dir / config_name / str(builder_class.VERSION)
    if not (version_dir / "dataset_info.json").exists():
        builder_config = make_config(show_progress=progress)
        with _quiet_tfds():
            builder = builder_class(
                data_dir=data_dir(data_config), config=builder_config, file_format="array_record"
            )
        builder.show_progress = progress
        counts = builder.split_counts()
        source = f"from {data_config.manual_dir} " if data_config.manual_dir else ""
        logger.info(
            "preparing %s %s(%d %ss: %s) into %s",
            builder.name,
            source,
            sum(counts.values()),
            builder.EXAMPLE_UNIT,
            ", ".join(f"{split} {count}" for split, count in counts.items()),
            version_dir,
        )
        _build_cleanly(builder, dataset_dir / config_name)
    return tfds.builder_from_directory(version_dir)


@contextlib.contextmanager
def _quiet_tfds() -> Iterator[None]:
    """Silences what TFDS says about our local builders: "Using custom data configuration"
    (an absl warning), "Downloading and preparing dataset Unknown size" and "... downloaded
    and prepared" (printed to stdout), and its own progress bars (no ETA: it knows no total).
    `prepare` logs one line of its own and the summary instead."""
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)
    tfds.disable_progress_bar()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        absl_logger.setLevel(level)


def _build_cleanly(builder: tfds.core.DatasetBuilder, config_dir: pathlib.Path) -> None:
    """download_and_prepare, removing whatever it created if it fails."""
    created = [p for p in (config_dir.parent, config_dir) if not p.exists()]
    try:
        with tempfile.TemporaryDirectory() as download_dir, _quiet_tfds():
            builder.download_and_prepare(download_dir=download_dir)
    except BaseException:
        if created:
            shutil.rmtree(created[0], ignore_errors=True)
        raise
