"""Patch sampling with foreground oversampling (nnU-Net's scheme), 2D and 3D.

With probability `foreground_prob` a patch is centred on a foreground voxel: a class is drawn
uniformly from the foreground classes present in the case, then a voxel of that class, so
small organs are seen as often as large ones. Otherwise the patch is placed uniformly. Where
the volume is smaller than the patch along an axis, the patch extends past both sides and the
outside is padded (image with `pad_value`, labels with 0 = background); a centred voxel is
always inside the patch. Deterministic given the numpy Generator.
"""

from collections.abc import Sequence

import numpy as np

MAX_LOCATIONS_PER_CLASS = 10_000


def class_locations(
    labels: np.ndarray, rng: np.random.Generator, max_per_class: int = MAX_LOCATIONS_PER_CLASS
) -> np.ndarray:
    """int32 (N, 1 + spatial_dims): rows (class, *voxel index) for each foreground class
    present, at most `max_per_class` voxels each (a seeded sample; computed once per case)."""
    rows = []
    for value in np.unique(labels):
        if value == 0:
            continue
        voxels = np.argwhere(labels == value)
        if len(voxels) > max_per_class:
            voxels = voxels[np.sort(rng.choice(len(voxels), max_per_class, replace=False))]
        rows.append(np.concatenate([np.full((len(voxels), 1), value), voxels], axis=1))
    if not rows:
        return np.zeros((0, 1 + labels.ndim), np.int32)
    return np.concatenate(rows).astype(np.int32)


def _bounds(shape: Sequence[int], patch_size: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """The lowest and highest patch origin per axis (negative where padding is needed)."""
    shape, patch = np.asarray(shape), np.asarray(patch_size)
    padding = np.maximum(patch - shape, 0)
    low = -(padding // 2)
    high = shape + padding // 2 + padding % 2 - patch
    return low, high


def patch_origin(
    shape: Sequence[int],
    patch_size: Sequence[int],
    rng: np.random.Generator,
    *,
    foreground_prob: float,
    locations: np.ndarray,
) -> np.ndarray:
    """The patch's first voxel index per axis (may be negative or reach past the end)."""
    if len(shape) != len(patch_size):
        raise ValueError(f"volume of shape {tuple(shape)} and patch {tuple(patch_size)}")
    if not 0 <= foreground_prob <= 1:
        raise ValueError(f"foreground_prob={foreground_prob}; expected a probability")
    low, high = _bounds(shape, patch_size)
    if rng.random() >= foreground_prob or len(locations) == 0:
        return np.array([rng.integers(a, b + 1) for a, b in zip(low, high, strict=True)])
    classes = np.unique(locations[:, 0])
    chosen = locations[locations[:, 0] == rng.choice(classes)]
    voxel = chosen[rng.integers(len(chosen)), 1:]
    return np.clip(voxel - np.asarray(patch_size) // 2, low, high)


def crop(
    array: np.ndarray, origin: Sequence[int], patch_size: Sequence[int], pad_value: float = 0
) -> np.ndarray:
    """array[origin : origin + patch_size] over the leading spatial axes, padded outside."""
    dims = len(patch_size)
    start = np.maximum(origin, 0)
    stop = np.minimum(np.asarray(origin) + patch_size, array.shape[:dims])
    inside = array[tuple(slice(a, b) for a, b in zip(start, stop, strict=True))]
    before = start - np.asarray(origin)
    after = np.asarray(patch_size) - before - (stop - start)
    if not (before.any() or after.any()):
        return inside
    widths = [(int(b), int(a)) for b, a in zip(before, after, strict=True)]
    widths += [(0, 0)] * (array.ndim - dims)
    return np.pad(inside, widths, constant_values=pad_value)


def sample_patch(
    image: np.ndarray,
    labels: np.ndarray,
    patch_size: Sequence[int],
    rng: np.random.Generator,
    *,
    foreground_prob: float,
    locations: np.ndarray | None = None,
    pad_value: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """(image patch (*patch_size, C), label patch (*patch_size)) from (*spatial, C) and
    (*spatial). `locations` from `class_locations` (stored with the case) saves a pass over
    the labels; without them they are computed here."""
    if image.shape[: labels.ndim] != labels.shape:
        raise ValueError(f"image of shape {image.shape} and labels of shape {labels.shape}")
    if locations is None:
        locations = class_locations(labels, rng)
    origin = patch_origin(
        labels.shape, patch_size, rng, foreground_prob=foreground_prob, locations=locations
    )
    return crop(image, origin, patch_size, pad_value), crop(labels, origin, patch_size, 0)
