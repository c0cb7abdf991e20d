"""What a model trained on the `decathlon` dataset needs to see a new volume as it saw training
cases: the target spacing, the intensity normalisation (with the training set's CT statistics),
the channel and class names and the interpolation orders.

The built dataset's metadata holds them; `save_for_run` copies them into the run directory as
preprocessing.json (train.py calls it once, beside config.json), so predict and exported models
work without the dataset. `load_for_run` reads that file, and for a run written before it existed
falls back to the prepared dataset's metadata (with a warning: that is the dataset as it is now).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib

import ml_collections

from unetjax.data import datasets, kinds
from unetjax.data.volumes import intensity

logger = logging.getLogger(__name__)

FILE = "preprocessing.json"


@dataclasses.dataclass(frozen=True)
class VolumePreprocessing:
    """The training grid and intensities of a decathlon-trained model.

    Attributes:
      target_spacing: mm, (D, H, W) = (superior, anterior, right) after RAS reorientation.
      normalisation: per-channel schemes and the training set's `ct` statistics.
      channel_names: the input channels in order, e.g. ("CT",) or ("T2", "ADC").
      class_names: output classes in label order, background first.
      image_order: spline order images are resampled with (3 cubic, 1 linear).
      label_order: how labels go back to a file's grid (1: one-hot linear + argmax, 0: nearest).
      nonfinite_fill: what non-finite voxels were replaced by in training (data.nonfinite_fill),
        so predict replaces them alike; None: they are an error.
    """

    target_spacing: tuple[float, float, float]
    normalisation: intensity.VolumeNormalisation
    channel_names: tuple[str, ...]
    class_names: tuple[str, ...]
    image_order: int = 3
    label_order: int = 1
    nonfinite_fill: float | None = None

    def to_dict(self) -> dict:
        """JSON-serialisable."""
        return {
            "target_spacing": list(self.target_spacing),
            "normalisation": self.normalisation.to_dict(),
            "channel_names": list(self.channel_names),
            "class_names": list(self.class_names),
            "image_order": self.image_order,
            "label_order": self.label_order,
            "nonfinite_fill": self.nonfinite_fill,
        }

    @classmethod
    def from_dict(cls, values: dict) -> VolumePreprocessing:
        """From `to_dict`, or from the decathlon dataset's metadata (the same keys and more)."""
        return cls(
            target_spacing=tuple(float(s) for s in values["target_spacing"]),
            normalisation=intensity.VolumeNormalisation.from_dict(values["normalisation"]),
            channel_names=tuple(values["channel_names"]),
            class_names=tuple(values["class_names"]),
            image_order=int(values.get("image_order", 3)),
            label_order=int(values.get("label_order", 1)),
            nonfinite_fill=values.get("nonfinite_fill"),
        )


def takes_volumes(data_config: ml_collections.ConfigDict | dict | None) -> bool:
    """Whether a run's `config.data` names a dataset of volumes (so it predicts NIfTI files
    with their geometry and keeps preprocessing.json)."""
    return data_config is not None and kinds.get(data_config.get("name")).takes_volumes


def save_for_run(workdir: str | os.PathLike, dataset: datasets.Dataset) -> pathlib.Path | None:
    """Writes preprocessing.json into `workdir` for a dataset of volumes (atomically);
    other datasets have nothing to store and write nothing. Returns the path written."""
    if not dataset.kind.takes_volumes:
        return None
    preprocessing = VolumePreprocessing.from_dict(dict(dataset.reader.info.metadata))
    path = pathlib.Path(workdir) / FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(FILE + ".tmp")
    temporary.write_text(json.dumps(preprocessing.to_dict(), indent=2))
    os.replace(temporary, path)
    return path


def load_for_run(
    model_dir: str | os.PathLike, config: ml_collections.ConfigDict
) -> VolumePreprocessing:
    """The preprocessing a run (or export) in `model_dir` was trained with."""
    path = pathlib.Path(model_dir) / FILE
    if path.is_file():
        return VolumePreprocessing.from_dict(json.loads(path.read_text()))
    data_config = config.get("data")
    if not takes_volumes(data_config):
        raise ValueError(
            f"{model_dir}: no {FILE} and the run was not trained on the decathlon dataset; "
            "expected a run trained on NIfTI volumes (data.name='decathlon')"
        )
    logger.warning(
        "%s: no %s (train.py writes it); using the spacing and intensity statistics of the "
        "dataset in %s as it is now",
        model_dir,
        FILE,
        data_config.get("manual_dir"),
    )
    dataset = datasets.prepare(data_config)
    return VolumePreprocessing.from_dict(dict(dataset.reader.info.metadata))
