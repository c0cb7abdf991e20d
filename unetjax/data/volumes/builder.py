"""The `decathlon` TFDS builder: an MSD / nnU-Net raw folder as array_record files, no TensorFlow.

Each labelled case is stored in RAS at the target spacing, normalised (see `intensity`):
  id           str, the case id
  image        float32 (D, H, W, C): normalised intensities, ready for the model
  mask         uint8 (D, H, W): label values as dataset.json declares them
  spacing      float32 (3,): the grid's spacing in mm, (D, H, W) = (S, A, R)
  original_shape  int32 (3,): the file's spatial shape, our layout (k, j, i)
  original_affine float64 (4, 4): the file's affine (with original_shape and spacing, what
               `medical_case.labels_to_original_grid` needs to put a prediction back)
  locations    int32 (N, 4): (class, d, h, w) foreground voxels for patch oversampling

Images are stored normalised as float32 rather than raw int16 with statistics: the per-case
z-score of MR channels needs the whole volume, which a patch reader does not have, and every
reader (training, evaluation) then sees exactly the same model inputs; the price is twice the
disk of int16 CT. The statistics are still written (intensity_stats.json) for predict, with
dataset_summary.json (spacings and sizes before and after resampling) beside the data.
"""

import dataclasses
import json
import logging
import pathlib
import zlib
from collections.abc import Sequence

import nibabel as nib
import numpy as np
import tensorflow_datasets as tfds

from unetjax import progress
from unetjax.data import local_builder, samples, summary
from unetjax.data.errors import DataError
from unetjax.data.volumes import (
    intensity,
    medical_case,
    msd_folder,
    nifti_io,
    patch_sampling,
    resample,
)

STATS_FILE = "intensity_stats.json"
SUMMARY_FILE = "dataset_summary.json"
MAX_VALUES_PER_CASE = 500_000


@dataclasses.dataclass(eq=False, repr=False)
class DecathlonConfig(tfds.core.BuilderConfig):
    """Everything the builder writes, decided (and validated) before it starts.

    Attributes:
      splits: split name -> labelled cases.
      normalisation: `intensity.VolumeNormalisation.to_dict()`, from the train split.
      summary: the dataset summary (see `summarise`).
      nonfinite_fill: the value non-finite voxels are replaced by (data.nonfinite_fill);
        None makes them an error.
    """

    splits: dict[str, list[msd_folder.Case]] = dataclasses.field(default_factory=dict)
    channel_names: tuple[str, ...] = ()
    labels: dict[str, int] = dataclasses.field(default_factory=dict)
    target_spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    normalisation: dict = dataclasses.field(default_factory=dict)
    summary: dict = dataclasses.field(default_factory=dict)
    image_order: int = 3
    label_order: int = 1
    seed: int = 0
    nonfinite_fill: float | None = None

    def __repr__(self) -> str:
        counts = {split: len(cases) for split, cases in self.splits.items()}
        return f"DecathlonConfig({self.name!r}, cases {counts}, spacing {self.target_spacing})"


def features(in_channels: int) -> tfds.features.FeaturesDict:
    spatial = (None, None, None)
    return tfds.features.FeaturesDict(
        {
            "id": tfds.features.Tensor(shape=(), dtype=np.str_),
            "image": tfds.features.Tensor(
                shape=(*spatial, in_channels), dtype=np.float32, encoding="zlib"
            ),
            "mask": tfds.features.Tensor(shape=spatial, dtype=np.uint8, encoding="zlib"),
            "spacing": tfds.features.Tensor(shape=(3,), dtype=np.float32),
            "original_shape": tfds.features.Tensor(shape=(3,), dtype=np.int32),
            "original_affine": tfds.features.Tensor(shape=(4, 4), dtype=np.float64),
            "locations": tfds.features.Tensor(shape=(None, 4), dtype=np.int32, encoding="zlib"),
        }
    )


def _case_seed(seed: int, case_id: str) -> list[int]:
    return [seed, zlib.crc32(case_id.encode())]


def compute_normalisation(
    cases: Sequence[msd_folder.Case],
    channel_names: Sequence[str],
    *,
    nonzero_only: bool = False,
    max_values_per_case: int | None = MAX_VALUES_PER_CASE,
    seed: int = 0,
    nonfinite_fill: float | None = None,
    show_progress: bool = False,
) -> intensity.VolumeNormalisation:
    """Per-channel schemes from the channel names; `ct` statistics from `cases`' foreground
    (read once per case, with a progress bar on a terminal if asked)."""
    schemes = tuple(intensity.scheme_for_channel(name) for name in channel_names)
    values: dict[int, list[np.ndarray]] = {c: [] for c, s in enumerate(schemes) if s == "ct"}
    if values:
        for case in progress.bar(
            cases, unit="volume", desc="ct statistics", enabled=show_progress, leave=False
        ):
            image = medical_case.read_case_image(
                case.images,
                case_id=case.case_id,
                channel_names=channel_names,
                nonfinite_fill=nonfinite_fill,
            ).image
            labels = nifti_io.read_nifti(pathlib.Path(case.label)).array
            rng = np.random.default_rng(_case_seed(seed, case.case_id))
            for channel, pooled in values.items():
                pooled.append(
                    intensity.foreground_values(
                        image[..., channel], labels, rng, max_values_per_case
                    )
                )
    stats = tuple(
        intensity.ct_statistics(values[c]) if s == "ct" else None for c, s in enumerate(schemes)
    )
    return intensity.VolumeNormalisation(schemes, stats, nonzero_only)


def _spread(rows: list[Sequence[float]]) -> dict:
    rows = np.asarray(rows, float)
    return {
        key: [round(float(v), 4) for v in fn(rows, axis=0)]
        for key, fn in (("min", np.min), ("median", np.median), ("max", np.max))
    }


def summarise(dataset: msd_folder.DecathlonDataset, splits: dict, spacing: Sequence[float]) -> dict:
    """Per case and overall: orientation, spacing and shape before (RAS) and after."""
    cases = []
    for split, split_cases in splits.items():
        for case in split_cases:
            header = dataset.headers[case.case_id]
            before = nifti_io.ras_spacing(header.affine)
            shape = nifti_io.ras_shape(header.shape, header.affine)
            cases.append(
                {
                    "id": case.case_id,
                    "split": split,
                    "orientation": "".join(nib.aff2axcodes(header.affine)),
                    "spacing_before": [round(s, 4) for s in before],
                    "shape_before": list(shape),
                    "shape_after": list(resample.shape_for_spacing(shape, before, spacing)),
                }
            )
    return {
        "name": dataset.name,
        "axes": "(D, H, W) in RAS: D = superior, H = anterior, W = right",
        "target_spacing": [float(s) for s in spacing],
        "spacing_before": _spread([c["spacing_before"] for c in cases]),
        "shape_before": _spread([c["shape_before"] for c in cases]),
        "shape_after": _spread([c["shape_after"] for c in cases]),
        "cases": cases,
    }


def make_config(
    root: pathlib.Path,
    *,
    name: str,
    target_spacing: Sequence[float] | None = None,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    seed: int = 0,
    case_lists: dict[str, Sequence[str]] | None = None,
    nonzero_only: bool = False,
    image_order: int = 3,
    label_order: int = 1,
    nonfinite_fill: float | None = None,
    show_progress: bool = False,
) -> DecathlonConfig:
    """Scans and checks `root`, splits the labelled cases, and computes the target spacing
    (the train split's median, nnU-Net's rule; or the one given) and the ct statistics."""
    dataset = msd_folder.scan(pathlib.Path(root))
    if len(dataset.labels) > 256:
        raise DataError(f"{root}: {len(dataset.labels)} labels; the mask is uint8 (at most 256)")
    training = [samples.Sample(c.case_id, c.images[0], (c.label,)) for c in dataset.training]
    by_id = {c.case_id: c for c in dataset.training}
    sample_splits = samples.split_samples(
        training,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        stem_lists=case_lists,
    )
    splits = {
        split: [by_id[s.stem] for s in found] for split, found in sample_splits.items() if found
    }
    train = splits.get("train") or []
    if not train:
        raise DataError(f"{root}: no training cases left after the split")
    if target_spacing is None:
        headers = [dataset.headers[c.case_id] for c in train]
        target_spacing = resample.target_spacing(
            [nifti_io.ras_spacing(h.affine) for h in headers],
            [nifti_io.ras_shape(h.shape, h.affine) for h in headers],
        )
    elif len(target_spacing) != 3 or min(target_spacing) <= 0:
        raise DataError(f"target_spacing={tuple(target_spacing)}; expected 3 positive mm values")
    normalisation = compute_normalisation(
        train,
        dataset.channel_names,
        nonzero_only=nonzero_only,
        seed=seed,
        nonfinite_fill=nonfinite_fill,
        show_progress=show_progress,
    )
    spacing = tuple(float(s) for s in target_spacing)
    logging.info("decathlon %s: target spacing %s mm", dataset.name, spacing)
    return DecathlonConfig(
        name=name,
        version=local_builder.VERSION,
        splits=splits,
        channel_names=dataset.channel_names,
        labels=dataset.labels,
        target_spacing=spacing,
        normalisation=normalisation.to_dict(),
        summary=summarise(dataset, splits, spacing),
        image_order=image_order,
        label_order=label_order,
        seed=seed,
        nonfinite_fill=nonfinite_fill,
    )


class Decathlon(local_builder.LocalBuilder):
    """Medical Segmentation Decathlon / nnU-Net format volumes, in RAS at one spacing."""

    EXAMPLE_UNIT = "volume"

    def _info(self) -> tfds.core.DatasetInfo:
        config: DecathlonConfig = self.builder_config
        class_names = sorted(config.labels, key=config.labels.get)
        min_shape = {}
        for case in config.summary["cases"]:
            shape = case["shape_after"]
            old = min_shape.get(case["split"], shape)
            min_shape[case["split"]] = [min(a, b) for a, b in zip(old, shape, strict=True)]
        metadata = local_builder.build_metadata(
            "multiclass",
            len(class_names),
            len(config.channel_names),
            min_shape,
            "float32",  # images are stored normalised (see the module docstring)
            class_names=list(class_names),
        )
        metadata.update(
            channel_names=list(config.channel_names),
            target_spacing=list(config.target_spacing),
            normalisation=config.normalisation,
            image_order=config.image_order,
            label_order=config.label_order,
            nonfinite_fill=config.nonfinite_fill,
            nonfinite_filled={},
        )
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.__doc__,
            features=features(len(config.channel_names)),
            metadata=tfds.core.MetadataDict(metadata),
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        config: DecathlonConfig = self.builder_config
        # self.data_dir is TFDS's temporary folder here, renamed with the data when done.
        out = pathlib.Path(self.data_dir)
        (out / STATS_FILE).write_text(json.dumps(config.normalisation, indent=2))
        (out / SUMMARY_FILE).write_text(json.dumps(config.summary, indent=2))
        accumulator = summary.StatisticsAccumulator("multiclass", len(config.labels))
        return {
            split: self._accumulating(split, self._generate_examples(cases), accumulator)
            for split, cases in config.splits.items()
        }

    def _generate_examples(self, cases: list[msd_folder.Case]):
        config: DecathlonConfig = self.builder_config
        normalisation = intensity.VolumeNormalisation.from_dict(config.normalisation)
        for case in cases:
            loaded = medical_case.read_case_image(
                case.images,
                case_id=case.case_id,
                channel_names=config.channel_names,
                nonfinite_fill=config.nonfinite_fill,
            )
            if loaded.filled:  # the metadata is written once every split is generated
                self.info.metadata["nonfinite_filled"][case.case_id] = loaded.filled
            labels = nifti_io.read_nifti(pathlib.Path(case.label)).array
            image, mask = medical_case.to_training_grid(
                loaded.image,
                labels,
                loaded.reference.affine,
                spacing=config.target_spacing,
                normalisation=normalisation,
                image_order=config.image_order,
                label_order=config.label_order,
            )
            rng = np.random.default_rng(_case_seed(config.seed, case.case_id))
            yield (
                case.case_id,
                {
                    "id": case.case_id,
                    "image": image,
                    "mask": mask.astype(np.uint8),
                    "spacing": np.asarray(config.target_spacing, np.float32),
                    "original_shape": np.asarray(loaded.reference.array.shape[:3], np.int32),
                    "original_affine": loaded.reference.affine.astype(np.float64),
                    "locations": patch_sampling.class_locations(mask, rng),
                },
            )
