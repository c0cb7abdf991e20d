"""The U-Net paper's per-pixel loss weights (Ronneberger et al. 2015, eq. 2).

w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2)) on background pixels, where d1 and
d2 are the distances to the nearest and second-nearest object, so the thin gaps between
touching objects weigh most.
"""

import numpy as np
from scipy import ndimage


def connected_components(foreground: np.ndarray) -> np.ndarray:
    """Instance labels (int32, 0 = background) as the connected components of a mask."""
    return ndimage.label(foreground)[0].astype(np.int32)


def class_balance(mask: np.ndarray) -> np.ndarray:
    """w_c: each class present weighs total / (classes present * its pixel count)."""
    classes, inverse, counts = np.unique(mask, return_inverse=True, return_counts=True)
    weights = mask.size / (len(classes) * counts)
    return weights[inverse].reshape(mask.shape).astype(np.float32)


def border_weights(
    instances: np.ndarray,
    mask: np.ndarray,
    *,
    w0: float = 10.0,
    sigma: float = 5.0,
) -> np.ndarray:
    """float32 (*spatial) weights from instance labels (0 = background) and the class mask.

    `mask` is (*spatial) class indices or (*spatial, K) multi-label; the balance is over
    "any label" for multi-label masks.
    """
    classes = mask.any(axis=-1) if mask.ndim == instances.ndim + 1 else mask
    weights = class_balance(classes)
    ids = np.unique(instances)
    ids = ids[ids != 0]
    if len(ids) < 2:
        return weights
    # Distance from every pixel to each object; the two smallest per pixel are d1 and d2.
    distances = np.stack([ndimage.distance_transform_edt(instances != i) for i in ids])
    nearest_two = np.partition(distances, 1, axis=0)[:2]
    border = w0 * np.exp(-((nearest_two[0] + nearest_two[1]) ** 2) / (2 * sigma**2))
    return weights + np.where(instances == 0, border, 0.0).astype(np.float32)
