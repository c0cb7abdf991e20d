"""Segmentation metrics: per-image confusion counts on device, summarised on the host.

`confusion_counts` is jit-able and batched: it turns probabilities and a mask (the same mask
conventions as `losses`) into counts (B, K, 4) of [tp, fp, fn, tn] per image and class.
Concatenate the batches' counts along axis 0 (dropping any padded images) and call
`summarize_counts` once on the (N, K, 4) result.

Scores per image and class: IoU (Jaccard) = tp / (tp + fp + fn), Dice = 2 tp / (2 tp + fp + fn),
accuracy = (tp + tn) / pixels. Empty case: where the target and the prediction are both empty
(tp + fp + fn = 0), IoU = Dice = 1, since the prediction is exactly right. The summary reports each
score two ways, per class:

- per image ("per_image/..."): the score of every image, then the mean (and std) over images.
  Every image counts equally, as clinical evaluations usually want. This is the default headline.
- pooled ("pooled/..."): counts summed over all images first, then one score. Large objects
  dominate; a class never present nor predicted in the whole set scores 1, as above.

Ignored pixels: with softmax and `ignore_index` (e.g. 255 for "void"), pixels whose mask equals
it are in none of the four counts, so they change no score.

Background: with softmax, class 0 is background; the per-class arrays keep all K classes (index 0
is background), but the headline IoU and Dice average the foreground classes 1..K-1 only, since
background scores near 1 and would hide the classes of interest. Headline accuracy is the
fraction of pixels given the right label (all classes). With sigmoid every channel is a
foreground class and all of them are averaged; headline accuracy is the mean over classes.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from unetjax.losses import ignored_pixels, targets_from_mask

Headline = Literal["per_image", "pooled"]
HEADLINES = ("per_image", "pooled")
SCORES = ("iou", "dice", "accuracy")


def confusion_counts(
    probabilities: jax.Array,
    mask: jax.Array,
    *,
    output_activation: str,
    threshold: float = 0.5,
    ignore_index: int | None = None,
    scored: jax.Array | None = None,
) -> jax.Array:
    """int32 counts (B, K, 4) of [tp, fp, fn, tn] per image and class.

    Prediction: sigmoid -> `probabilities >= threshold` per class; softmax -> argmax over classes
    (threshold unused). Logits work too: for sigmoid, pass `threshold=0.0`. Pixels whose mask is
    `ignore_index` (softmax), or outside `scored` (B, *spatial) where given, are not counted.
    """
    mask, valid = ignored_pixels(
        mask, ignore_index, output_activation=output_activation, scored=scored
    )
    targets = targets_from_mask(mask, probabilities.shape, output_activation=output_activation)
    targets = targets > 0.5
    if output_activation == "sigmoid":
        predicted = probabilities.astype(jnp.float32) >= threshold
    else:
        num_classes = probabilities.shape[-1]
        labels = jnp.argmax(probabilities, axis=-1)
        predicted = jax.nn.one_hot(labels, num_classes, dtype=jnp.bool_)
    spatial_axes = tuple(range(1, probabilities.ndim - 1))
    kept = True if valid is None else valid[..., None]

    def count(where: jax.Array) -> jax.Array:
        return jnp.sum(where & kept, axis=spatial_axes, dtype=jnp.int32)

    return jnp.stack(
        [
            count(predicted & targets),
            count(predicted & ~targets),
            count(~predicted & targets),
            count(~predicted & ~targets),
        ],
        axis=-1,
    )


def counts_at_thresholds(
    probabilities: jax.Array,
    mask: jax.Array,
    *,
    output_activation: str,
    thresholds: tuple[float, ...],
    ignore_index: int | None = None,
    scored: jax.Array | None = None,
) -> jax.Array:
    """int32 counts (B, T, K, 4) at each of T sigmoid thresholds (softmax: T identical argmaxes;
    pass one threshold). jit-able with `thresholds` static, as a threshold sweep needs."""
    return jnp.stack(
        [
            confusion_counts(
                probabilities,
                mask,
                output_activation=output_activation,
                threshold=threshold,
                ignore_index=ignore_index,
                scored=scored,
            )
            for threshold in thresholds
        ],
        axis=1,
    )


def scores_from_counts(counts: np.ndarray) -> dict[str, np.ndarray]:
    """IoU, Dice and accuracy per entry of float64 counts (..., 4); both-empty scores 1."""
    tp, fp, fn, tn = np.moveaxis(np.asarray(counts, np.float64), -1, 0)
    errors = fp + fn
    empty = tp + errors == 0
    # The denominators are only 0 where `empty`, and those entries are replaced by 1.
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(empty, 1.0, tp / (tp + errors))
        dice = np.where(empty, 1.0, 2 * tp / (2 * tp + errors))
        accuracy = (tp + tn) / (tp + errors + tn)
    return {"iou": iou, "dice": dice, "accuracy": accuracy}


def summarize_counts(
    counts: np.ndarray, *, output_activation: str, headline: Headline = "per_image"
) -> dict[str, float | int | np.ndarray]:
    """Summary of counts (N, K, 4) gathered over a set of N images (see the module docstring).

    Returns a flat dict (names suit a metrics logger):
      "iou", "dice", "accuracy": headline floats, per image (default) or pooled;
      "iou_std", "dice_std", "accuracy_std": std over images of each image's class-averaged
        score (the spread behind the per-image headline, whatever `headline` is);
      "per_image/{score}", "per_image/{score}_std": (K,) mean and std over images, per class;
      "pooled/{score}": (K,) scores of the summed counts, per class;
      "num_images": N.
    """
    if output_activation not in ("sigmoid", "softmax"):
        raise ValueError(
            f"output_activation must be 'sigmoid' or 'softmax', got {output_activation!r}"
        )
    if headline not in HEADLINES:
        raise ValueError(f"headline must be one of {HEADLINES}, got {headline!r}")
    counts = np.asarray(counts, np.float64)
    if counts.ndim != 3 or counts.shape[-1] != 4 or counts.shape[0] == 0:
        raise ValueError(
            f"counts must be (images, classes, 4) [tp, fp, fn, tn] with at least one image, "
            f"got shape {counts.shape}"
        )
    softmax = output_activation == "softmax"
    classes = slice(1, None) if softmax else slice(None)

    per_image = scores_from_counts(counts)  # each (N, K)
    pooled_counts = counts.sum(axis=0)
    pooled = scores_from_counts(pooled_counts)  # each (K,)
    # Accuracy of the whole labelling: with softmax each pixel is a tp of exactly one class.
    if softmax:
        per_image["pixel_accuracy"] = counts[..., 0].sum(-1) / counts[:, 0].sum(-1)
        pooled["pixel_accuracy"] = pooled_counts[:, 0].sum() / pooled_counts[0].sum()
    else:
        per_image["pixel_accuracy"] = per_image["accuracy"].mean(-1)
        pooled["pixel_accuracy"] = pooled["accuracy"].mean()

    summary: dict[str, float | int | np.ndarray] = {}
    for score in SCORES:
        if score == "accuracy":
            image_scores = per_image["pixel_accuracy"]
            pooled_score = pooled["pixel_accuracy"]
        else:
            image_scores = per_image[score][:, classes].mean(-1)
            pooled_score = pooled[score][classes].mean()
        summary[score] = float(image_scores.mean() if headline == "per_image" else pooled_score)
        summary[f"{score}_std"] = float(image_scores.std())
    for score in SCORES:
        summary[f"per_image/{score}"] = per_image[score].mean(0)
        summary[f"per_image/{score}_std"] = per_image[score].std(0)
        summary[f"pooled/{score}"] = pooled[score]
    summary["num_images"] = counts.shape[0]
    return summary
