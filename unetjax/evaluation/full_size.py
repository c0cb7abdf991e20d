"""Validation on whole images of varied sizes: every head overlap-tiled, then scored.

A folder of a user's images rarely shares one size, and a centre crop scores part of each image.
Here each validation image is predicted tile by tile (`inference.tiling`, Gaussian blending,
tiles of the training patch size, so one compiled shape serves every image) with all heads at
once, and scored at its full size: the same metrics, names and per-image means as the batched
validation (`heads.summarize_heads`). The loss is computed on the blended probabilities (as
logits), so it is comparable across evaluations, not with the training loss of patches.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils

from unetjax import backend, data, losses
from unetjax.evaluation import counts, heads
from unetjax.inference import tiling

# Probabilities are clipped this far from 0 and 1 before they are turned back into logits.
EPSILON = 1e-6


def all_heads_function(graphdef: nnx.GraphDef, output_activation: str):
    """jit: (params, model_state, tiles (B, *tile, C)) -> (B, *tile, H * K) probabilities of
    every head, concatenated on the channel axis (so one tiled pass blends them all)."""

    def probabilities(params, model_state, tiles):
        model = nnx.merge(graphdef, params, model_state)
        logits = model(tiles, train=False)
        activate = jax.nn.softmax if output_activation == "softmax" else jax.nn.sigmoid
        return jnp.concatenate([activate(head) for head in logits], axis=-1)

    return backend.jit(probabilities)


def _as_logits(probabilities: np.ndarray, output_activation: str) -> np.ndarray:
    p = np.clip(probabilities, EPSILON, 1 - EPSILON)
    return np.log(p) if output_activation == "softmax" else np.log(p) - np.log1p(-p)


def validate(
    all_heads,
    params,
    model_state,
    dataset: data.Dataset,
    split: str,
    head_depths: Sequence[int],
    *,
    output_activation: str,
    threshold: float,
    tile: int,
    align: int,
    ignore_index: int | None = None,
) -> tuple[dict[str, float], dict[str, np.ndarray] | None]:
    """The validation metrics of `split` at full size, and the first image for the overlays."""
    num_heads = len(head_depths)
    image_losses, head_counts, accurate_counts, valid, first = [], [], [], [], None
    predict = lambda tiles: np.asarray(all_heads(params, model_state, tiles))  # noqa: E731
    for example in data.eval_examples(
        dataset, split, process_index=jax.process_index(), process_count=jax.process_count()
    ):
        stacked = tiling.predict_tiled(
            predict, example["image"], tile=tile, overlap=tile // 2, align=align
        )
        per_head = np.split(stacked, num_heads, axis=-1)  # H x (*spatial, K)
        mask = example["mask"][None]
        logits = tuple(jnp.asarray(_as_logits(p, output_activation))[None] for p in per_head)
        _, loss_per_head = losses.deep_supervision_loss(
            logits, mask, output_activation=output_activation, ignore_index=ignore_index
        )
        image_losses.append(np.asarray(loss_per_head))
        head_counts.append(
            np.stack(
                [
                    np.asarray(
                        counts.confusion_counts(
                            p[None],
                            mask,
                            output_activation=output_activation,
                            threshold=threshold,
                            ignore_index=ignore_index,
                        )
                    )[0]
                    for p in per_head
                ]
            )
        )
        accurate = np.mean(per_head, axis=0)[None]
        accurate_counts.append(
            np.asarray(
                counts.confusion_counts(
                    accurate,
                    mask,
                    output_activation=output_activation,
                    threshold=threshold,
                    ignore_index=ignore_index,
                )
            )[0]
        )
        valid.append(example["valid"])
        if first is None and example["valid"]:
            first = {"image": example["image"][None], "mask": example["mask"][None]}
    gathered = [np.stack(image_losses), np.stack(head_counts), np.stack(accurate_counts)]
    gathered.append(np.asarray(valid))
    if jax.process_count() > 1:
        gathered = [multihost_utils.process_allgather(a, tiled=True) for a in gathered]
    image_losses, head_counts, accurate_counts, valid = (np.asarray(a) for a in gathered)
    results = heads.summarize_heads(
        image_losses[valid],
        np.moveaxis(head_counts[valid], 0, 1),  # (H, N, K, 4)
        accurate_counts[valid],
        head_depths,
        output_activation=output_activation,
    )
    return results, first
