"""Tests for unetjax.losses against numpy float64 formulas and hand-computed examples."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.segmentation_cases import CASES, SPATIAL, random_mask
from unetjax import losses

STATIC = ("output_activation", "ce_weight", "smooth", "dice_reduction")
# One compiled program per case instead of one per eager op keeps the file fast; the errors
# are raised while tracing, so they are still checked.
segmentation_loss = jax.jit(losses.segmentation_loss, static_argnames=STATIC)
deep_supervision_loss = jax.jit(
    losses.deep_supervision_loss, static_argnames=(*STATIC, "head_weights")
)


def reference_loss(logits, mask, activation, weight=None, reduction="image", smooth=1.0):
    """The per-head loss written directly from its definition, in float64 numpy."""
    x = np.asarray(logits, np.float64)
    classes = x.shape[-1]
    if activation == "softmax":
        y = np.eye(classes)[mask]
        p = np.exp(x - x.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        ce = -(y * np.log(p)).sum(-1)
        ce_weight = 1.0
    else:
        y = mask[..., None] if mask.ndim == x.ndim - 1 else mask
        y = y.astype(np.float64)
        p = 1 / (1 + np.exp(-x))
        ce = -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean(-1)
        ce_weight = 0.5
    if weight is not None:
        ce = ce * weight
    axes = tuple(range(1, x.ndim - 1))
    if reduction == "batch":
        axes = (0, *axes)
    dice = (2 * (p * y).sum(axes) + smooth) / (p.sum(axes) + y.sum(axes) + smooth)
    return ce_weight * ce.mean() + 1 - dice.mean()


def random_case(seed, spatial_dims, activation, classes, multi_label=False):
    rng = np.random.default_rng(seed)
    shape = (2, *SPATIAL[spatial_dims])
    logits = rng.normal(0, 2, (*shape, classes)).astype(np.float32)
    return logits, random_mask(rng, shape, activation, classes, multi_label)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize(("activation", "classes", "multi_label"), CASES)
@pytest.mark.parametrize("reduction", ["image", "batch"])
def test_loss_matches_numpy_reference(spatial_dims, activation, classes, multi_label, reduction):
    logits, mask = random_case(spatial_dims, spatial_dims, activation, classes, multi_label)
    loss = segmentation_loss(
        jnp.asarray(logits),
        jnp.asarray(mask),
        output_activation=activation,
        dice_reduction=reduction,
    )
    assert loss.shape == () and loss.dtype == jnp.float32
    np.testing.assert_allclose(
        loss, reference_loss(logits, mask, activation, reduction=reduction), rtol=1e-5
    )


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize(("activation", "classes", "multi_label"), CASES)
def test_pixel_weight_scales_only_the_cross_entropy(spatial_dims, activation, classes, multi_label):
    logits, mask = random_case(10 + spatial_dims, spatial_dims, activation, classes, multi_label)
    weight = np.random.default_rng(0).uniform(0.5, 5.0, logits.shape[:-1]).astype(np.float32)
    loss = segmentation_loss(
        jnp.asarray(logits),
        jnp.asarray(mask),
        output_activation=activation,
        weight=jnp.asarray(weight),
    )
    np.testing.assert_allclose(loss, reference_loss(logits, mask, activation, weight), rtol=1e-5)


def test_binary_hand_example():
    # p = 0.5 everywhere: BCE = log 2; Dice = (2 * 0.5 + 1) / (1 + 1 + 1) = 2/3.
    logits = jnp.zeros((1, 1, 2, 1))
    mask = jnp.array([[[1, 0]]], jnp.int32)
    loss = segmentation_loss(logits, mask, output_activation="sigmoid")
    np.testing.assert_allclose(loss, 0.5 * math.log(2) + 1 / 3, rtol=1e-6)


def test_softmax_hand_example():
    # p = 0.5 for both classes: CE = log 2; each class's Dice = 2/3 as above.
    logits = jnp.zeros((1, 1, 2, 2))
    mask = jnp.array([[[0, 1]]], jnp.int32)
    loss = segmentation_loss(logits, mask, output_activation="softmax")
    np.testing.assert_allclose(loss, math.log(2) + 1 / 3, rtol=1e-6)


def test_empty_mask_dice_is_smooth_over_predicted_mass_plus_smooth():
    # 4 pixels at p = 0.5, empty mask: Dice = 1 / (2 + 1).
    logits = jnp.zeros((1, 2, 2, 1))
    mask = jnp.zeros((1, 2, 2), jnp.int32)
    loss = segmentation_loss(logits, mask, output_activation="sigmoid")
    np.testing.assert_allclose(loss, 0.5 * math.log(2) + 1 - 1 / 3, rtol=1e-6)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_confident_correct_predictions_give_zero_loss_on_empty_and_full_masks(spatial_dims):
    shape = (2, *SPATIAL[spatial_dims])
    mask = np.zeros(shape, np.int32)
    mask[1] = 1  # image 0 empty, image 1 all foreground
    logits = np.where(mask[..., None] == 1, 30.0, -30.0).astype(np.float32)
    loss = segmentation_loss(jnp.asarray(logits), jnp.asarray(mask), output_activation="sigmoid")
    assert abs(float(loss)) < 1e-6


def test_confidently_wrong_logits_stay_finite():
    # log(sigmoid(-100)) underflows to -inf in float32; log_sigmoid gives -100 exactly.
    logits = jnp.full((1, 2, 2, 1), -100.0)
    mask = jnp.ones((1, 2, 2), jnp.int32)
    loss_fn = functools.partial(losses.segmentation_loss, output_activation="sigmoid")
    loss, grad = jax.value_and_grad(loss_fn)(logits, mask)
    # Dice = (0 + 1) / (0 + 4 + 1).
    np.testing.assert_allclose(loss, 0.5 * 100 + 1 - 1 / 5, rtol=1e-6)
    assert np.all(np.isfinite(grad))


def test_batch_reduction_pools_an_empty_image_with_a_full_one():
    # Image 0 empty with p = 0.5 (4 px); image 1 full with p = 0.5 (4 px).
    # Per image: Dice = 1/3 and (4 + 1)/(2 + 4 + 1) = 5/7. Pooled: (4 + 1)/(4 + 4 + 1) = 5/9.
    logits = jnp.zeros((2, 2, 2, 1))
    mask = jnp.stack([jnp.zeros((2, 2), jnp.int32), jnp.ones((2, 2), jnp.int32)])
    bce = 0.5 * math.log(2)
    per_image = segmentation_loss(logits, mask, output_activation="sigmoid")
    pooled = segmentation_loss(logits, mask, output_activation="sigmoid", dice_reduction="batch")
    np.testing.assert_allclose(per_image, bce + 1 - (1 / 3 + 5 / 7) / 2, rtol=1e-6)
    np.testing.assert_allclose(pooled, bce + 1 - 5 / 9, rtol=1e-6)


@pytest.mark.parametrize(("activation", "classes", "multi_label"), CASES)
def test_bfloat16_logits_are_computed_in_float32(activation, classes, multi_label):
    logits, mask = random_case(3, 2, activation, classes, multi_label)
    logits_bf16 = jnp.asarray(logits, jnp.bfloat16)
    loss = segmentation_loss(logits_bf16, jnp.asarray(mask), output_activation=activation)
    assert loss.dtype == jnp.float32
    # bfloat16 arithmetic would be off by ~1e-2; float32 on the rounded logits matches to 1e-5.
    expected = reference_loss(np.asarray(logits_bf16, np.float32), mask, activation)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_ce_weight_and_smooth_options():
    logits, mask = random_case(4, 2, "sigmoid", 1)
    loss = segmentation_loss(
        jnp.asarray(logits),
        jnp.asarray(mask),
        output_activation="sigmoid",
        ce_weight=2.0,
        smooth=0.0,
    )
    half = reference_loss(logits, mask, "sigmoid", smooth=0.0)
    dice_part = reference_loss(logits, mask, "sigmoid", weight=np.zeros(mask.shape), smooth=0.0)
    np.testing.assert_allclose(loss, dice_part + 4 * (half - dice_part), rtol=1e-5)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_deep_supervision_sums_heads_and_applies_head_weights(spatial_dims):
    heads = [random_case(20 + h, spatial_dims, "softmax", 3)[0] for h in range(3)]
    _, mask = random_case(20, spatial_dims, "softmax", 3)
    expected = np.array([reference_loss(h, mask, "softmax") for h in heads])
    total, per_head = deep_supervision_loss(
        [jnp.asarray(h) for h in heads], jnp.asarray(mask), output_activation="softmax"
    )
    np.testing.assert_allclose(per_head, expected, rtol=1e-5)
    np.testing.assert_allclose(total, expected.sum(), rtol=1e-5)

    head_weights = (0.25, 0.5, 1.0)
    total, per_head = deep_supervision_loss(
        [jnp.asarray(h) for h in heads],
        jnp.asarray(mask),
        output_activation="softmax",
        head_weights=head_weights,
    )
    np.testing.assert_allclose(per_head, expected, rtol=1e-5)
    np.testing.assert_allclose(total, (np.array(head_weights) * expected).sum(), rtol=1e-5)


def test_deep_supervision_passes_the_pixel_weight_to_every_head():
    heads = [random_case(30 + h, 2, "sigmoid", 1)[0] for h in range(2)]
    _, mask = random_case(30, 2, "sigmoid", 1)
    weight = np.random.default_rng(1).uniform(0.5, 5.0, mask.shape).astype(np.float32)
    total, _ = deep_supervision_loss(
        [jnp.asarray(h) for h in heads],
        jnp.asarray(mask),
        output_activation="sigmoid",
        weight=jnp.asarray(weight),
    )
    expected = sum(reference_loss(h, mask, "sigmoid", weight) for h in heads)
    np.testing.assert_allclose(total, expected, rtol=1e-5)


def test_losses_run_under_jit():
    logits, mask = random_case(5, 3, "sigmoid", 2, multi_label=True)
    loss_fn = jax.jit(functools.partial(losses.segmentation_loss, output_activation="sigmoid"))
    np.testing.assert_allclose(
        loss_fn(jnp.asarray(logits), jnp.asarray(mask)),
        reference_loss(logits, mask, "sigmoid"),
        rtol=1e-5,
    )

    deep_fn = jax.jit(
        functools.partial(
            losses.deep_supervision_loss, output_activation="sigmoid", head_weights=(1.0, 0.5)
        )
    )
    total, per_head = deep_fn((jnp.asarray(logits), jnp.asarray(-logits)), jnp.asarray(mask))
    expected = [reference_loss(logits, mask, "sigmoid"), reference_loss(-logits, mask, "sigmoid")]
    np.testing.assert_allclose(per_head, expected, rtol=1e-5)
    np.testing.assert_allclose(total, expected[0] + 0.5 * expected[1], rtol=1e-5)


def test_deep_supervision_rejects_a_head_weight_count_mismatch():
    logits = jnp.zeros((1, 2, 2, 1))
    mask = jnp.zeros((1, 2, 2), jnp.int32)
    with pytest.raises(ValueError, match="3 head_weights for 2 heads"):
        deep_supervision_loss(
            [logits, logits], mask, output_activation="sigmoid", head_weights=(1.0, 1.0, 1.0)
        )
    with pytest.raises(ValueError, match="empty"):
        deep_supervision_loss([], mask, output_activation="sigmoid")


@pytest.mark.parametrize(
    ("logits_shape", "mask_shape", "activation", "message"),
    [
        ((1, 4, 4, 1), (1, 4, 5), "sigmoid", r"\(1, 4, 4\).*got mask shape \(1, 4, 5\)"),
        ((1, 4, 4, 3), (1, 4, 4), "sigmoid", r"multi-label.*got mask shape \(1, 4, 4\)"),
        ((1, 4, 4, 3), (1, 4, 4, 3), "softmax", r"integer label mask of shape \(1, 4, 4\)"),
        ((1, 4, 4, 1), (1, 4, 4), "softmax", ">= 2 classes"),
        ((1, 4, 4, 2, 1), (1, 4, 4), "sigmoid", r"\(1, 4, 4, 2\).*got mask shape \(1, 4, 4\)"),
        ((4, 1), (4,), "sigmoid", "batch, \\*spatial, classes"),
        ((1, 4, 4, 1), (1, 4, 4), "tanh", "output_activation"),
    ],
)
def test_shape_mismatches_raise_clear_errors(logits_shape, mask_shape, activation, message):
    with pytest.raises(ValueError, match=message):
        segmentation_loss(
            jnp.zeros(logits_shape), jnp.zeros(mask_shape, jnp.int32), output_activation=activation
        )


def test_weight_shape_mismatch_raises():
    with pytest.raises(ValueError, match=r"weight must have shape \(1, 4, 4\).*\(1, 4, 4, 1\)"):
        segmentation_loss(
            jnp.zeros((1, 4, 4, 1)),
            jnp.zeros((1, 4, 4), jnp.int32),
            output_activation="sigmoid",
            weight=jnp.ones((1, 4, 4, 1)),
        )
