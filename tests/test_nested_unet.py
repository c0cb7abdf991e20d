"""NestedUNet against the papers' parameter counts, hand formulas and its own full pass."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from unetjax import graph as g
from unetjax import layers
from unetjax import nested_unet as nu

TINY = (4, 8, 16)  # depth 2


def abstract(architecture, **options):
    """The model's structure without allocating parameters (fast for the 9M-parameter counts)."""
    return nnx.eval_shape(lambda: nu.create(architecture, rngs=nnx.Rngs(0), **options))


@pytest.mark.parametrize(
    ("architecture", "options", "expected"),
    [
        ("unet", {}, 7_759_521),
        ("unet_plusplus", {"deep_supervision": False}, 9_041_601),
        ("wide_unet", {}, 9_282_246),
    ],
)
def test_paper_parameter_counts(architecture, options, expected):
    assert nu.count_params(abstract(architecture, **options)) == expected


def test_pruned_unetplusplus_parameter_counts_match_the_paper():
    model = abstract("unet_plusplus")
    counts = [nu.count_params(nu.pruned_abstract(model, depth)) for depth in (1, 2, 3, 4)]
    assert counts == [100_961, 511_105, 2_204_961, 9_041_601]


def conv(k, c_in, c_out, dims=2):
    return k**dims * c_in * c_out + c_out


def test_unet3plus_parameter_count_matches_a_hand_formula():
    filters, cat = (32, 64, 128, 256, 512), 64
    encoder = sum(
        conv(3, c_in, c) + conv(3, c, c)
        for c_in, c in zip((1, *filters[:-1]), filters, strict=True)
    )
    decoder_width = cat * 5
    decoder = 0
    for level in range(4):
        # full-scale inputs: encoder levels <= level, deeper decoders, the bottom encoder
        sources = [filters[k] for k in range(level + 1)]
        sources += [decoder_width] * (3 - level) + [filters[4]]
        decoder += sum(conv(3, c, cat) for c in sources) + conv(3, decoder_width, decoder_width)
    heads = 4 * conv(3, decoder_width, 1)
    assert nu.count_params(abstract("unet_3plus", filters=filters)) == encoder + decoder + heads


def test_nearest_upsampling_has_no_parameters_and_keeps_the_deeper_channels():
    """UNet++ depth 1 with smp's nearest up-sampling: x_0_1 convolves x_0_0 (4 channels) beside
    x_1_0 repeated 2x2 (its own 8 channels); no transposed conv."""
    model = nu.UNetPlusPlus(filters=(4, 8), upsample="nearest", rngs=nnx.Rngs(0))
    x_0_0, x_1_0 = conv(3, 1, 4) + conv(3, 4, 4), conv(3, 4, 8) + conv(3, 8, 8)
    x_0_1 = conv(3, 4 + 8, 4) + conv(3, 4, 4)
    assert nu.count_params(model) == x_0_0 + x_1_0 + x_0_1 + conv(1, 4, 1)
    assert not any(
        "upsamplers" in map(str, path) for path, _ in nnx.to_flat_state(nnx.state(model))
    )
    assert model(jnp.ones((1, 4, 4, 1)))[0].shape == (1, 4, 4, 1)
    pixels = jnp.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 2, 1)
    expected = [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]
    np.testing.assert_array_equal(layers.upsample_nearest(pixels)[0, ..., 0], expected)


@pytest.fixture(scope="module")
def tiny_unetpp():
    return nu.UNetPlusPlus(filters=(4, 8, 16, 32), norm="batch", rngs=nnx.Rngs(1))


@pytest.fixture(scope="module")
def image():
    return jax.random.normal(jax.random.key(0), (2, 32, 32, 1))


def test_outputs_are_full_resolution_logits_per_head_shallow_to_deep(tiny_unetpp, image):
    outputs = tiny_unetpp(image)
    assert isinstance(outputs, tuple) and len(outputs) == 3
    assert all(o.shape == (2, 32, 32, 1) and o.dtype == jnp.float32 for o in outputs)
    assert len(tiny_unetpp(image, depth=2)) == 2


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_fast_mode_equals_head_of_the_full_pass(tiny_unetpp, image, depth):
    full = tiny_unetpp(image)[depth - 1]
    fast = tiny_unetpp.predict(image, depth=depth, mode="fast")
    np.testing.assert_allclose(fast, jax.nn.sigmoid(full), atol=1e-5)
    pruned = nu.prune(tiny_unetpp, depth)
    np.testing.assert_allclose(pruned(image)[-1], full, atol=1e-5)


def test_accurate_mode_is_the_mean_of_head_probabilities(tiny_unetpp, image):
    heads = [np.asarray(jax.nn.sigmoid(h)) for h in tiny_unetpp(image)]
    accurate = tiny_unetpp.predict(image, depth=2, mode="accurate")
    np.testing.assert_allclose(accurate, (heads[0] + heads[1]) / 2, atol=1e-6)


def test_softmax_output_probabilities_sum_to_one():
    model = nu.UNetPlusPlus(
        filters=TINY, num_classes=3, output_activation="softmax", rngs=nnx.Rngs(0)
    )
    probabilities = model.predict(jnp.ones((1, 16, 16, 1)), mode="accurate")
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)


def test_fast_mode_flops_fall_with_depth(tiny_unetpp, image):
    def flops(depth):
        graphdef, state = nnx.split(tiny_unetpp)
        fn = jax.jit(lambda s, x: nnx.merge(graphdef, s).predict(x, depth=depth))
        return fn.lower(state, image).compile().cost_analysis()["flops"]

    per_depth = [flops(depth) for depth in (1, 2, 3)]
    assert per_depth[0] < per_depth[1] < per_depth[2]


def test_pruned_model_holds_only_the_subgraph_state(tiny_unetpp):
    pruned = nu.prune(tiny_unetpp, 2)
    paths = {path for path, _ in nnx.to_flat_state(nnx.state(pruned))}
    full_paths = {path for path, _ in nnx.to_flat_state(nnx.state(tiny_unetpp))}
    assert paths < full_paths
    assert {path[1] for path in paths if path[0] == "nodes"} == {
        "x_0_0",
        "x_1_0",
        "x_2_0",
        "x_0_1",
        "x_1_1",
        "x_0_2",
    }
    assert {path[1] for path in paths if path[0] == "heads"} == {"head_2"}


def sum_of_squares(graphdef, params, rest, x):
    rest = jax.tree.map(lambda leaf: leaf, rest)  # Variables of this trace level
    outputs = nnx.merge(graphdef, params, rest)(x, train=True)
    return sum(jnp.mean(o**2) for o in outputs), len(outputs)


@pytest.mark.parametrize("architecture", g.ARCHITECTURES)
@pytest.mark.parametrize(("spatial_dims", "size"), [(2, 16), (3, 8)])
def test_forward_and_backward_in_2d_and_3d(architecture, spatial_dims, size):
    x = jax.random.normal(jax.random.key(0), (2, *(size,) * spatial_dims, 2))
    for deep_supervision in (True, False) if spatial_dims == 2 else (True,):
        model = nu.create(
            architecture,
            filters=TINY,
            in_channels=2,
            spatial_dims=spatial_dims,
            norm="batch",
            deep_supervision=deep_supervision,
            cat_channels=4,
            rngs=nnx.Rngs(0),
        )
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        loss = jax.value_and_grad(sum_of_squares, argnums=1, has_aux=True)
        (value, heads), grads = jax.jit(loss, static_argnums=0)(graphdef, params, rest, x)
        single_head = not deep_supervision or architecture in ("unet", "wide_unet")
        assert heads == (1 if single_head else 2)
        assert np.isfinite(value)
        leaves = jax.tree.leaves(grads)
        assert all(np.isfinite(np.asarray(leaf)).all() for leaf in leaves)
        assert any(np.abs(np.asarray(leaf)).sum() > 0 for leaf in leaves)


def test_batch_norm_statistics_update_only_in_training(image):
    model = nu.UNet(filters=TINY, norm="batch", rngs=nnx.Rngs(0))
    mean = lambda: np.asarray(model.nodes["x_0_0"].conv1.norm.mean[...])  # noqa: E731
    before = mean()
    model(image[:, :16, :16], train=False)
    np.testing.assert_array_equal(mean(), before)
    model(image[:, :16, :16], train=True)
    assert not np.allclose(mean(), before)


@pytest.mark.parametrize("norm", ["none", "instance", "group"])
def test_other_norms_and_interpolated_upsampling_run(norm):
    model = nu.UNetPlusPlus(
        filters=TINY,
        norm=norm,
        upsample="interpolate",
        dropout=0.1,
        activation="leaky_relu",
        rngs=nnx.Rngs(0),
    )
    outputs = model(jnp.ones((1, 16, 16, 1)), train=True)
    assert all(np.isfinite(np.asarray(o)).all() for o in outputs)


def test_bfloat16_compute_keeps_float32_parameters_and_logits():
    model = nu.UNetPlusPlus(filters=TINY, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    params = jax.tree.leaves(nnx.state(model, nnx.Param))
    assert all(p.dtype == jnp.float32 for p in params)
    x = jax.random.normal(jax.random.key(1), (1, 16, 16, 1))
    low = model(x)[-1]
    model32 = nu.UNetPlusPlus(filters=TINY, rngs=nnx.Rngs(0))
    assert low.dtype == jnp.float32
    np.testing.assert_allclose(low, model32(x)[-1], atol=0.05)


def test_bad_input_shapes_name_the_shape_and_the_fix():
    model = nu.UNet(filters=TINY, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"spatial size 30 .* 2\^2 = 4; use 28 or 32"):
        model(jnp.ones((1, 30, 32, 1)))
    with pytest.raises(ValueError, match="has 3 channels; the model expects 1"):
        model(jnp.ones((1, 32, 32, 3)))
    with pytest.raises(ValueError, match="rank 3"):
        model(jnp.ones((32, 32, 1)))


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match=r"filters .* has 3 levels; depth 4 needs 5"):
        nu.create("unet", depth=4, filters=TINY, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="norm must be one of"):
        nu.NetworkSpec(norm="layer")
    with pytest.raises(ValueError, match="softmax output needs num_classes >= 2"):
        nu.NetworkSpec(output_activation="softmax")


def test_default_filters_double_from_32():
    model = abstract("unet", depth=2)
    assert model.spec.filters == (32, 64, 128)
    assert math.prod(model.nodes["x_2_0"].conv2.conv.kernel.shape) == 9 * 128 * 128
