"""Training patches and evaluation crops of medical volumes (the `decathlon` dataset).

Training, per example (image (D, H, W, C) normalised, mask (D, H, W), locations (N, 4)):
  1. a volume smaller than the patch along an axis is padded (centred) to it, with each
     channel's minimum, what lies outside a scan (air in CT, the dark background of MR), not 0:
     after normalisation 0 is the foreground's mean intensity (CT) or the case's mean (MR), and
     a border of it would look like tissue; labels are padded with background;
  2. the patch's first voxel from `patch_sampling.patch_origin`: with `data.foreground_prob`
     centred on a foreground voxel of a class drawn among those present, else uniform;
  3. `transforms.spatial_transform` from that voxel: random affine (rotation in the (H, W) =
     axial plane only, as nnU-Net does for anisotropic data; isotropic scaling; shift) and
     elastic deformation fused into one resampling of the whole volume (so the patch is filled
     with real neighbouring voxels), flips along every axis and 90-degree turns in (H, W);
  4. brightness, contrast, gamma and noise as `transforms.intensity_transform` draws them, but
     in the normalised units (z-scores) and without its clipping to [0, 1]: contrast keeps the
     patch's range and gamma acts on the patch rescaled to [0, 1], then back (nnU-Net's rules).
Only "image" and "mask" leave: the variable-length locations and the geometry stay behind, so
batches have fixed shapes.

Evaluation: the centre crop of `data.eval_patch_size`, padded as in step 1 where the volume is
smaller (an eval_patch_size larger than every case scores whole volumes in one shape), with the
case's spacing and id passed on for per-case metrics in mm.
"""

from collections.abc import Sequence
from typing import Any

import grain
import ml_collections
import numpy as np

from unetjax.data import transforms
from unetjax.data.volumes import patch_sampling
from unetjax.inference import tiling


def pad_to_shape(
    image: np.ndarray, mask: np.ndarray, shape: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image, mask) padded (centred) to at least `shape` per axis as step 1 of the module doc
    says, and the voxels added before each axis."""
    padded, crop = tiling.pad_with_minimum(image, shape)
    before = np.asarray([box.start for box in crop])
    if padded is image:
        return image, mask, before
    widths = [(box.start, p - box.stop) for box, p in zip(crop, padded.shape[:-1], strict=True)]
    return padded, np.pad(mask, widths), before


def normalised_intensity_transform(
    image: np.ndarray, options: transforms.AugmentOptions, rng: np.random.Generator
) -> np.ndarray:
    """Brightness (additive, in sd units), contrast, gamma and Gaussian noise, each with its
    probability, on normalised intensities of any range; float32."""
    image = image.astype(np.float32)
    if rng.random() < options.brightness_prob:
        image = image + rng.uniform(-options.brightness_delta, options.brightness_delta)
    if rng.random() < options.contrast_prob:
        low, high, mean = image.min(), image.max(), image.mean()
        image = np.clip(mean + (image - mean) * rng.uniform(*options.contrast_range), low, high)
    if rng.random() < options.gamma_prob:
        low, high = image.min(), image.max()
        span = max(float(high - low), 1e-8)
        image = low + span * ((image - low) / span) ** rng.uniform(*options.gamma_range)
    if rng.random() < options.noise_prob:
        image = image + rng.normal(0.0, options.noise_std, image.shape)
    return image.astype(np.float32)


class VolumeTrainTransform(grain.transforms.RandomMap):
    """A foreground-oversampled, augmented patch of `patch_size`; a pure function of
    (example, rng)."""

    def __init__(self, data_config: ml_collections.ConfigDict):
        self.patch = tuple(data_config.patch_size)
        self.options = transforms.AugmentOptions.from_config(data_config)
        self.foreground_prob = float(data_config.foreground_prob)

    def random_map(self, element: dict, rng: np.random.Generator) -> dict:
        image, mask, before = pad_to_shape(element["image"], element["mask"], self.patch)
        origin = patch_sampling.patch_origin(
            mask.shape,
            self.patch,
            rng,
            foreground_prob=self.foreground_prob,
            locations=element["locations"] + np.concatenate([[0], before]).astype(np.int32),
        )
        image, labels = transforms.spatial_transform(
            image,
            mask[..., None].astype(np.int32),
            self.patch,
            self.options,
            rng,
            origin=origin,
        )
        return {
            "image": normalised_intensity_transform(image, self.options, rng),
            "mask": np.ascontiguousarray(labels[..., 0], np.int32),
        }


class VolumeEvalTransform(grain.transforms.Map):
    """The centre crop of `eval_patch_size` (padded where the volume is smaller), or the whole
    volume; with the case's spacing and id."""

    def __init__(self, data_config: ml_collections.ConfigDict):
        size = data_config.eval_patch_size
        self.patch = None if size is None else tuple(size)

    def map(self, element: dict) -> dict:
        image, mask = element["image"], element["mask"]
        if self.patch is not None:
            image, mask, _ = pad_to_shape(image, mask, self.patch)
            box = tuple(
                slice((s - p) // 2, (s - p) // 2 + p)
                for s, p in zip(mask.shape, self.patch, strict=True)
            )
            image, mask = image[box], mask[box]
        out = {
            "image": np.ascontiguousarray(image, np.float32),
            "mask": np.ascontiguousarray(mask, np.int32),
        }
        for key in transforms.EVAL_PASSTHROUGH:
            out[key] = np.asarray(element[key])
        return out


def train_transform(dataset: Any) -> VolumeTrainTransform:
    """The volumes' training transform: foreground-oversampled patches."""
    return VolumeTrainTransform(dataset.config)


def eval_transform(dataset: Any) -> VolumeEvalTransform:
    """The volumes' evaluation transform: crops padded with what lies outside a scan."""
    return VolumeEvalTransform(dataset.config)
