"""Overlap-tile inference (U-Net paper, section 2) for images and volumes of any size.

Plain numpy around a batched `predict_fn`; the same code runs 2D and 3D. The image is first
mirror-padded at its end to a multiple of `align` (2^D for a network of depth D; per axis, the
product of its strides, with per-axis pooling), as a direct prediction is, and every tile starts
at a multiple of `align`. Max-pooling then sees the same grid
in a tile as in the whole image, so away from tile borders a tile predicts exactly what the whole
image would; near tile borders the convolutions' zero padding differs, and blending with a window
that falls off towards the tile border (Gaussian, as in nnU-Net) hides it. An image that fits one
tile is predicted in one call, exactly as without tiling.

Optionally (`border`), the image is mirror-extended on every side first, giving border pixels
mirrored context as in the U-Net paper; that changes predictions near the image border.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np

BLENDS = ("gaussian", "constant")
PredictFn = Callable[[np.ndarray], np.ndarray]


@dataclasses.dataclass(frozen=True)
class TileOptions:
    """Overlap-tile settings of `predict_tiled`.

    Attributes:
      tile: tile size per spatial axis (an int for every axis); rounded up to a multiple of 2^D.
      overlap: minimum overlap of neighbouring tiles; None: half the tile (nnU-Net's step of
        0.5), which with Gaussian blending keeps tiled and whole-image predictions within 2e-3.
      blend: "gaussian" or "constant".
      batch_size: tiles per call of the network.
      border: pixels of mirrored context added around the image (0: none).
    """

    tile: int | tuple[int, ...]
    overlap: int | tuple[int, ...] | None = None
    blend: str = "gaussian"
    batch_size: int = 4
    border: int = 0

    def overlaps(self) -> int | tuple[int, ...]:
        if self.overlap is not None:
            return self.overlap
        if isinstance(self.tile, int):
            return self.tile // 2
        return tuple(t // 2 for t in self.tile)


def round_up(size: int, multiple: int) -> int:
    return -(-size // multiple) * multiple


def bucket_size(size: int, align: int) -> int:
    """`size` rounded up to one of four sizes per octave (multiples of `align`), so images of
    many sizes share a few compiled shapes: e.g. with align 16, 530 -> 640 and 300 -> 320."""
    step = max(align, 2 ** max(int(size).bit_length() - 3, 0))
    return round_up(round_up(size, step), align)


def bucket_shape(spatial: Sequence[int], align: int | Sequence[int]) -> tuple[int, ...]:
    """`bucket_size` of each axis of a spatial shape (`align` an int or one per axis)."""
    aligns = _per_axis(align, len(spatial), "align")
    return tuple(bucket_size(s, a) for s, a in zip(spatial, aligns, strict=True))


def pad_to_bucket(
    image: np.ndarray, align: int | Sequence[int]
) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Mirror-pads (*spatial, C) at its end to `bucket_shape`; returns the crop too."""
    spatial = image.shape[:-1]
    bucket = bucket_shape(spatial, align)
    padding = [(0, b - s) for b, s in zip(bucket, spatial, strict=True)] + [(0, 0)]
    crop = tuple(slice(0, size) for size in spatial)
    return (_mirror_pad(image, padding) if any(a for _, a in padding) else image), crop


def pad_to_multiple(
    image: np.ndarray, multiple: int | Sequence[int]
) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Mirror-pads the spatial axes of (*spatial, C) at their end to a multiple of `multiple`
    (an int, or one per axis).

    Returns the padded image and the slices that crop a prediction back to the input's size.
    """
    spatial = image.shape[:-1]
    multiples = _per_axis(multiple, len(spatial), "align")
    padding = [(0, round_up(s, m) - s) for s, m in zip(spatial, multiples, strict=True)]
    padding += [(0, 0)]
    crop = tuple(slice(0, size) for size in spatial)
    if not any(after for _, after in padding):
        return image, crop
    return _mirror_pad(image, padding), crop


def pad_with_minimum(
    image: np.ndarray, shape: Sequence[int]
) -> tuple[np.ndarray, tuple[slice, ...]]:
    """(*spatial, C) padded, centred, to at least `shape` per axis with each channel's minimum,
    what lies outside a scan (air in CT, the dark background of MR): how volume training pads a
    case smaller than its patch, so prediction shows the network the same border.

    Returns the padded image and the slices that crop a prediction back to the input's size.
    """
    spatial = image.shape[:-1]
    extra = np.maximum(np.asarray(shape) - spatial, 0)
    before = extra // 2
    crop = tuple(slice(int(b), int(b) + s) for b, s in zip(before, spatial, strict=True))
    if not extra.any():
        return image, crop
    widths = [(int(b), int(e - b)) for b, e in zip(before, extra, strict=True)]
    lowest = image.reshape(-1, image.shape[-1]).min(axis=0)
    channels = [
        np.pad(image[..., c], widths, constant_values=lowest[c]) for c in range(image.shape[-1])
    ]
    return np.stack(channels, axis=-1), crop


def _mirror_pad(image: np.ndarray, padding: Sequence[tuple[int, int]]) -> np.ndarray:
    # "reflect" needs two pixels along an axis; a single row or column can only be repeated.
    mode = "reflect" if min(image.shape[:-1]) > 1 else "edge"
    return np.pad(image, padding, mode=mode)


def tile_starts(size: int, tile: int, overlap: int, align: int = 1) -> list[int]:
    """Starts of the tiles along one axis: multiples of `align`, first 0, last `size - tile`.

    `size` and `tile` must be multiples of `align`. Neighbouring tiles overlap by at least
    `overlap` pixels (more where the tiles must spread evenly over the axis).
    """
    if size % align or tile % align:
        raise ValueError(f"size {size} and tile {tile} must be multiples of {align}")
    if tile >= size:
        return [0]
    if not 0 <= overlap <= tile - align:
        # Starts are multiples of `align`, so neighbours are at least `align` apart.
        raise ValueError(
            f"overlap must be in [0, tile - align] = [0, {tile - align}], got {overlap}"
        )
    span = size - tile
    count = math.ceil(span / (tile - overlap)) + 1
    while True:
        starts = [round(i * span / (count - 1) / align) * align for i in range(count)]
        if all(b - a <= tile - overlap for a, b in itertools.pairwise(starts)):
            return sorted(set(starts))
        count += 1


def blend_profile(size: int, blend: str = "gaussian", sigma_scale: float = 1 / 8) -> np.ndarray:
    """float64 weights (size,) of one axis of `blend_window`."""
    if blend not in BLENDS:
        raise ValueError(f"blend must be one of {BLENDS}, got {blend!r}")
    if blend == "constant":
        return np.ones(size)
    centre = (size - 1) / 2
    sigma = max(size * sigma_scale, 1e-6)
    profile = np.exp(-0.5 * ((np.arange(size) - centre) / sigma) ** 2)
    # Every pixel keeps some weight (at an image corner only one tile covers it). The floor
    # is per axis, not on the product, which would flatten the weights near a corner,
    # where all of them are small, into a constant blend.
    return np.maximum(profile / profile.max(), 1e-6)


def blend_window(
    tile_shape: Sequence[int], blend: str = "gaussian", sigma_scale: float = 1 / 8
) -> np.ndarray:
    """Weights (*tile_shape) for blending overlapping tiles: the outer product of the axes'
    `blend_profile`s.

    "gaussian": a separable Gaussian centred on the tile with sigma = tile * sigma_scale (nnU-Net),
    scaled to 1 at the centre, so predictions near a tile border, which lack context, count
    little. "constant": ones (the plain mean of the overlapping tiles).
    """
    window = np.ones((), np.float64)
    for size in tile_shape:
        window = np.multiply.outer(window, blend_profile(size, blend, sigma_scale))
    return window.astype(np.float32)


def _summed_profiles(size: int, tile: int, starts: Sequence[int], blend: str) -> np.ndarray:
    """One axis's sum of the tiles' profiles. Tiles sit on a grid and the window is separable,
    so the total weight of a voxel is the product of these sums over the axes."""
    total = np.zeros(size)
    for start in starts:
        total[start : start + tile] += blend_profile(tile, blend)
    return total


def predict_tiled(
    predict_fn: PredictFn,
    image: np.ndarray,
    *,
    tile: int | Sequence[int],
    overlap: int | Sequence[int] = 0,
    align: int | Sequence[int] = 1,
    blend: str = "gaussian",
    batch_size: int = 4,
    border: int = 0,
    fixed_shape: bool = False,
) -> np.ndarray:
    """Probabilities (*spatial, K) of an image (*spatial, C) of any size, predicted tile by tile.

    predict_fn: (batch, *tile_shape, C) -> (batch, *tile_shape, K); it is always called with
      `batch_size` tiles (the last batch is filled up by repeating a tile), so a jit-compiled
      function compiles once.
    tile, overlap, align: per spatial axis (an int applies to every axis). Tiles are rounded up to a
      multiple of `align` and shrunk to the (padded) image where it is smaller; overlaps are
      capped at tile - align (tiles start on multiples of `align`).
    border: pixels of mirrored context added on every side before tiling (U-Net paper).
    fixed_shape: an image smaller than the tile is mirror-padded up to it instead of the tile
      shrinking, so images of every size share the compiled shapes (batch 1 for an image that
      fits one tile, `batch_size` otherwise).
    """
    spatial_dims = image.ndim - 1
    tile_shape = _per_axis(tile, spatial_dims, "tile")
    overlaps = _per_axis(overlap, spatial_dims, "overlap")
    aligns = _per_axis(align, spatial_dims, "align")
    if border:
        image = _mirror_pad(image, [(border, border)] * spatial_dims + [(0, 0)])
    padded, crop = pad_to_multiple(image, align)
    if fixed_shape and any(s < t for s, t in zip(padded.shape[:-1], tile_shape, strict=True)):
        target = [
            max(round_up(s, a), round_up(t, a))
            for s, t, a in zip(image.shape[:-1], tile_shape, aligns, strict=True)
        ]
        padded = _mirror_pad(
            image, [(0, t - s) for t, s in zip(target, image.shape[:-1], strict=True)] + [(0, 0)]
        )
    size = padded.shape[:-1]
    tile_shape = tuple(
        min(round_up(t, a), s) for t, s, a in zip(tile_shape, size, aligns, strict=True)
    )
    starts_per_axis = [
        tile_starts(s, t, min(o, t - a), a)
        for s, t, o, a in zip(size, tile_shape, overlaps, aligns, strict=True)
    ]
    if all(len(starts) == 1 for starts in starts_per_axis):
        prediction = np.asarray(predict_fn(padded[None]))[0]
    else:
        prediction = _blend_tiles(
            predict_fn, padded, tile_shape, starts_per_axis, blend, batch_size
        )
    prediction = prediction[crop]
    if border:
        prediction = prediction[tuple(slice(border, -border) for _ in range(spatial_dims))]
    return prediction


def predict_with_options(
    predict_fn: PredictFn,
    image: np.ndarray,
    options: TileOptions,
    *,
    align: int | Sequence[int],
    fixed_shape: bool = False,
) -> np.ndarray:
    """`predict_tiled` with the settings of a `TileOptions` (the predictor's and the artifact
    runner's call)."""
    return predict_tiled(
        predict_fn,
        image,
        tile=options.tile,
        overlap=options.overlaps(),
        align=align,
        blend=options.blend,
        batch_size=options.batch_size,
        border=options.border,
        fixed_shape=fixed_shape,
    )


def predict_image(
    predict_fn: PredictFn,
    image: np.ndarray,
    tile: TileOptions | None,
    *,
    align: int | Sequence[int],
    bucket: bool = False,
    pad_to: Sequence[int] | None = None,
) -> np.ndarray:
    """Probabilities (*spatial, K) of one image (*spatial, C) of any size, as `predict` gives
    them: whole (mirror-padded at its end to a multiple of `align`, or with `bucket` to a size
    bucket, and cropped back), or with `tile` tile by tile (with `bucket`, fixed-shape tiles).
    With `pad_to` (a volume run's patch), an image smaller than it is first padded as training
    padded it (`pad_with_minimum`) and the prediction cropped back."""
    if pad_to is not None:
        padded, crop = pad_with_minimum(image, pad_to)
        if padded is not image:
            return predict_image(predict_fn, padded, tile, align=align, bucket=bucket)[crop]
    if tile is None:
        padded, crop = (pad_to_bucket if bucket else pad_to_multiple)(image, align)
        return np.asarray(predict_fn(padded[None]))[0][crop]
    return predict_with_options(predict_fn, image, tile, align=align, fixed_shape=bucket)


def _blend_tiles(
    predict_fn: PredictFn,
    padded: np.ndarray,
    tile_shape: tuple[int, ...],
    starts_per_axis: list[list[int]],
    blend: str,
    batch_size: int,
) -> np.ndarray:
    """The blended probabilities (*size, K). Memory: one (*size, K) float32 sum, accumulated in
    place and divided in place by the separable total weight (no weight volume), plus one batch
    of tiles."""
    size = padded.shape[:-1]
    window = blend_window(tile_shape, blend)[..., None]
    corners = list(itertools.product(*starts_per_axis))
    total = None
    for first in range(0, len(corners), batch_size):
        regions = [
            tuple(slice(c, c + t) for c, t in zip(corner, tile_shape, strict=True))
            for corner in corners[first : first + batch_size]
        ]
        tiles = [padded[region] for region in regions]
        tiles += [tiles[-1]] * (batch_size - len(tiles))
        probabilities = np.asarray(predict_fn(np.stack(tiles)), np.float32)
        if total is None:
            total = np.zeros((*size, probabilities.shape[-1]), np.float32)
        for region, tile_probabilities in zip(regions, probabilities, strict=False):
            total[region] += tile_probabilities * window
    for axis, (length, tile, starts) in enumerate(
        zip(size, tile_shape, starts_per_axis, strict=True)
    ):
        weight = _summed_profiles(length, tile, starts, blend).astype(np.float32)
        total /= weight.reshape([-1 if a == axis else 1 for a in range(total.ndim)])
    return total


def _per_axis(value: int | Sequence[int], spatial_dims: int, name: str) -> tuple[int, ...]:
    values = (value,) * spatial_dims if isinstance(value, int | np.integer) else tuple(value)
    if len(values) != spatial_dims:
        raise ValueError(f"{name}={value!r}: expected an int or {spatial_dims} ints")
    if any(v < 0 for v in values) or (name == "tile" and any(v < 1 for v in values)):
        raise ValueError(f"{name}={value!r} must be positive")
    return tuple(int(v) for v in values)
