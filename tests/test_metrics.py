"""Tests for unetjax.metrics against numpy counting and hand-computed scores."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.segmentation_cases import CASES, SPATIAL, random_mask
from unetjax.evaluation import counts as metrics

# One compiled program per case instead of one per eager op keeps the file fast; the errors
# are raised while tracing, so they are still checked.
confusion_counts = jax.jit(
    metrics.confusion_counts, static_argnames=("output_activation", "threshold")
)


def reference_counts(probabilities, mask, activation, threshold=0.5):
    """[tp, fp, fn, tn] per image and class by explicit loops over images and classes."""
    p = np.asarray(probabilities, np.float32)
    batch, classes = p.shape[0], p.shape[-1]
    counts = np.zeros((batch, classes, 4), np.int64)
    for b in range(batch):
        for k in range(classes):
            if activation == "softmax":
                predicted = p[b].argmax(-1) == k
                target = mask[b] == k
            else:
                predicted = p[b, ..., k] >= threshold
                target = (mask[b] if mask.ndim == p.ndim - 1 else mask[b, ..., k]) == 1
            counts[b, k] = [
                np.sum(predicted & target),
                np.sum(predicted & ~target),
                np.sum(~predicted & target),
                np.sum(~predicted & ~target),
            ]
    return counts


def random_case(seed, spatial_dims, activation, classes, multi_label=False):
    rng = np.random.default_rng(seed)
    shape = (3, *SPATIAL[spatial_dims])
    probabilities = rng.uniform(0, 1, (*shape, classes)).astype(np.float32)
    return probabilities, random_mask(rng, shape, activation, classes, multi_label)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize(("activation", "classes", "multi_label"), CASES)
def test_counts_match_numpy_reference(spatial_dims, activation, classes, multi_label):
    probabilities, mask = random_case(spatial_dims, spatial_dims, activation, classes, multi_label)
    counts = confusion_counts(
        jnp.asarray(probabilities), jnp.asarray(mask), output_activation=activation
    )
    assert counts.shape == (3, classes, 4) and counts.dtype == jnp.int32
    np.testing.assert_array_equal(counts, reference_counts(probabilities, mask, activation))


def test_threshold_is_inclusive_and_moves_the_decision():
    probabilities = jnp.array([[[0.9, 0.4], [0.5, 0.1]]])[..., None]
    mask = jnp.array([[[1, 1], [0, 0]]], jnp.int32)
    # >= 0.5: predicted [[1, 0], [1, 0]]; the pixel at exactly 0.5 is a false positive.
    counts = confusion_counts(probabilities, mask, output_activation="sigmoid")
    np.testing.assert_array_equal(counts, [[[1, 1, 1, 1]]])
    counts = confusion_counts(probabilities, mask, output_activation="sigmoid", threshold=0.3)
    np.testing.assert_array_equal(counts, [[[2, 1, 0, 1]]])
    counts = confusion_counts(probabilities, mask, output_activation="sigmoid", threshold=0.95)
    np.testing.assert_array_equal(counts, [[[0, 0, 2, 2]]])


def test_softmax_uses_argmax_and_ignores_threshold():
    # Pixels predict classes 0, 1, 2, 1; targets are 0, 1, 1, 2.
    probabilities = jnp.array(
        [[[[0.5, 0.3, 0.2], [0.2, 0.4, 0.4 - 1e-3], [0.1, 0.2, 0.7], [0.3, 0.35, 0.35 - 1e-3]]]]
    )
    mask = jnp.array([[[0, 1, 1, 2]]], jnp.int32)
    expected = [[[1, 0, 0, 3], [1, 1, 1, 1], [0, 1, 1, 2]]]
    for threshold in (0.5, 0.99):
        counts = confusion_counts(
            probabilities, mask, output_activation="softmax", threshold=threshold
        )
        np.testing.assert_array_equal(counts, expected)


def test_bfloat16_probabilities_and_logits_with_zero_threshold():
    probabilities, mask = random_case(7, 2, "sigmoid", 2, multi_label=True)
    rounded = np.asarray(jnp.asarray(probabilities, jnp.bfloat16), np.float32)
    counts = confusion_counts(
        jnp.asarray(probabilities, jnp.bfloat16), jnp.asarray(mask), output_activation="sigmoid"
    )
    np.testing.assert_array_equal(counts, reference_counts(rounded, mask, "sigmoid"))
    logits = np.log(probabilities / (1 - probabilities))
    counts = confusion_counts(
        jnp.asarray(logits), jnp.asarray(mask), output_activation="sigmoid", threshold=0.0
    )
    np.testing.assert_array_equal(counts, reference_counts(probabilities, mask, "sigmoid"))


def test_confusion_counts_run_under_jit_with_partial():
    probabilities, mask = random_case(8, 3, "softmax", 2)
    count_fn = jax.jit(functools.partial(metrics.confusion_counts, output_activation="softmax"))
    np.testing.assert_array_equal(
        count_fn(jnp.asarray(probabilities), jnp.asarray(mask)),
        reference_counts(probabilities, mask, "softmax"),
    )


def test_counts_reject_mismatched_shapes():
    with pytest.raises(ValueError, match=r"got mask shape \(1, 4, 5\)"):
        metrics.confusion_counts(
            jnp.zeros((1, 4, 4, 1)), jnp.zeros((1, 4, 5), jnp.int32), output_activation="sigmoid"
        )


def test_binary_summary_hand_example_with_an_empty_image():
    # Image 0: tp=1 fp=1 fn=1 tn=1 -> IoU 1/3, Dice 1/2, accuracy 1/2.
    # Image 1: nothing to find, nothing predicted -> IoU = Dice = accuracy = 1.
    # Pooled: tp=1 fp=1 fn=1 tn=5 -> IoU 1/3, Dice 1/2, accuracy 6/8.
    counts = np.array([[[1, 1, 1, 1]], [[0, 0, 0, 4]]])
    summary = metrics.summarize_counts(counts, output_activation="sigmoid")
    assert summary["num_images"] == 2
    np.testing.assert_allclose(summary["iou"], (1 / 3 + 1) / 2)
    np.testing.assert_allclose(summary["iou_std"], (1 - 1 / 3) / 2)
    np.testing.assert_allclose(summary["dice"], 0.75)
    np.testing.assert_allclose(summary["dice_std"], 0.25)
    np.testing.assert_allclose(summary["accuracy"], 0.75)
    np.testing.assert_allclose(summary["per_image/iou"], [2 / 3])
    np.testing.assert_allclose(summary["per_image/dice_std"], [0.25])
    np.testing.assert_allclose(summary["pooled/iou"], [1 / 3])
    np.testing.assert_allclose(summary["pooled/dice"], [1 / 2])
    np.testing.assert_allclose(summary["pooled/accuracy"], [6 / 8])

    pooled = metrics.summarize_counts(counts, output_activation="sigmoid", headline="pooled")
    np.testing.assert_allclose(
        [pooled["iou"], pooled["dice"], pooled["accuracy"]], [1 / 3, 1 / 2, 6 / 8]
    )
    np.testing.assert_allclose(pooled["iou_std"], summary["iou_std"])


def test_all_foreground_and_all_missed_images():
    # 4 px all foreground: perfect (tp=4) vs all missed (fn=4) -> IoU 1 and 0.
    counts = np.array([[[4, 0, 0, 0]], [[0, 0, 4, 0]]])
    summary = metrics.summarize_counts(counts, output_activation="sigmoid")
    np.testing.assert_allclose(
        [summary["iou"], summary["dice"], summary["accuracy"]], [0.5, 0.5, 0.5]
    )
    np.testing.assert_allclose(summary["pooled/iou"], [0.5])
    np.testing.assert_allclose(summary["pooled/dice"], [2 * 4 / (2 * 4 + 4)])


def test_softmax_headline_excludes_background_but_per_class_keeps_it():
    # One image of 4 px, the counts of test_softmax_uses_argmax_and_ignores_threshold.
    # Class IoU: background 1, class 1 1/3, class 2 0; Dice: 1, 1/2, 0.
    counts = np.array([[[1, 0, 0, 3], [1, 1, 1, 1], [0, 1, 1, 2]]])
    summary = metrics.summarize_counts(counts, output_activation="softmax")
    np.testing.assert_allclose(summary["per_image/iou"], [1, 1 / 3, 0])
    np.testing.assert_allclose(summary["per_image/dice"], [1, 1 / 2, 0])
    np.testing.assert_allclose(summary["per_image/accuracy"], [1, 1 / 2, 1 / 2])
    np.testing.assert_allclose(summary["iou"], (1 / 3 + 0) / 2)
    np.testing.assert_allclose(summary["dice"], (1 / 2 + 0) / 2)
    # Two of the four pixels get the right label.
    np.testing.assert_allclose(summary["accuracy"], 2 / 4)


def test_multilabel_headline_averages_all_classes():
    # Class 0: tp=2 fp=0 fn=2 tn=0 -> IoU 1/2, accuracy 1/2; class 1: empty, all right -> 1, 1.
    counts = np.array([[[2, 0, 2, 0], [0, 0, 0, 4]]])
    summary = metrics.summarize_counts(counts, output_activation="sigmoid")
    np.testing.assert_allclose(summary["iou"], 0.75)
    np.testing.assert_allclose(summary["accuracy"], 0.75)


@pytest.mark.parametrize(("activation", "classes", "multi_label"), CASES)
def test_summary_matches_numpy_formulas_on_random_counts(activation, classes, multi_label):
    probabilities, mask = random_case(9, 2, activation, classes, multi_label)
    counts = reference_counts(probabilities, mask, activation)
    tp, fp, fn, tn = (counts[..., i].astype(np.float64) for i in range(4))
    image_iou = tp / (tp + fp + fn)  # random masks: no empty image/class here
    pooled_iou = tp.sum(0) / (tp + fp + fn).sum(0)
    foreground = slice(1, None) if activation == "softmax" else slice(None)
    image_dice = 2 * tp / (2 * tp + fp + fn)
    pooled_accuracy = (tp + tn).sum(0) / (tp + fp + fn + tn).sum(0)
    for headline, expected in [
        ("per_image", image_iou[:, foreground].mean()),
        ("pooled", pooled_iou[foreground].mean()),
    ]:
        summary = metrics.summarize_counts(counts, output_activation=activation, headline=headline)
        np.testing.assert_allclose(summary["iou"], expected)
        np.testing.assert_allclose(summary["per_image/iou_std"], image_iou.std(0))
        np.testing.assert_allclose(summary["pooled/iou"], pooled_iou)
        np.testing.assert_allclose(summary["per_image/dice"], image_dice.mean(0))
        np.testing.assert_allclose(summary["pooled/accuracy"], pooled_accuracy)


def test_a_class_absent_from_the_whole_set_scores_one_when_never_predicted():
    counts = np.array([[[0, 0, 0, 4]], [[0, 0, 0, 4]]])
    summary = metrics.summarize_counts(counts, output_activation="sigmoid", headline="pooled")
    assert summary["iou"] == summary["dice"] == 1.0
    counts = np.array([[[0, 1, 0, 3]], [[0, 0, 0, 4]]])  # one false positive
    summary = metrics.summarize_counts(counts, output_activation="sigmoid", headline="pooled")
    assert summary["iou"] == summary["dice"] == 0.0


@pytest.mark.parametrize(
    ("counts_shape", "kwargs", "message"),
    [
        ((2, 1, 3), {}, r"\(images, classes, 4\).*\(2, 1, 3\)"),
        ((0, 1, 4), {}, "at least one image"),
        ((1, 4), {}, r"got shape \(1, 4\)"),
        ((1, 1, 4), {"headline": "mean"}, "headline"),
        ((1, 1, 4), {"output_activation": "relu"}, "output_activation"),
    ],
)
def test_summary_rejects_bad_input(counts_shape, kwargs, message):
    kwargs = {"output_activation": "sigmoid", **kwargs}
    with pytest.raises(ValueError, match=message):
        metrics.summarize_counts(np.ones(counts_shape), **kwargs)
