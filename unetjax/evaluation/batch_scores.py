"""What an evaluator computes of a batch on the device: confusion counts at each threshold and
each case's loss (`score_batch`, jit-able), and the size buckets (`bucketed`) that let a split of
many image sizes share a few compiled shapes of it."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from unetjax import losses
from unetjax.evaluation import counts
from unetjax.inference import tiling

# Probabilities are clipped this far from 0 and 1 before they are turned back into logits.
EPSILON = 1e-6


def score_batch(
    probabilities: jax.Array,
    logits: Sequence[jax.Array],
    batch: dict[str, jax.Array],
    *,
    output_activation: str,
    thresholds: tuple[float, ...],
    ignore_index: int | None,
) -> dict[str, jax.Array]:
    """Counts (B, S, T, K, 4) and losses (B, len(logits)) of a batch, the loss with the batch's
    weight map and both without `ignore_index` pixels, nor those outside its "scored" region
    (B, *spatial) where it has one; jit-able."""
    mask, weight, scored = batch["mask"], batch.get("weight"), batch.get("scored")
    count = [
        counts.counts_at_thresholds(
            probabilities[..., setting, :],
            mask,
            output_activation=output_activation,
            thresholds=thresholds,
            ignore_index=ignore_index,
            scored=scored,
        )
        for setting in range(probabilities.shape[-2])
    ]
    if logits:

        def case_loss(logits, mask, weight, scored):
            return losses.deep_supervision_loss(
                tuple(h[None] for h in logits),
                mask[None],
                output_activation=output_activation,
                weight=None if weight is None else weight[None],
                ignore_index=ignore_index,
                scored=None if scored is None else scored[None],
            )[1]

        per_case = jax.vmap(case_loss)(tuple(logits), mask, weight, scored)
    else:
        per_case = jnp.zeros((mask.shape[0], 0), jnp.float32)
    return {"counts": jnp.stack(count, axis=1), "losses": per_case}


def bucketed(
    probabilities: np.ndarray, batch: dict[str, np.ndarray], align: int | tuple[int, ...]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One image's probabilities (1, *spatial, S, K) and mask (and weight) zero-padded at their
    end to a size bucket (`tiling.bucket_shape`, as predict's whole images), with the "scored"
    region that leaves the padding out: a split of many sizes compiles its scoring for a few
    shapes, not per image (benchmarks/RESULTS.md)."""
    spatial = probabilities.shape[1:-2]
    bucket = tiling.bucket_shape(spatial, align)
    widths = [(0, 0)] + [(0, b - s) for b, s in zip(bucket, spatial, strict=True)]

    def padded(array: np.ndarray) -> np.ndarray:
        return np.pad(array, widths + [(0, 0)] * (array.ndim - len(widths)))

    scored = padded(np.ones(probabilities.shape[:-2], bool))
    return padded(probabilities), {
        **{key: padded(value) for key, value in batch.items()},
        "scored": scored,
    }


def as_logits(probabilities: jax.Array, output_activation: str) -> jax.Array:
    p = jnp.clip(probabilities, EPSILON, 1 - EPSILON)
    return jnp.log(p) if output_activation == "softmax" else jnp.log(p) - jnp.log1p(-p)
