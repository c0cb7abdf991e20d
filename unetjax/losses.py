"""Segmentation losses: the UNet++ per-head loss (cross-entropy + soft Dice) and deep supervision.

Logits are channels-last, (batch, *spatial, classes), 2D or 3D, in any float dtype: the math runs
in float32. Masks follow the data pipeline:

- sigmoid, one class: int mask (B, *spatial) in {0, 1}, logits (B, *spatial, 1);
- sigmoid, multi-label: int mask (B, *spatial, K) in {0, 1}, one channel per class;
- softmax, K >= 2: int mask (B, *spatial) in 0..K-1 (a label outside that range one-hots to
  all zeros, which cannot be checked under jit).

Ignored pixels (softmax only): with `ignore_index` (e.g. 255, a "void" label outside 0..K-1),
pixels whose mask equals it count in neither term: the cross-entropy is the mean over the other
pixels, and they add nothing to the Dice sums, as if the image were cropped to the rest.

Per head the loss is `ce_weight * cross_entropy + (1 - soft_dice)`. `ce_weight` defaults to 0.5
for sigmoid (the UNet++ paper, Eq. 1, and its Keras code) and 1 for softmax. An optional per-pixel
`weight` (B, *spatial), e.g. the U-Net border weight map, multiplies the cross-entropy term only;
the cross-entropy is the mean over pixels of `weight * ce`, so an all-ones weight changes nothing.

Soft Dice, per class k: (2 sum(p * y) + s) / (sum(p) + sum(y) + s), p the probabilities, y the
one-hot targets, s = `smooth`. Default reduction "image": sums over each image's pixels, then the
mean over images and classes. The paper writes its loss per image (a sum over the batch of each
image's Dice, over N), so every image counts equally whatever its object size, and the loss does
not depend on the batch size. "batch" pools the sums over the whole batch, as the Keras UNet++
code does (one Dice per class), which is gentler on images with small or no foreground.

Empty masks: where a class is absent from an image, its Dice is s / (sum(p) + s), equal to 1 (no
loss) when the prediction is empty too and falling towards 0 as predicted mass grows, so an empty
image still pushes false positives down. s = 1 (the Keras code's value) keeps that finite and is
small next to pixel counts, so it barely moves the Dice of non-empty masks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import jax
import jax.numpy as jnp

OUTPUT_ACTIVATIONS = ("sigmoid", "softmax")
DiceReduction = Literal["image", "batch"]
DICE_REDUCTIONS = ("image", "batch")


def targets_from_mask(
    mask: jax.Array, logits_shape: Sequence[int], *, output_activation: str
) -> jax.Array:
    """Float32 one-hot targets shaped like the logits, (B, *spatial, K), from a pipeline mask.

    The one place that decodes the mask conventions (see the module docstring); raises a
    ValueError naming both shapes and the expected form when the mask does not fit the logits.
    """
    if output_activation not in OUTPUT_ACTIVATIONS:
        raise ValueError(
            f"output_activation must be one of {OUTPUT_ACTIVATIONS}, got {output_activation!r}"
        )
    logits_shape = tuple(logits_shape)
    if len(logits_shape) < 3:
        raise ValueError(
            f"logits must be (batch, *spatial, classes) with 2D or 3D spatial axes, "
            f"got shape {logits_shape}"
        )
    num_classes = logits_shape[-1]
    label_shape = logits_shape[:-1]
    mask_shape = tuple(mask.shape)
    if output_activation == "softmax":
        if num_classes < 2:
            raise ValueError(
                f"softmax needs logits with >= 2 classes, got shape {logits_shape} "
                "(use sigmoid for one class)"
            )
        if mask_shape != label_shape:
            raise ValueError(
                f"softmax expects an integer label mask of shape {label_shape} "
                f"(batch, *spatial) for logits of shape {logits_shape}, got mask shape {mask_shape}"
            )
        return jax.nn.one_hot(mask, num_classes, dtype=jnp.float32)
    if num_classes == 1 and mask_shape == label_shape:
        return mask.astype(jnp.float32)[..., None]
    if mask_shape == logits_shape:
        return mask.astype(jnp.float32)
    expected = (
        f"{label_shape} (binary, batch and spatial axes) or {logits_shape}"
        if num_classes == 1
        else f"{logits_shape} (multi-label: one {{0, 1}} channel per class)"
    )
    raise ValueError(
        f"sigmoid logits of shape {logits_shape} expect a mask of shape {expected}, "
        f"got mask shape {mask_shape}"
    )


def ignored_pixels(
    mask: jax.Array,
    ignore_index: int | None,
    *,
    output_activation: str,
    scored: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array | None]:
    """(mask with ignored pixels set to class 0, valid (B, *spatial) bool or None).

    Valid pixels are those in `scored` (None: all) whose label is not `ignore_index`. The caller
    zeroes the targets where not valid; setting those labels to 0 first keeps the one-hot
    defined whatever `ignore_index` is.
    """
    if ignore_index is None:
        return mask, scored
    if output_activation != "softmax":
        raise ValueError(
            f"ignore_index={ignore_index} is for softmax (multi-class) masks; got "
            f"output_activation={output_activation!r}"
        )
    valid = mask != ignore_index
    if scored is not None:
        valid = valid & scored
    return jnp.where(valid, mask, 0), valid


def segmentation_loss(
    logits: jax.Array,
    mask: jax.Array,
    *,
    output_activation: str,
    weight: jax.Array | None = None,
    ce_weight: float | None = None,
    smooth: float = 1.0,
    dice_reduction: DiceReduction = "image",
    ignore_index: int | None = None,
    scored: jax.Array | None = None,
) -> jax.Array:
    """One head's loss, a float32 scalar: `ce_weight * cross_entropy + 1 - soft_dice`.

    Args:
      logits: (B, *spatial, K), any float dtype.
      mask: see the module docstring for its shape under each `output_activation`.
      output_activation: "sigmoid" (binary or multi-label) or "softmax" (multi-class).
      weight: optional per-pixel weight (B, *spatial) on the cross-entropy term.
      ce_weight: weight of the cross-entropy; None means 0.5 for sigmoid (UNet++), 1 for softmax.
      smooth: Dice smoothing s, >= 0; s > 0 keeps empty masks finite.
      dice_reduction: "image" (per image and class, then averaged) or "batch" (pooled).
      ignore_index: softmax mask value whose pixels are left out of both terms.
      scored: optional (B, *spatial) bool; pixels outside it are left out of both terms (the
        padding that gives images of many sizes one compiled shape).
    """
    mask, valid = ignored_pixels(
        mask, ignore_index, output_activation=output_activation, scored=scored
    )
    targets = targets_from_mask(mask, logits.shape, output_activation=output_activation)
    if dice_reduction not in DICE_REDUCTIONS:
        raise ValueError(f"dice_reduction must be one of {DICE_REDUCTIONS}, got {dice_reduction!r}")
    if smooth < 0:
        raise ValueError(f"smooth must be >= 0, got {smooth}")
    logits = logits.astype(jnp.float32)
    sigmoid = output_activation == "sigmoid"

    if sigmoid:
        # log_sigmoid(-x) = log(1 - sigmoid(x)) without cancellation for large |x|.
        per_class = -(
            targets * jax.nn.log_sigmoid(logits) + (1.0 - targets) * jax.nn.log_sigmoid(-logits)
        )
        pixel_ce = jnp.mean(per_class, axis=-1)
        probabilities = jax.nn.sigmoid(logits)
    else:
        pixel_ce = -jnp.sum(targets * jax.nn.log_softmax(logits, axis=-1), axis=-1)
        probabilities = jax.nn.softmax(logits, axis=-1)
    if weight is not None:
        if tuple(weight.shape) != pixel_ce.shape:
            raise ValueError(
                f"weight must have shape {pixel_ce.shape} (batch, *spatial) for logits of shape "
                f"{logits.shape}, got weight shape {tuple(weight.shape)}"
            )
        pixel_ce = pixel_ce * weight.astype(jnp.float32)
    if valid is None:
        cross_entropy = jnp.mean(pixel_ce)
    else:
        kept = valid.astype(jnp.float32)
        cross_entropy = jnp.sum(pixel_ce * kept) / jnp.maximum(jnp.sum(kept), 1.0)
        targets = targets * kept[..., None]
        probabilities = probabilities * kept[..., None]

    dice = soft_dice(probabilities, targets, smooth=smooth, reduction=dice_reduction)
    if ce_weight is None:
        ce_weight = 0.5 if sigmoid else 1.0
    return ce_weight * cross_entropy + 1.0 - jnp.mean(dice)


def soft_dice(
    probabilities: jax.Array,
    targets: jax.Array,
    *,
    smooth: float = 1.0,
    reduction: DiceReduction = "image",
) -> jax.Array:
    """Soft Dice per class from (B, *spatial, K) arrays: (B, K) for "image", (K,) for "batch"."""
    spatial_axes = tuple(range(1, probabilities.ndim - 1))
    axes = spatial_axes if reduction == "image" else (0, *spatial_axes)
    intersection = jnp.sum(probabilities * targets, axis=axes)
    total = jnp.sum(probabilities, axis=axes) + jnp.sum(targets, axis=axes)
    return (2.0 * intersection + smooth) / (total + smooth)


def deep_supervision_loss(
    head_logits: Sequence[jax.Array],
    mask: jax.Array,
    *,
    output_activation: str,
    head_weights: Sequence[float] | None = None,
    weight: jax.Array | None = None,
    ce_weight: float | None = None,
    smooth: float = 1.0,
    dice_reduction: DiceReduction = "image",
    ignore_index: int | None = None,
    scored: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Deep supervision over the model's heads, all at full resolution against the same mask.

    Returns `(total, per_head)`: `per_head` (H,) holds each head's unweighted
    `segmentation_loss`, so logs compare across weightings; `total` is their sum (the UNet++
    paper) or, with `head_weights`, the weighted sum `sum(head_weights[h] * per_head[h])`.
    The other keywords go to `segmentation_loss`.
    """
    if len(head_logits) == 0:
        raise ValueError("head_logits is empty: expected one logits array per head")
    if head_weights is not None and len(head_weights) != len(head_logits):
        raise ValueError(
            f"got {len(head_weights)} head_weights for {len(head_logits)} heads: "
            "give one weight per head, in the model's head order (shallow to deep)"
        )
    per_head = jnp.stack(
        [
            segmentation_loss(
                logits,
                mask,
                output_activation=output_activation,
                weight=weight,
                ce_weight=ce_weight,
                smooth=smooth,
                dice_reduction=dice_reduction,
                ignore_index=ignore_index,
                scored=scored,
            )
            for logits in head_logits
        ]
    )
    if head_weights is None:
        return jnp.sum(per_head), per_head
    return jnp.sum(jnp.asarray(head_weights, jnp.float32) * per_head), per_head
