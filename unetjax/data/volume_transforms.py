"""Training patches of medical volumes (the `decathlon` dataset): foreground oversampling, then
the shared spatial augmentation, then intensity augmentation for normalised intensities.

Per example (image (D, H, W, C) normalised, mask (D, H, W), locations (N, 4)):
  1. the patch's first voxel from `patch_sampling.patch_origin`: with `data.foreground_prob`
     centred on a foreground voxel of a class drawn among those present, else uniform; volumes
     smaller than the patch are padded (nnU-Net does the same);
  2. `transforms.spatial_transform` from that voxel: random affine (rotation in the (H, W) =
     axial plane only, as nnU-Net does for anisotropic data; isotropic scaling; shift) and
     elastic deformation fused into one resampling of the whole volume (so the patch is filled
     with real neighbouring voxels), flips along every axis and 90-degree turns in (H, W);
  3. brightness, contrast, gamma and noise as `transforms.intensity_transform` draws them, but
     in the normalised units (z-scores) and without its clipping to [0, 1]: contrast keeps the
     patch's range and gamma acts on the patch rescaled to [0, 1], then back (nnU-Net's rules).
Only "image" and "mask" leave: the variable-length locations and the geometry stay behind, so
batches have fixed shapes.
"""

import grain
import ml_collections
import numpy as np

from unetjax.data import patch_sampling, transforms


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
        mask = element["mask"]
        origin = patch_sampling.patch_origin(
            mask.shape,
            self.patch,
            rng,
            foreground_prob=self.foreground_prob,
            locations=element["locations"],
        )
        image, labels = transforms.spatial_transform(
            element["image"],
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
