"""Per-axis pooling (nnU-Net's rule for anisotropic data): the scales the strides make.

`config.model.strides` lists, per level 1..depth, the factor each spatial axis is pooled by
(2, or 1 for an axis left unpooled at that level); `config.model.kernels` the convolution kernel
per level 0..depth (3, or 1 along an axis still much coarser than the others). None for either:
every axis pooled by 2, kernels 3 wide (the papers' networks). Plain Python, no JAX: the config
check, the model, the planner, inference and export all take their per-axis scales from here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

Strides = tuple[tuple[int, ...], ...]


def factor(strides: Strides | None, low: int, high: int, spatial_dims: int) -> tuple[int, ...]:
    """Per axis, how many times finer level `low` is than level `high` (low <= high): the
    product of the strides between them; 2^(high - low) on every axis without strides."""
    if strides is None:
        return (2 ** (high - low),) * spatial_dims
    return tuple(
        math.prod(level[axis] for level in strides[low:high]) for axis in range(spatial_dims)
    )


def divisor(strides: Strides | None, depth: int, spatial_dims: int) -> tuple[int, ...]:
    """Per axis, what an input size must be a multiple of: the product of all strides."""
    return factor(strides, 0, depth, spatial_dims)


def kernel(kernels: Strides | None, level: int, spatial_dims: int) -> tuple[int, ...]:
    """The convolution kernel of the nodes at `level` (3 on every axis without kernels)."""
    return (3,) * spatial_dims if kernels is None else tuple(kernels[level])


def from_config(
    model_config: Mapping[str, Any], depth: int
) -> tuple[Strides | None, Strides | None]:
    """`model.strides` and `model.kernels` as tuples of tuples (None where unset), checked
    against `depth` (and `model.spatial_dims` where set); a one-line ValueError otherwise."""
    given = [key for key in ("strides", "kernels") if model_config.get(key) is not None]
    if given and model_config.get("encoder"):
        raise ValueError(
            f"config.model.{given[0]} is set with model.encoder={model_config['encoder']!r}: "
            "per-axis pooling is not supported over a pretrained encoder; unset one of them"
        )
    strides = _levels(model_config, "strides", depth, (1, 2))
    kernels = _levels(model_config, "kernels", depth + 1, (1, 3))
    if strides:
        flat = [i for i, level in enumerate(strides) if 2 not in level]
        if flat:
            raise ValueError(
                f"config.model.strides={_text(strides)}: level {flat[0] + 1} pools no axis; "
                "give it a 2 on some axis or remove the level (and one from depth)"
            )
    if strides and kernels and len(strides[0]) != len(kernels[0]):
        raise ValueError(
            f"config.model.kernels={_text(kernels)} has {len(kernels[0])} axes, model.strides "
            f"{len(strides[0])}; give both one value per spatial axis"
        )
    return strides, kernels


def _levels(model_config: Mapping[str, Any], key: str, count: int, allowed: Sequence[int]):
    value = model_config.get(key)
    if value is None:
        return None
    try:
        levels = tuple(tuple(int(v) for v in level) for level in value)
    except (TypeError, ValueError):
        levels = None
    dims = model_config.get("spatial_dims")
    where = f"config.model.{key}={_text(value)}"
    if levels is None or len({len(level) for level in levels}) > 1:
        raise ValueError(f"{where}: expected a list of levels, each one value per spatial axis")
    if len(levels) != count:
        what = "depth" if key == "strides" else "depth + 1"
        raise ValueError(
            f"{where} has {len(levels)} levels; depth {count - (key == 'kernels')} needs "
            f"{count} ({what}): set model.depth to match, or give {count} levels"
        )
    if any(v not in allowed for level in levels for v in level):
        raise ValueError(f"{where}: every value must be {' or '.join(map(str, allowed))}")
    if dims is not None and levels and len(levels[0]) != dims:
        raise ValueError(
            f"{where} has {len(levels[0])} values per level; model.spatial_dims={dims} needs "
            f"{dims} (one per spatial axis)"
        )
    return levels


def _text(value: Any) -> str:
    """`value` as the user would write it: lists of lists, or as it came when it is not one."""
    try:
        return str([[int(v) for v in level] for level in value])
    except (TypeError, ValueError):
        return repr(value)
