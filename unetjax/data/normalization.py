"""Image intensity normalisation: the one definition the pipeline, predict and evaluate share.

Two steps, so augmentation can run between them on a known range:

1. `to_unit`: the stored (source-dtype) image as float32 in [0, 1]: integer images divided by
   their dtype's maximum (uint8 by 255, uint16 by 65535); float images are taken as they are
   (preparation refuses float images outside [0, 1] under "unit").
2. `standardize` with `data.normalize`:
   - "unit": nothing more;
   - "zscore_image": per image and channel, (x - mean) / sd of that whole image;
   - "zscore_dataset": per channel, (x - mean) / sd of the training set (in unit scale), the
     statistics computed when the dataset was prepared.

`normalize(image, kind, stats)` does both on a whole image. Every function works on numpy
arrays and, unchanged, on jax arrays (inside a jitted or exported function).
"""

from collections.abc import Mapping, Sequence

import numpy as np

from unetjax.inference.preprocessing import KINDS, MIN_STD  # one rule for training and predict


def _namespace(array):
    """numpy for numpy arrays, jax.numpy for jax arrays (imported only when one is given)."""
    if isinstance(array, np.ndarray | np.generic):
        return np
    import jax.numpy as jnp

    return jnp


def to_unit(image):
    """float32 in [0, 1] from a stored image: integer dtypes over their maximum, floats as is."""
    xp = _namespace(image)
    dtype = np.dtype(image.dtype)
    if np.issubdtype(dtype, np.integer):
        return image.astype(xp.float32) / np.float32(np.iinfo(dtype).max)
    return image.astype(xp.float32)


def image_statistics(unit_image) -> dict:
    """Per-channel mean and sd of a (*spatial, C) image over all its pixels."""
    xp = _namespace(unit_image)
    axes = tuple(range(unit_image.ndim - 1))
    return {"mean": xp.mean(unit_image, axis=axes), "std": xp.std(unit_image, axis=axes)}


def standardize(unit_image, kind: str, stats: Mapping[str, Sequence[float]] | None = None):
    """`unit_image` (*spatial, C) standardised by `kind` with per-channel `stats` (mean, std).

    "zscore_image" needs the statistics of the whole image (`image_statistics`), so a crop or
    patch is standardised like the image it came from; "zscore_dataset" the training set's.
    """
    if kind not in KINDS:
        raise ValueError(f"normalize={kind!r}; expected one of {KINDS}")
    if kind == "unit":
        return unit_image
    if stats is None or stats.get("mean") is None or stats.get("std") is None:
        raise ValueError(f"normalize={kind!r} needs per-channel 'mean' and 'std' statistics")
    xp = _namespace(unit_image)
    mean = xp.asarray(stats["mean"], dtype=xp.float32)
    std = xp.maximum(xp.asarray(stats["std"], dtype=xp.float32), MIN_STD)
    channels = unit_image.shape[-1]
    if mean.shape not in ((channels,), ()) or std.shape not in ((channels,), ()):
        raise ValueError(
            f"normalisation statistics for {mean.shape} channels; the image has {channels}"
        )
    return ((unit_image - mean) / std).astype(xp.float32)


def normalize(image, kind: str, stats: Mapping[str, Sequence[float]] | None = None):
    """A whole stored image (*spatial, C) as the model sees it.

    `stats` holds the training set's per-channel "mean" and "std" (unit scale) for
    "zscore_dataset" (the dataset summary's "normalization" entry); unused otherwise.
    """
    unit_image = to_unit(image)
    if kind == "zscore_image":
        stats = image_statistics(unit_image)
    return standardize(unit_image, kind, stats)
