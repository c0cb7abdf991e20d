"""Mirror test-time augmentation, shared by the in-process predictor and the artifact runner.

Needs neither JAX nor Flax: the caller passes the flip (`jnp.flip` inside a jitted function,
`np.flip` around tiled prediction), so a deployed artifact's runner imports only its runtime.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable


def flip_sets(spatial_dims: int) -> tuple[tuple[int, ...], ...]:
    """Every subset of the spatial axes (1..spatial_dims of a batch): the 2^d mirrorings of TTA."""
    axes = range(1, spatial_dims + 1)
    return tuple(subset for r in range(len(axes) + 1) for subset in itertools.combinations(axes, r))


def mean_over_flips(predict: Callable, images, flips: tuple[tuple[int, ...], ...], flip: Callable):
    """The mean of `predict` over mirrored copies of `images`, each mirrored back.

    `flip` is `jnp.flip` inside a jitted function or `np.flip` around tiled prediction.
    """
    total = None
    for axes in flips:
        mirrored = flip(images, axes) if axes else images
        probabilities = predict(mirrored)
        probabilities = flip(probabilities, axes) if axes else probabilities
        total = probabilities if total is None else total + probabilities
    return total / len(flips)
