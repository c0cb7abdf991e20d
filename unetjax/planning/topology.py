"""The network's shape from the data's: patch, pooling per level and axis, depth, filters.

Pure Python and numpy, no JAX: the planner and the tests read it directly.

Rules (nnU-Net v2's `get_pool_and_conv_props` and default planner, see docs/medical.md):
  - the initial patch is shaped like the inverse spacing (a cube in mm), with the volume of a
    256^3 (3D) or 2048^2 (2D) patch, then clipped to the median shape;
  - an axis is pooled at a level when it still has at least 2 * MIN_EDGE voxels and its
    spacing is under twice the finest spacing among such axes; an axis whose spacing is over
    twice the finest waits until the others have caught up (5 mm slices on 0.8 mm pixels:
    the first two levels pool only in-plane), and its convolution kernel is 1 meanwhile;
  - pooling stops when no axis may be pooled, so the bottleneck edge is about MIN_EDGE;
  - filters start at 32 and double per level, capped at 320 (3D) or 512 (2D).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from unetjax import scales

MIN_EDGE = 4
BASE_FILTERS = 32
MAX_FILTERS = {2: 512, 3: 320}
REFERENCE_VOXELS = {2: 2048**2, 3: 256**3}


@dataclasses.dataclass(frozen=True)
class Topology:
    """Pooling of a patch, level by level.

    Attributes:
      patch: the patch, padded to a multiple of `divisor` on each axis.
      strides: per level, per axis: 2 where that level pools the axis, else 1.
      kernels: per level (depth + 1 of them), per axis: 3, or 1 along an axis still coarser
        than twice the finest spacing.
    """

    patch: tuple[int, ...]
    strides: tuple[tuple[int, ...], ...]
    kernels: tuple[tuple[int, ...], ...]

    @property
    def depth(self) -> int:
        return len(self.strides)

    @property
    def divisor(self) -> tuple[int, ...]:
        return scales.divisor(self.strides, self.depth, len(self.patch))


def initial_patch(spacing: Sequence[float], median_shape: Sequence[float]) -> tuple[int, ...]:
    """A patch shaped by the inverse spacing, of the reference volume, clipped to the median."""
    dims = len(spacing)
    inverse = 1.0 / np.asarray(spacing, dtype=float)
    scale = (REFERENCE_VOXELS[dims] / np.prod(inverse)) ** (1.0 / dims)
    return tuple(
        max(1, min(round(p), round(m))) for p, m in zip(inverse * scale, median_shape, strict=True)
    )


def pooling(spacing: Sequence[float], patch: Sequence[int], min_edge: int = MIN_EDGE) -> Topology:
    """The per-level, per-axis pooling of `patch` at `spacing` (rules in the module doc)."""
    dims = len(spacing)
    current_spacing = [float(s) for s in spacing]
    size = [int(p) for p in patch]
    kernel = [1] * dims
    strides, kernels = [], []
    while True:
        finest = min(current_spacing)
        kernel = [3 if current_spacing[a] / finest < 2 else k for a, k in enumerate(kernel)]
        candidates = [a for a in range(dims) if size[a] >= 2 * min_edge]
        if not candidates:
            break
        finest_candidate = min(current_spacing[a] for a in candidates)
        pooled = [a for a in candidates if current_spacing[a] / finest_candidate < 2]
        if len(pooled) == 1 and size[pooled[0]] < 3 * min_edge:
            break  # nnU-Net: pooling a single axis is only worth it when it is long
        kernels.append(tuple(kernel))
        strides.append(tuple(2 if a in pooled else 1 for a in range(dims)))
        for a in pooled:
            current_spacing[a] *= 2
            size[a] = math.ceil(size[a] / 2)
    kernels.append(tuple(kernel))
    if not strides:  # too small to pool by the rules; a network needs one level: pool all axes
        strides, kernels = [(2,) * dims], [tuple(kernel)] * 2
    divisor = scales.divisor(tuple(strides), len(strides), dims)
    padded = tuple(math.ceil(p / d) * d for p, d in zip(patch, divisor, strict=True))
    return Topology(padded, tuple(strides), tuple(kernels))


def filters(depth: int, spatial_dims: int, base: int = BASE_FILTERS) -> tuple[int, ...]:
    """`base` (32) doubling per level, capped (320 in 3D, 512 in 2D), for depth + 1 levels."""
    cap = MAX_FILTERS[spatial_dims]
    return tuple(min(base * 2**level, cap) for level in range(depth + 1))


def shrink_axis(patch: Sequence[int], median_shape: Sequence[float]) -> int:
    """The axis to shrink next: the largest relative to the median shape (nnU-Net's rule)."""
    ratios = [p / m for p, m in zip(patch, median_shape, strict=True)]
    return int(np.argmax(ratios))
