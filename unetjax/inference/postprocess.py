"""Hard labels from probabilities: thresholding or argmax, and small-component removal."""

from __future__ import annotations

import numpy as np
import scipy.ndimage


def postprocess(
    probabilities: np.ndarray, *, output_activation: str, threshold: float = 0.5, min_size: int = 0
) -> np.ndarray:
    """Hard labels from probabilities (*spatial, K).

    sigmoid: `probabilities >= threshold`, uint8 (*spatial) for one class or (*spatial, K) for
    several (multi-label); softmax: the argmax class, uint8 (*spatial) (0 is background).
    min_size: connected components (face-connected) of a class smaller than this many pixels
    are removed (set to 0, background).
    """
    if output_activation == "sigmoid":
        labels = (probabilities >= threshold).astype(np.uint8)
        if labels.shape[-1] == 1:
            labels = labels[..., 0]
        if min_size > 0:
            if labels.ndim == probabilities.ndim:
                for k in range(labels.shape[-1]):
                    labels[..., k] = remove_small_components(labels[..., k], min_size)
            else:
                labels = remove_small_components(labels, min_size)
        return labels
    if output_activation != "softmax":
        raise ValueError(
            f"output_activation must be 'sigmoid' or 'softmax', got {output_activation!r}"
        )
    labels = np.argmax(probabilities, axis=-1).astype(np.uint8)
    if min_size > 0:
        for k in range(1, probabilities.shape[-1]):
            keep = remove_small_components(labels == k, min_size)
            labels[(labels == k) & ~keep.astype(bool)] = 0
    return labels


def remove_small_components(mask: np.ndarray, min_size: int) -> np.ndarray:
    """`mask` (any rank) without its connected components smaller than `min_size` pixels."""
    components, count = scipy.ndimage.label(mask)
    if count == 0:
        return mask
    sizes = np.bincount(components.ravel())
    keep = sizes >= min_size
    keep[0] = False
    return keep[components].astype(mask.dtype)
