"""Resampling volumes to a target voxel spacing and back onto an original grid (scipy.ndimage).

Grids are aligned at voxel edges, as in nnU-Net and skimage's `resize`: output voxel o of an
axis with n_in -> n_out voxels samples input position (o + 0.5) * n_in / n_out - 0.5, so the
volume's extent in mm is kept and going back to the original shape lands on the original voxel
centres. Outside the volume the edge value is repeated.

Anisotropy rule (nnU-Net's): when max(spacing) / min(spacing) > 3 for the input spacing (or,
failing that, for the output spacing), and exactly one axis has that largest spacing, that
low-resolution axis is resampled with nearest neighbour (order 0) and the other axes with the
requested order, slice by slice. Interpolating across 5 mm slices would blend structures that
do not touch; nnU-Net found nearest along that axis works better. Spacings such as
(0.24, 1.25, 1.25), where two axes share the largest spacing, are resampled jointly.
"""

import dataclasses
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

ANISOTROPY_THRESHOLD = 3.0


def shape_for_spacing(
    shape: Sequence[int], spacing: Sequence[float], new_spacing: Sequence[float]
) -> tuple[int, ...]:
    """The voxel counts that keep the extent: round(n * spacing / new_spacing), at least 1."""
    _check_lengths(shape, spacing, new_spacing)
    return tuple(
        max(1, round(n * s / t)) for n, s, t in zip(shape, spacing, new_spacing, strict=True)
    )


def anisotropic_axis(
    spacing: Sequence[float], other_spacing: Sequence[float] | None = None
) -> int | None:
    """The axis resampled with nearest neighbour under the rule above, or None."""
    for candidate in (spacing, other_spacing):
        if candidate is None:
            continue
        candidate = np.asarray(candidate, dtype=float)
        if candidate.max() / candidate.min() > ANISOTROPY_THRESHOLD:
            widest = np.flatnonzero(candidate == candidate.max())
            return int(widest[0]) if len(widest) == 1 else None
    return None


def target_spacing(
    spacings: Sequence[Sequence[float]], shapes: Sequence[Sequence[int]] | None = None
) -> tuple[float, ...]:
    """The training cases' median spacing per axis (nnU-Net's default).

    With `shapes`, nnU-Net's exception for strongly anisotropic data applies: when the median's
    largest spacing is over 3x the others and that axis has under 1/3 of the voxels of the
    others, the axis gets the 10th percentile of its spacings instead (but not finer than the
    other axes), so the cases with thinner slices do not lose most of them.
    """
    spacings = np.asarray(spacings, dtype=float)
    if spacings.ndim != 2 or len(spacings) == 0:
        raise ValueError(f"spacings of shape {spacings.shape}; expected (num_cases, num_axes)")
    target = np.median(spacings, axis=0)
    if shapes is None:
        return tuple(float(s) for s in target)
    sizes = np.median(np.asarray(shapes, dtype=float), axis=0)
    worst = int(np.argmax(target))
    others = [axis for axis in range(len(target)) if axis != worst]
    finest_other = max(target[axis] for axis in others)
    anisotropic_spacing = target[worst] > ANISOTROPY_THRESHOLD * finest_other
    anisotropic_voxels = sizes[worst] * ANISOTROPY_THRESHOLD < min(sizes[axis] for axis in others)
    if anisotropic_spacing and anisotropic_voxels:
        low_resolution = np.percentile(spacings[:, worst], 10)
        target[worst] = low_resolution if low_resolution >= finest_other else finest_other + 1e-5
    return tuple(float(s) for s in target)


def resample_image(
    image: np.ndarray,
    shape: Sequence[int],
    *,
    spacing: Sequence[float],
    new_spacing: Sequence[float],
    order: int = 3,
) -> np.ndarray:
    """float32 image (*spatial) or (*spatial, C) resampled to `shape` (order 1 linear, 3 cubic).

    `spacing` and `new_spacing` choose the anisotropic axis; `shape` sets the output grid.
    """
    spatial_dims = len(spacing)
    _check_lengths(shape, spacing, new_spacing)
    if image.ndim not in (spatial_dims, spatial_dims + 1):
        raise ValueError(f"image of shape {image.shape} for {spatial_dims} spacings")
    if order not in (0, 1, 3):
        raise ValueError(f"order={order}; expected 0 (nearest), 1 (linear) or 3 (cubic)")
    grid = _Grid.between(image.shape[:spatial_dims], shape)
    axis = anisotropic_axis(spacing, new_spacing)
    image = image.astype(np.float32, copy=False)
    if image.ndim == spatial_dims:
        return _resample_channel(image, grid, order, axis)
    channels = [_resample_channel(image[..., c], grid, order, axis) for c in range(image.shape[-1])]
    return np.stack(channels, axis=-1)


def resample_labels(
    labels: np.ndarray,
    shape: Sequence[int],
    *,
    spacing: Sequence[float],
    new_spacing: Sequence[float],
    order: int = 1,
) -> np.ndarray:
    """An integer label map resampled to `shape`, never with values it did not have.

    order 0 is nearest neighbour; order 1 interpolates each present class's one-hot mask
    linearly and takes the argmax (ties go to the smaller class id), which keeps borders
    smoother than nearest but removes structures thinner than about a voxel. The anisotropic
    axis is nearest in both. Each class is resampled within its bounding box only.
    """
    _check_lengths(shape, spacing, new_spacing)
    if labels.ndim != len(spacing):
        raise ValueError(f"labels of shape {labels.shape} for {len(spacing)} spacings")
    if order not in (0, 1):
        raise ValueError(f"order={order}; expected 0 (nearest) or 1 (one-hot linear)")
    grid = _Grid.between(labels.shape, shape)
    if order == 0 or labels.shape == tuple(shape):
        return _interpolate(labels, grid, 0)
    axis = anisotropic_axis(spacing, new_spacing)
    classes = np.unique(labels)
    # The commonest class everywhere; the others can only win inside their own boxes, as
    # their score is 0 elsewhere and the one-hot scores sum to 1 at every voxel.
    counts = [int(np.count_nonzero(labels == value)) for value in classes]
    common = classes[int(np.argmax(counts))]
    best = _resample_channel((labels == common).astype(np.float32), grid, 1, axis)
    result = np.full(grid.shape, common, labels.dtype)
    for value in classes:
        if value == common:
            continue
        one_hot = labels == value
        box_in, box_out = grid.box(np.argwhere(one_hot))
        if box_out is None:
            continue
        score = _resample_channel(
            one_hot[box_in].astype(np.float32), grid.crop(box_in, box_out), 1, axis
        )
        # Ties go to the smaller class id, as an argmax over the classes in order would.
        region_best, region_result = best[box_out], result[box_out]
        better = (score > region_best) | ((score == region_best) & (value < region_result))
        region_result[better] = value
        region_best[better] = score[better]
    return result


def _check_lengths(shape, spacing, new_spacing) -> None:
    if not len(shape) == len(spacing) == len(new_spacing):
        raise ValueError(
            f"shape {tuple(shape)}, spacing {tuple(spacing)} and new spacing "
            f"{tuple(new_spacing)} must have one entry per spatial axis"
        )


@dataclasses.dataclass(frozen=True)
class _Grid:
    """Output voxel o of each axis samples input position scale * o + offset."""

    shape: tuple[int, ...]
    scale: np.ndarray
    offset: np.ndarray

    @classmethod
    def between(cls, shape_in: Sequence[int], shape_out: Sequence[int]) -> "_Grid":
        scale = np.asarray(shape_in, float) / np.asarray(shape_out, float)
        return cls(tuple(int(n) for n in shape_out), scale, 0.5 * scale - 0.5)

    def box(self, voxels: np.ndarray) -> tuple[tuple[slice, ...], tuple[slice, ...] | None]:
        """The input slices holding `voxels` (with a voxel of margin) and the output slices
        whose positions come within a voxel of them (None if none do)."""
        if len(voxels) == 0:
            return (), None
        low, high = voxels.min(axis=0) - 1, voxels.max(axis=0) + 1
        out_low = np.maximum(np.ceil((low - self.offset) / self.scale), 0).astype(int)
        out_high = np.minimum(np.floor((high - self.offset) / self.scale) + 1, self.shape)
        out_high = out_high.astype(int)
        if np.any(out_high <= out_low):
            return (), None
        in_low = np.maximum(np.floor(self.scale * out_low + self.offset) - 1, 0).astype(int)
        in_high = np.ceil(self.scale * (out_high - 1) + self.offset) + 2
        in_high = in_high.astype(int)
        box_in = tuple(slice(a, b) for a, b in zip(in_low, in_high, strict=True))
        box_out = tuple(slice(a, b) for a, b in zip(out_low, out_high, strict=True))
        return box_in, box_out

    def crop(self, box_in: tuple[slice, ...], box_out: tuple[slice, ...]) -> "_Grid":
        """The grid of output `box_out` read from the input cropped to `box_in`."""
        start_in = np.array([s.start for s in box_in], float)
        start_out = np.array([s.start for s in box_out], float)
        shape = tuple(s.stop - s.start for s in box_out)
        return _Grid(shape, self.scale, self.offset + self.scale * start_out - start_in)

    def along(self, axes: Sequence[int]) -> "_Grid":
        axes = list(axes)
        return _Grid(tuple(self.shape[a] for a in axes), self.scale[axes], self.offset[axes])


def _nearest_indices(size_in: int, size_out: int, scale: float, offset: float) -> np.ndarray:
    position = scale * np.arange(size_out) + offset
    return np.clip(np.floor(position + 0.5), 0, size_in - 1).astype(np.intp)


def _interpolate(array: np.ndarray, grid: _Grid, order: int) -> np.ndarray:
    if array.shape == grid.shape and np.all(grid.scale == 1) and np.all(grid.offset == 0):
        return array.copy()
    if order == 0:  # exact index arithmetic, axis by axis
        indices = [
            _nearest_indices(n, m, s, o)
            for n, m, s, o in zip(array.shape, grid.shape, grid.scale, grid.offset, strict=True)
        ]
        return array[np.ix_(*indices)]
    return ndimage.affine_transform(
        array, grid.scale, offset=grid.offset, output_shape=grid.shape, order=order, mode="nearest"
    )


def _resample_channel(array: np.ndarray, grid: _Grid, order: int, axis: int | None) -> np.ndarray:
    """One float32 channel: jointly, or slice by slice then nearest along `axis`."""
    if axis is None:
        return _interpolate(array, grid, order).astype(np.float32, copy=False)
    others = [a for a in range(array.ndim) if a != axis]
    in_plane = grid.along(others)
    slices = np.moveaxis(array, axis, 0)
    resized = np.stack([_interpolate(s, in_plane, order) for s in slices])
    nearest = _nearest_indices(
        array.shape[axis], grid.shape[axis], grid.scale[axis], grid.offset[axis]
    )
    return np.moveaxis(resized[nearest], 0, axis).astype(np.float32, copy=False)
