"""`data.resize`: images resized linearly, masks by nearest neighbour, at preparation (2D).

A setting is None (sizes kept), a fixed size `(H, W)`, or `("shorter_side", S)`: the shorter
side becomes S and the other keeps the aspect ratio (rounded). Predict reuses these functions on
new images, and maps its predictions back to the original size with `resize_image_to`
(probabilities, linear) or `resize_mask_to` (labels, nearest).
"""

from collections.abc import Sequence

import numpy as np
from PIL import Image

SHORTER_SIDE = "shorter_side"


def setting_error(setting) -> str | None:
    """Why `setting` is not a valid `data.resize`, or None if it is."""
    if setting is None:
        return None
    expected = "expected None, (H, W) or ('shorter_side', S) with positive integer sizes"
    if not isinstance(setting, Sequence) or isinstance(setting, str) or len(setting) != 2:
        return f"data.resize={setting!r}; {expected}"
    sizes = setting[1:] if setting[0] == SHORTER_SIDE else setting
    if not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes):
        return f"data.resize={setting!r}; {expected}"
    return None


def describe(setting) -> str:
    """The setting as a reader would say it."""
    if setting is None:
        return "none"
    if setting[0] == SHORTER_SIDE:
        return f"shorter side {setting[1]} px, aspect kept"
    return f"{setting[0]}x{setting[1]}"


def smallest_size(setting) -> tuple[int, int] | None:
    """A lower bound on every resized (H, W): what a patch must fit in; None for no resize."""
    if setting is None:
        return None
    if setting[0] == SHORTER_SIDE:
        return (setting[1], setting[1])
    return (int(setting[0]), int(setting[1]))


def target_size(shape: Sequence[int], setting) -> tuple[int, ...]:
    """The (H, W) an image of spatial `shape` has after `setting`."""
    if setting is None:
        return tuple(int(s) for s in shape)
    if setting[0] == SHORTER_SIDE:
        scale = setting[1] / min(shape)
        return tuple(max(1, round(s * scale)) for s in shape)
    return (int(setting[0]), int(setting[1]))


def resize_image_to(image: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """(H, W, C) resized to `size` with PIL's bilinear filter (antialiased when shrinking).

    Integer images are rounded back to their dtype; float images stay float32.
    """
    size = tuple(int(s) for s in size)
    if tuple(image.shape[:2]) == size:
        return image
    channels = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(image[..., c], np.float32)).resize(
                (size[1], size[0]), Image.Resampling.BILINEAR
            )
        )
        for c in range(image.shape[-1])
    ]
    resized = np.stack(channels, axis=-1)
    if np.issubdtype(image.dtype, np.integer):
        limits = np.iinfo(image.dtype)
        return np.clip(np.round(resized), limits.min, limits.max).astype(image.dtype)
    return resized.astype(np.float32)


def resize_mask_to(mask: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """(H, W[, K]) labels resized to `size` by nearest neighbour (pixel centres, as PIL does),
    so every value stays one of the originals."""
    size = tuple(int(s) for s in size)
    if tuple(mask.shape[:2]) == size:
        return mask
    rows = ((np.arange(size[0]) + 0.5) * (mask.shape[0] / size[0])).astype(int)
    cols = ((np.arange(size[1]) + 0.5) * (mask.shape[1] / size[1])).astype(int)
    return mask[np.minimum(rows, mask.shape[0] - 1)][:, np.minimum(cols, mask.shape[1] - 1)]


def resize_image(image: np.ndarray, setting) -> np.ndarray:
    """An (H, W, C) image resized by `data.resize` (unchanged for None)."""
    return resize_image_to(image, target_size(image.shape[:2], setting))


def resize_mask(mask: np.ndarray, setting) -> np.ndarray:
    """An (H, W[, K]) mask resized by `data.resize` (unchanged for None)."""
    return resize_mask_to(mask, target_size(mask.shape[:2], setting))
