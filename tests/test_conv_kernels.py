"""`conv_kernels` against `nnx.Conv` applied to the concatenation it avoids forming."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from unetjax import conv_kernels


@pytest.mark.parametrize(
    ("batch", "spatial", "widths", "use_bias", "kernel"),
    [
        (2, (10, 12), (3, 5, 8), True, 3),  # a small batch: the weight gradient pads first
        (8, (10, 12), (3, 5, 8), True, 3),  # a larger one: autodiff's weight gradient
        (2, (10, 12), (24, 16), False, 3),
        (1, (9, 7), (20,), True, 3),  # one 2D part
        (2, (4, 6, 6), (2, 3), True, 3),
        (2, (5, 6, 7), (4,), False, 3),  # one part in 3D: the depth taps alone
        (2, (1, 4, 4), (2, 3), False, 3),  # a single slice: both taps beside it see zeros
        # wider than FOLD_TAPS_MAX_CHANNELS: the taps' convolutions summed, not stacked
        (2, (4, 5, 6), (20, 3), True, 3),
        # per-axis pooling's kernels: one depth tap (thick slices), and 2D's plain form
        (2, (4, 6, 6), (2, 3), True, (1, 3, 3)),
        (2, (6, 8), (3, 5), False, (1, 3)),
    ],
)
def test_conv_of_concatenation_equals_nnx_conv_of_the_concatenation_and_its_gradients(
    batch, spatial, widths, use_bias, kernel
):
    kernel = (kernel,) * len(spatial) if isinstance(kernel, int) else kernel
    layer = nnx.Conv(sum(widths), 7, kernel, padding="SAME", use_bias=use_bias, rngs=nnx.Rngs(0))
    keys = jax.random.split(jax.random.key(len(widths)), len(widths) + 1)
    parts = [jax.random.normal(k, (batch, *spatial, w)) for k, w in zip(keys, widths, strict=False)]
    cotangent = jax.random.normal(keys[-1], (batch, *spatial, 7))
    graphdef, params = nnx.split(layer)

    def ours(params, parts):
        return conv_kernels.conv_of_concatenation(nnx.merge(graphdef, params), parts)

    def reference(params, parts):
        return nnx.merge(graphdef, params)(jnp.concatenate(parts, axis=-1))

    y, vjp = jax.vjp(jax.jit(ours), params, parts)
    expected, expected_vjp = jax.vjp(reference, params, parts)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    grads, expected_grads = vjp(cotangent), expected_vjp(cotangent)
    for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(expected_grads), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4 * float(jnp.max(jnp.abs(want))))


def test_conv_of_concatenation_of_one_part_is_the_layer_itself():
    layer = nnx.Conv(3, 4, (3, 3), padding="SAME", rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (1, 5, 5, 3))
    np.testing.assert_array_equal(conv_kernels.conv_of_concatenation(layer, [x]), layer(x))


def test_conv_of_concatenation_rejects_parts_that_do_not_add_up_and_strided_layers():
    layer = nnx.Conv(5, 4, (3, 3), padding="SAME", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="parts of \\[2, 2\\] channels"):
        conv_kernels.conv_of_concatenation(layer, [jnp.zeros((1, 4, 4, 2))] * 2)
    strided = nnx.Conv(4, 4, (3, 3), strides=2, padding="SAME", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="only stride 1"):
        conv_kernels.conv_of_concatenation(strided, [jnp.zeros((1, 4, 4, 2))] * 2)
