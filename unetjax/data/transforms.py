"""Train-time augmentation and eval-time cropping, on numpy arrays in grain workers.

Stored images (source dtype) are brought to unit scale first, augmented there, then
standardised by `data.normalize` (`normalization`); "zscore_image" uses the statistics of the
whole image, so a patch or crop is normalised exactly like the full image it came from.

Geometric transforms move the image (linear interpolation) and its labels (nearest) with
the same coordinates, so they stay aligned and labels keep their values. Random crop, affine
and elastic deformation are fused into one resampling of the source image, so the patch is
filled from real neighbouring pixels rather than padding. 2D and 3D; in 3D, rotations act in
the (H, W) plane (volumes are often anisotropic along D).
"""

import dataclasses
from collections.abc import Sequence
from typing import Any

import grain
import ml_collections
import numpy as np
from scipy import ndimage

from unetjax.data import normalization, weight_map


@dataclasses.dataclass(frozen=True)
class AugmentOptions:
    """The augmentation fields of `config.data` (see `config.default_config`)."""

    flip_prob: float = 0.0
    rot90_prob: float = 0.0
    affine_prob: float = 0.0
    rotation_degrees: float = 0.0
    scale_range: tuple[float, float] = (1.0, 1.0)
    shift_fraction: float = 0.0
    elastic_prob: float = 0.0
    elastic_grid: int = 3
    elastic_sigma: float = 10.0
    brightness_prob: float = 0.0
    brightness_delta: float = 0.0
    contrast_prob: float = 0.0
    contrast_range: tuple[float, float] = (1.0, 1.0)
    gamma_prob: float = 0.0
    gamma_range: tuple[float, float] = (1.0, 1.0)
    noise_prob: float = 0.0
    noise_std: float = 0.0

    @classmethod
    def from_config(cls, data_config: ml_collections.ConfigDict) -> "AugmentOptions":
        if not data_config.augment:
            return cls()
        return cls(**{f.name: data_config[f.name] for f in dataclasses.fields(cls)})


def crop_origin(shape: Sequence[int], patch: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """A uniform random patch corner; negative (centred) where the image is smaller."""
    return np.array(
        [
            rng.integers(0, s - p + 1) if s >= p else -((p - s) // 2)
            for s, p in zip(shape, patch, strict=True)
        ]
    )


def centre_crop_origin(shape: Sequence[int], patch: Sequence[int]) -> list[int]:
    """The corner of the centred patch; negative (zero-padded) where the image is smaller."""
    return [(s - p) // 2 for s, p in zip(shape, patch, strict=True)]


def crop(array: np.ndarray, origin: Sequence[int], patch: Sequence[int]) -> np.ndarray:
    """The patch at `origin` of a (*spatial, C) array, zero-padded outside it."""
    pad = [
        (max(0, -o), max(0, o + p - s))
        for o, p, s in zip(origin, patch, array.shape[:-1], strict=True)
    ]
    padded = np.pad(array, [*pad, (0, 0)])
    start = [o + before for o, (before, _) in zip(origin, pad, strict=True)]
    return padded[tuple(slice(b, b + p) for b, p in zip(start, patch, strict=True))]


def rotation_matrix(dims: int, degrees: float) -> np.ndarray:
    """Rotation by `degrees` in the plane of the last two spatial axes."""
    angle = np.deg2rad(degrees)
    matrix = np.eye(dims)
    matrix[-2:, -2:] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    return matrix


def elastic_displacement(
    patch: Sequence[int], rng: np.random.Generator, grid: int, sigma: float
) -> np.ndarray:
    """(dims, *patch) displacements: N(0, sigma) on a coarse grid, cubic-spline interpolated."""
    coarse = rng.normal(0.0, sigma, size=(len(patch), *([grid] * len(patch))))
    factors = [p / grid for p in patch]
    return np.stack([ndimage.zoom(c, factors, order=3, mode="nearest") for c in coarse])


def resample(array: np.ndarray, coords: np.ndarray, order: int) -> np.ndarray:
    """(*spatial, C) sampled at (dims, *patch) coordinates, mirrored at the edges."""
    channels = [
        ndimage.map_coordinates(array[..., c], coords, order=order, mode="mirror")
        for c in range(array.shape[-1])
    ]
    return np.stack(channels, axis=-1)


def spatial_transform(
    image: np.ndarray,
    labels: np.ndarray,
    patch: Sequence[int],
    options: AugmentOptions,
    rng: np.random.Generator,
    origin: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Random crop, affine, elastic, flips and 90-degree rotations of image and labels.

    image (*spatial, C) float, labels (*spatial, L) int; returns both at (*patch, ...).
    origin: the patch's first voxel (e.g. from foreground oversampling); None: uniform.
    """
    dims = len(patch)
    origin = crop_origin(image.shape[:dims], patch, rng) if origin is None else np.asarray(origin)
    use_affine = rng.random() < options.affine_prob
    use_elastic = rng.random() < options.elastic_prob
    if use_affine or use_elastic:
        grid = np.indices(patch, dtype=np.float64)
        centre = (np.array(patch, np.float64) - 1) / 2
        coords = grid - centre.reshape(-1, *[1] * dims)
        if use_affine:
            degrees = rng.uniform(-options.rotation_degrees, options.rotation_degrees)
            scale = rng.uniform(*options.scale_range)
            shift = rng.uniform(-1, 1, dims) * options.shift_fraction * np.array(patch)
            inverse = rotation_matrix(dims, degrees) / scale
            coords = np.einsum("ij,j...->i...", inverse, coords) + shift.reshape(-1, *[1] * dims)
        coords = coords + (centre + origin).reshape(-1, *[1] * dims)
        if use_elastic:
            coords = coords + elastic_displacement(
                patch, rng, options.elastic_grid, options.elastic_sigma
            )
        image = resample(image, coords, order=1)
        labels = resample(labels, coords, order=0)
    else:
        image, labels = crop(image, origin, patch), crop(labels, origin, patch)
    for axis in range(dims):
        if rng.random() < options.flip_prob:
            image, labels = np.flip(image, axis), np.flip(labels, axis)
    if rng.random() < options.rot90_prob:
        turns = int(rng.integers(1, 4)) if patch[-1] == patch[-2] else 2
        plane = (dims - 2, dims - 1)
        image, labels = np.rot90(image, turns, plane), np.rot90(labels, turns, plane)
    return np.ascontiguousarray(image), np.ascontiguousarray(labels)


def intensity_transform(
    image: np.ndarray, options: AugmentOptions, rng: np.random.Generator
) -> np.ndarray:
    """Brightness, contrast, gamma and Gaussian noise, each with its probability; in [0, 1]."""
    if rng.random() < options.brightness_prob:
        image = image + rng.uniform(-options.brightness_delta, options.brightness_delta)
    if rng.random() < options.contrast_prob:
        mean = image.mean()
        image = mean + (image - mean) * rng.uniform(*options.contrast_range)
    if rng.random() < options.gamma_prob:
        image = np.clip(image, 0.0, 1.0) ** rng.uniform(*options.gamma_range)
    if rng.random() < options.noise_prob:
        image = image + rng.normal(0.0, options.noise_std, image.shape)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


class _Output:
    """Shared by train and eval: unit scale and normalisation, split labels back, add the
    weight map.

    `norm` is the dataset's normalisation ({"kind", "mean", "std"}, `Dataset.normalization`).
    """

    def __init__(self, data_config: ml_collections.ConfigDict, norm: dict):
        self.border_weights = data_config.border_weights
        self.w0 = data_config.border_w0
        self.sigma = data_config.border_sigma
        self.kind = norm["kind"]
        self.dataset_stats = {"mean": norm["mean"], "std": norm["std"]}

    def unit_and_stats(self, image: np.ndarray) -> tuple[np.ndarray, dict | None]:
        """The image in unit scale and the statistics its normalisation will use."""
        unit = normalization.to_unit(image)
        if self.kind == "zscore_image":
            return unit, normalization.image_statistics(unit)
        return unit, self.dataset_stats if self.kind == "zscore_dataset" else None

    def stack_labels(self, example: dict) -> np.ndarray:
        mask = example["mask"]
        mask = mask if mask.ndim == example["image"].ndim else mask[..., None]
        parts = [mask.astype(np.int32)]
        if self.border_weights:
            parts.append(example["instances"][..., None].astype(np.int32))
        return np.concatenate(parts, axis=-1)

    def finish(
        self, image: np.ndarray, stats: dict | None, labels: np.ndarray, multilabel: bool
    ) -> dict:
        if self.border_weights:
            labels, instances = labels[..., :-1], labels[..., -1]
        mask = labels if multilabel else labels[..., 0]
        image = normalization.standardize(image.astype(np.float32), self.kind, stats)
        out = {"image": image, "mask": np.ascontiguousarray(mask, np.int32)}
        if self.border_weights:
            out["weight"] = weight_map.border_weights(instances, mask, w0=self.w0, sigma=self.sigma)
        return out


class TrainTransform(grain.transforms.RandomMap, _Output):
    """Random patch of `patch_size` with augmentation; a pure function of (example, rng)."""

    def __init__(self, data_config: ml_collections.ConfigDict, multilabel: bool, norm: dict):
        _Output.__init__(self, data_config, norm)
        self.patch = tuple(data_config.patch_size)
        self.options = AugmentOptions.from_config(data_config)
        self.multilabel = multilabel

    def random_map(self, element: dict, rng: np.random.Generator) -> dict:
        unit, stats = self.unit_and_stats(element["image"])
        image, labels = spatial_transform(
            unit, self.stack_labels(element), self.patch, self.options, rng
        )
        image = intensity_transform(image, self.options, rng)
        return self.finish(image, stats, labels, self.multilabel)


EVAL_PASSTHROUGH = ("spacing", "id", "original_shape", "original_affine")


class EvalTransform(grain.transforms.Map, _Output):
    """The full image, or its centre crop of `eval_patch_size` (unless `full_size`); no
    randomness."""

    def __init__(
        self,
        data_config: ml_collections.ConfigDict,
        multilabel: bool,
        norm: dict,
        *,
        full_size: bool = False,
    ):
        _Output.__init__(self, data_config, norm)
        size = data_config.eval_patch_size
        self.patch = None if size is None or full_size else tuple(size)
        self.multilabel = multilabel

    def map(self, element: dict) -> dict:
        image, stats = self.unit_and_stats(element["image"])
        labels = self.stack_labels(element)
        instances = element.get("instances")
        if self.patch is not None:
            origin = centre_crop_origin(image.shape[:-1], self.patch)
            image, labels = crop(image, origin, self.patch), crop(labels, origin, self.patch)
            if instances is not None:
                instances = crop(instances[..., None], origin, self.patch)[..., 0]
        out = self.finish(image, stats, labels, self.multilabel)
        # What evaluation scores besides the mask: instance labels (object metrics), the voxel
        # spacing (distances in mm), the case id (per-case rows) and, for volumes, the file grid
        # (the report names slices by their index in the file).
        if instances is not None:
            out["instances"] = np.asarray(instances, np.int32)
        for key in EVAL_PASSTHROUGH:
            if key in element:
                out[key] = np.asarray(element[key])
        return out


def train_transform(dataset: Any) -> TrainTransform:
    """The training transform of the image kinds (folders, synthetic cells, catalog datasets)."""
    return TrainTransform(dataset.config, dataset.info.task == "multilabel", dataset.normalization)


def eval_transform(dataset: Any) -> EvalTransform:
    """The evaluation transform of the image kinds: full images or eval_patch_size crops."""
    return EvalTransform(dataset.config, dataset.info.task == "multilabel", dataset.normalization)
