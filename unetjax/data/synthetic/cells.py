"""Procedural nuclei-like images: the embedded default dataset, no download needed.

Touching and overlapping blobs of varied size, shape, brightness and texture on an uneven
background, blurred and noisy; dim nuclei and clusters make it hard enough for the U-Net
variants to differ. Deterministic for a seed; 2D and 3D.
"""

import numpy as np
from scipy import ndimage


def _random_rotation(rng: np.random.Generator, dims: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(dims, dims)))
    return q * np.sign(np.diag(r))


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Zero-mean, unit-sd Gaussian-smoothed noise."""
    field = ndimage.gaussian_filter(rng.normal(size=shape), sigma)
    return (field - field.mean()) / (field.std() + 1e-8)


def _paint_nucleus(
    rng: np.random.Generator,
    signal: np.ndarray,
    instances: np.ndarray,
    centre: np.ndarray,
    radius: float,
    label: int,
) -> None:
    """Adds one irregular ellipsoid to `signal` (soft edge) and to `instances` (occluding)."""
    dims = signal.ndim
    axes = radius * rng.uniform(0.6, 1.0, size=dims)
    axes[0] = radius
    rotation = _random_rotation(rng, dims)
    reach = int(np.ceil(radius * 1.4)) + 2
    low = np.maximum(np.floor(centre).astype(int) - reach, 0)
    high = np.minimum(np.floor(centre).astype(int) + reach + 1, signal.shape)
    if np.any(high <= low):
        return
    box = tuple(slice(a, b) for a, b in zip(low, high, strict=True))
    grid = np.stack(
        np.meshgrid(*[np.arange(a, b) for a, b in zip(low, high, strict=True)], indexing="ij"), -1
    )
    offset = (grid - centre) @ rotation
    rho = np.sqrt(((offset / axes) ** 2).sum(-1))
    # Wavy outline: low-frequency cosines of the direction, a few per nucleus.
    direction = offset / (np.linalg.norm(offset, axis=-1, keepdims=True) + 1e-8)
    outline = np.ones(rho.shape)
    for _ in range(3):
        axis = rng.normal(size=dims)
        axis /= np.linalg.norm(axis)
        outline += rng.uniform(0.0, 0.08) * np.cos(
            rng.uniform(2, 5) * direction @ axis + rng.uniform(0, 6.3)
        )
    edge = outline - rho
    brightness = rng.uniform(0.25, 1.0)
    signal[box] += brightness * (0.75 + 0.25 * np.clip(edge, 0, 1)) / (1 + np.exp(-edge * radius))
    instances[box][edge > 0] = label


def generate(
    rng: np.random.Generator, size: int, spatial_dims: int
) -> tuple[np.ndarray, np.ndarray]:
    """One sample: image float32 (*spatial, 1) in [0, 1] and instances int32 (*spatial)."""
    shape = (size,) * spatial_dims
    mean_radius = size / (14 if spatial_dims == 2 else 9)
    nucleus_volume = (np.pi if spatial_dims == 2 else 4.2) * mean_radius**spatial_dims
    count = max(2, int(rng.uniform(0.2, 0.45) * size**spatial_dims / nucleus_volume))
    # Half the nuclei gather in clusters, where they touch and overlap.
    clusters = rng.uniform(0, size, size=(max(1, count // 6), spatial_dims))
    signal = np.zeros(shape)
    instances = np.zeros(shape, np.int32)
    for label in range(1, count + 1):
        if rng.random() < 0.5:
            centre = clusters[rng.integers(len(clusters))] + rng.normal(
                0, 1.6 * mean_radius, spatial_dims
            )
        else:
            centre = rng.uniform(0, size, spatial_dims)
        radius = mean_radius * rng.uniform(0.5, 1.5)
        _paint_nucleus(rng, signal, instances, centre, radius, label)
    # Chromatin-like texture inside nuclei, then an uneven background.
    signal *= 1 + 0.3 * _smooth_field(rng, shape, 1.0)
    background = rng.uniform(0.05, 0.2) + rng.uniform(0.03, 0.15) * _smooth_field(
        rng, shape, size / 6
    )
    gradient = np.linspace(0, rng.uniform(-0.1, 0.1), size).reshape(
        (size,) + (1,) * (spatial_dims - 1)
    )
    image = ndimage.gaussian_filter(signal + background + gradient, rng.uniform(0.5, 1.5))
    image = image + rng.normal(size=shape) * (
        0.02 + rng.uniform(0.0, 0.05) * np.sqrt(np.clip(image, 0, None))
    )
    image = np.clip(image, 0.0, 1.0).astype(np.float32)[..., None]
    return image, _relabel(instances)


def _relabel(instances: np.ndarray) -> np.ndarray:
    """Consecutive ids 1..N for the nuclei still visible after occlusion."""
    ids, inverse = np.unique(instances, return_inverse=True)
    relabelled = inverse.reshape(instances.shape).astype(np.int32)
    return relabelled if ids[0] == 0 else relabelled + 1
