"""Per-axis pooling (`model.strides`, `model.kernels`) against hand formulas: every node's
shape, a U-Net's parameter count, pruning, and the config errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from unetjax import graph as g
from unetjax import nested_unet as nu

TINY = (4, 8, 16)  # depth 2
# nnU-Net's pattern for thick slices: the first axis waits one level, with kernel 1 meanwhile.
ANISOTROPIC = {
    2: {"strides": ((1, 2), (2, 2)), "kernels": ((1, 3), (1, 3), (3, 3))},
    3: {"strides": ((1, 2, 2), (2, 2, 2)), "kernels": ((1, 3, 3), (1, 3, 3), (3, 3, 3))},
}
SHAPES = {2: (6, 8), 3: (6, 8, 12)}  # multiples of the divisors (2, 4) and (2, 4, 4)


def create(architecture, spatial_dims, **options):
    return nu.create(
        architecture,
        filters=TINY,
        spatial_dims=spatial_dims,
        cat_channels=4,
        rngs=nnx.Rngs(0),
        **ANISOTROPIC[spatial_dims],
        **options,
    )


def level_shape(spatial, strides, level):
    """By hand: the input's size divided, per axis, by the strides of the levels above."""
    return tuple(
        size // math.prod(s[axis] for s in strides[:level]) for axis, size in enumerate(spatial)
    )


@pytest.mark.parametrize("architecture", g.ARCHITECTURES)
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_every_node_has_its_levels_per_axis_shape_and_outputs_the_inputs(
    architecture, spatial_dims
):
    model = create(architecture, spatial_dims)
    spatial, strides = SHAPES[spatial_dims], ANISOTROPIC[spatial_dims]["strides"]
    x = jax.ShapeDtypeStruct((2, *spatial, 1), jnp.float32)
    features = jax.eval_shape(lambda x: model._features(x, model.graph, train=False), x)
    channels = nu.node_channels(model.graph, model.spec)
    for node in model.graph.nodes:
        expected = (2, *level_shape(spatial, strides, node.level), channels[node.name])
        assert features[node.name].shape == expected, node.name
    outputs = jax.eval_shape(lambda x: model(x), x)
    assert [o.shape for o in outputs] == [(2, *spatial, 1)] * len(model.graph.heads)


def conv(kernel, c_in, c_out):
    return math.prod(kernel) * c_in * c_out + c_out


def test_an_anisotropic_unets_parameters_equal_a_hand_formula():
    model = nnx.eval_shape(lambda: create("unet", 3, norm="none"))
    (k0, k1, k2), (s0, s1) = ANISOTROPIC[3]["kernels"], ANISOTROPIC[3]["strides"]
    encoder = conv(k0, 1, 4) + conv(k0, 4, 4) + conv(k1, 4, 8) + conv(k1, 8, 8)
    encoder += conv(k2, 8, 16) + conv(k2, 16, 16)
    # x_1_1: a transposed conv by level 2's stride, then level 1's kernels; x_0_2 alike.
    decoder = conv(s1, 16, 8) + conv(k1, 16, 8) + conv(k1, 8, 8)
    decoder += conv(s0, 8, 4) + conv(k0, 8, 4) + conv(k0, 4, 4)
    head = conv((1, 1, 1), 4, 1)
    assert nu.count_params(model) == encoder + decoder + head
    up = model.nodes["x_0_2"].upsamplers["x_1_1"].conv
    assert up.kernel.shape == (1, 2, 2, 8, 4) and up.strides == (1, 2, 2)


@pytest.mark.parametrize(
    ("architecture", "spatial_dims", "upsample"),
    [
        ("unet_plusplus", 3, "interpolate"),  # 3D transposed convs: test_artifacts' 3D run
        ("unet_3plus", 2, "transpose"),
    ],
)
def test_the_pruned_model_is_a_subtree_and_equals_the_full_models_head(
    architecture, spatial_dims, upsample
):
    model = create(architecture, spatial_dims, upsample=upsample)
    x = jax.random.normal(jax.random.key(0), (1, *SHAPES[spatial_dims], 1))
    full = model(x)
    pruned = nu.prune(model, 1)
    ours = dict(nnx.to_flat_state(nnx.state(pruned)))
    theirs = dict(nnx.to_flat_state(nnx.state(model)))
    assert set(ours) < set(theirs)
    assert all(np.array_equal(ours[p][...], theirs[p][...]) for p in ours)
    np.testing.assert_allclose(pruned(x)[-1], full[0], atol=1e-5)
    # and the gradient reaches every parameter through the per-axis pooling and up-sampling
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    grads = jax.grad(lambda p: sum(jnp.mean(o**2) for o in nnx.merge(graphdef, p, rest)(x)))(params)
    assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(grads))


def test_inputs_must_be_multiples_of_the_product_of_each_axis_strides():
    model = create("unet", 3)
    with pytest.raises(ValueError, match=r"spatial size 6 is not divisible by 4 \(strides\)"):
        model(jnp.zeros((1, 6, 6, 8, 1)))
    assert model.spec.divisor(2) == (2, 4, 4)


MODEL = {"architecture": "unet", "filters": TINY, "spatial_dims": 3}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"strides": ((2, 2, 2),)}, "model.strides=.* has 1 levels; depth 2 needs 2"),
        ({"strides": ((1, 2, 2), (3, 2, 2))}, "model.strides=.*every value must be 1 or 2"),
        ({"strides": ((1, 1, 1), (2, 2, 2))}, "model.strides=.*level 1 pools no axis"),
        ({"strides": ((2, 2), (2, 2))}, "model.strides=.*spatial_dims=3 needs 3"),
        ({"kernels": ((3, 3, 3),) * 2}, "model.kernels=.* has 2 levels; depth 2 needs 3"),
        ({"kernels": ((1, 3, 3), (1, 3, 3), (5, 3, 3))}, "model.kernels=.*must be 1 or 3"),
        ({"strides": 2}, "model.strides=2: expected a list of levels"),
        ({"strides": (2, 2)}, r"model.strides=\(2, 2\): expected a list of levels"),
        (
            {"encoder": "resnet_tiny", "spatial_dims": 2, "strides": ((2, 2),) * 4},
            "model.strides is set with model.encoder='resnet_tiny'.*not supported",
        ),
    ],
)
def test_bad_strides_and_kernels_are_one_line_errors_naming_the_key(fields, message):
    with pytest.raises(ValueError, match=message) as error:
        g.graph_from_config({**MODEL, **fields})
    assert "\n" not in str(error.value)
