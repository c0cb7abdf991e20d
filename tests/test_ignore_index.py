"""ignore_index: pixels labelled "void" count in neither the loss nor the confusion counts,
checked against numpy float64 formulas and against cropping the void pixels away."""

import jax
import numpy as np
import pytest

from unetjax import losses
from unetjax.evaluation import counts

VOID = 255
STATIC = ("output_activation", "dice_reduction", "ignore_index")
segmentation_loss = jax.jit(losses.segmentation_loss, static_argnames=STATIC)
confusion_counts = jax.jit(
    counts.confusion_counts, static_argnames=("output_activation", "ignore_index")
)


def case(seed, shape=(2, 6, 7), classes=3, void_fraction=0.3):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (*shape, classes)).astype(np.float32)
    mask = rng.integers(0, classes, shape).astype(np.int32)
    mask[rng.random(shape) < void_fraction] = VOID
    return logits, mask


def reference_loss(logits, mask, reduction):
    """Cross-entropy over the kept pixels plus 1 - soft Dice (s = 1) over the kept pixels."""
    x = np.asarray(logits, np.float64)
    kept = mask != VOID
    y = np.eye(x.shape[-1])[np.where(kept, mask, 0)] * kept[..., None]
    p = np.exp(x - x.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    ce = -(y * np.log(p)).sum(-1)[kept].mean()
    p = p * kept[..., None]
    axes = (1, 2) if reduction == "image" else (0, 1, 2)
    dice = (2 * (p * y).sum(axes) + 1) / (p.sum(axes) + y.sum(axes) + 1)
    return ce + 1 - dice.mean()


@pytest.mark.parametrize("reduction", ["image", "batch"])
def test_loss_leaves_out_void_pixels_as_the_formula_says(reduction):
    logits, mask = case(0)
    loss = segmentation_loss(
        logits, mask, output_activation="softmax", dice_reduction=reduction, ignore_index=VOID
    )
    np.testing.assert_allclose(float(loss), reference_loss(logits, mask, reduction), rtol=1e-5)


def test_a_void_half_gives_the_loss_of_the_other_half_alone():
    logits, mask = case(1, void_fraction=0.0)
    mask[:, :, 4:] = VOID
    with_void = segmentation_loss(logits, mask, output_activation="softmax", ignore_index=VOID)
    cropped = segmentation_loss(logits[:, :, :4], mask[:, :, :4], output_activation="softmax")
    np.testing.assert_allclose(float(with_void), float(cropped), rtol=1e-6)


def test_deep_supervision_passes_ignore_index_to_every_head():
    logits, mask = case(2)
    total, per_head = losses.deep_supervision_loss(
        [logits, logits * 0.5], mask, output_activation="softmax", ignore_index=VOID
    )
    expected = [reference_loss(x, mask, "image") for x in (logits, logits * 0.5)]
    np.testing.assert_allclose(np.asarray(per_head), expected, rtol=1e-5)
    np.testing.assert_allclose(float(total), sum(expected), rtol=1e-5)


def test_confusion_counts_skip_void_pixels():
    logits, mask = case(3, shape=(3, 5, 8), classes=4)
    got = np.asarray(confusion_counts(logits, mask, output_activation="softmax", ignore_index=VOID))
    predicted = logits.argmax(-1)
    expected = np.zeros((3, 4, 4), np.int64)
    for image in range(3):
        kept = mask[image] != VOID
        for k in range(4):
            p, t = predicted[image][kept] == k, mask[image][kept] == k
            expected[image, k] = [(p & t).sum(), (p & ~t).sum(), (~p & t).sum(), (~p & ~t).sum()]
    np.testing.assert_array_equal(got, expected)
    assert got.sum(-1).tolist() == [[(m != VOID).sum()] * 4 for m in mask]


def test_ignore_index_is_refused_for_sigmoid_outputs():
    logits, mask = case(4, classes=1, void_fraction=0.0)
    with pytest.raises(ValueError, match="ignore_index=255 is for softmax"):
        losses.segmentation_loss(logits, mask % 2, output_activation="sigmoid", ignore_index=VOID)
    with pytest.raises(ValueError, match="ignore_index=255 is for softmax"):
        counts.confusion_counts(logits, mask % 2, output_activation="sigmoid", ignore_index=VOID)


def reference_sigmoid_loss(logits, mask):
    """Binary: 0.5 x mean binary cross-entropy + 1 - soft Dice (s = 1) per image, float64."""
    x, y = np.asarray(logits, np.float64)[..., 0], mask.astype(np.float64)
    p = 1 / (1 + np.exp(-x))
    ce = -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean()
    axes = tuple(range(1, x.ndim))
    dice = (2 * (p * y).sum(axes) + 1) / (p.sum(axes) + y.sum(axes) + 1)
    return 0.5 * ce + 1 - dice.mean()


def test_a_scored_region_gives_the_loss_and_counts_of_the_crop_alone():
    """What full-size evaluation relies on: an image zero-padded to a size bucket, scored only
    inside its own extent, scores as the unpadded image (sigmoid here, where ignore_index is
    refused)."""
    rng = np.random.default_rng(5)
    logits = rng.normal(0, 2, (1, 5, 7, 1)).astype(np.float32)
    mask = rng.integers(0, 2, (1, 5, 7)).astype(np.int32)
    padded_logits = np.pad(logits, ((0, 0), (0, 3), (0, 1), (0, 0)))
    padded_mask = np.pad(mask, ((0, 0), (0, 3), (0, 1)), constant_values=1)
    scored = np.pad(np.ones(mask.shape, bool), ((0, 0), (0, 3), (0, 1)))
    loss = losses.segmentation_loss(
        padded_logits, padded_mask, output_activation="sigmoid", scored=scored
    )
    np.testing.assert_allclose(float(loss), reference_sigmoid_loss(logits, mask), rtol=1e-5)
    got = counts.confusion_counts(
        padded_logits, padded_mask, output_activation="sigmoid", threshold=0.0, scored=scored
    )
    p, t = logits[0, ..., 0] >= 0, mask[0] == 1
    expected = [(p & t).sum(), (p & ~t).sum(), (~p & t).sum(), (~p & ~t).sum()]
    np.testing.assert_array_equal(np.asarray(got)[0, 0], expected)


def test_a_scored_region_and_void_pixels_are_both_left_out():
    logits, mask = case(6)
    scored = np.ones(mask.shape, bool)
    scored[:, 4:] = False
    loss = segmentation_loss(
        logits, mask, output_activation="softmax", ignore_index=VOID, scored=scored
    )
    expected = reference_loss(logits[:, :4], mask[:, :4], "image")
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
