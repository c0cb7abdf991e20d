"""The layers' fast formulations against independent references: `nnx.max_pool` (XLA's
reduce-window and select-and-scatter), a hand-computed gradient for ties, `nnx.ConvTranspose`
(`lax.conv_transpose`) and its automatic gradient, and `lax.conv_general_dilated` compiled with
XLA's default options."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from unetjax import backend, conv_kernels, layers, losses
from unetjax import nested_unet as nu


def per_axis(factor, spatial_dims):
    return (factor,) * spatial_dims if isinstance(factor, int) else tuple(factor)


def reference_pool(x, factor):
    window = per_axis(factor, x.ndim - 2)
    return nnx.max_pool(x, window_shape=window, strides=window)


def pooled_shape(shape, factor):
    window = per_axis(factor, len(shape) - 2)
    return (shape[0], *(s // w for s, w in zip(shape[1:-1], window, strict=True)), shape[-1])


@pytest.mark.parametrize(
    ("shape", "factor"),
    # Per-axis windows (1 on an unpooled axis) as nnU-Net pools anisotropic volumes.
    [((2, 8, 12, 3), 2), ((2, 8, 8, 5), 4), ((2, 4, 6, 8, 3), 2), ((1, 4, 8, 8, 2), (1, 2, 4))],
)
def test_max_pool_forward_gradient_and_jvp_equal_nnx_max_pool(shape, factor):
    keys = jax.random.split(jax.random.key(sum(shape) + sum(per_axis(factor, 1))), 3)
    x = jax.random.normal(keys[0], shape)
    cotangent = jax.random.normal(keys[1], pooled_shape(shape, factor))
    tangent = jax.random.normal(keys[2], shape)

    ours, ours_vjp = jax.vjp(lambda x: layers.max_pool(x, factor), x)
    expected, expected_vjp = jax.vjp(lambda x: reference_pool(x, factor), x)
    np.testing.assert_array_equal(ours, expected)
    np.testing.assert_array_equal(ours_vjp(cotangent)[0], expected_vjp(cotangent)[0])

    grad = jax.grad(lambda x: jnp.sum(jnp.sin(layers.max_pool(x, factor))))(x)
    expected_grad = jax.grad(lambda x: jnp.sum(jnp.sin(reference_pool(x, factor))))(x)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-6)

    _, ours_jvp = jax.jvp(lambda x: layers.max_pool(x, factor), (x,), (tangent,))
    _, expected_jvp = jax.jvp(lambda x: reference_pool(x, factor), (x,), (tangent,))
    np.testing.assert_array_equal(ours_jvp, expected_jvp)


def first_maximum_gradient(x, cotangent, factor):
    """The gradient routed to each window's first maximum in row-major order, by loops."""
    grad = np.zeros_like(x)
    window = per_axis(factor, x.ndim - 2)
    for index in np.ndindex(cotangent.shape):
        batch, *window_start, channel = index
        offsets = list(itertools.product(*(range(w) for w in window)))

        def at(offset, batch=batch, window_start=window_start, channel=channel):
            starts = zip(window_start, offset, window, strict=True)
            return (batch, *(w * s + o for s, o, w in starts), channel)

        values = [x[at(offset)] for offset in offsets]
        first = offsets[int(np.argmax(values))]  # np.argmax returns the first maximum
        where = at(first)
        grad[where] = cotangent[index]
    return grad


@pytest.mark.parametrize(("shape", "factor"), [((2, 4, 4, 3), 2), ((1, 4, 4, 4, 2), (1, 2, 2))])
def test_tied_maxima_send_the_gradient_to_the_first_in_row_major_order(shape, factor):
    rng = np.random.default_rng(0)
    # Values from {0, 1, 2}: most windows hold tied maxima, as after ReLU or on constant regions.
    x = rng.integers(0, 3, size=shape).astype(np.float32)
    x[0, ...] = 0.0  # whole windows of zeros
    cotangent = rng.normal(size=pooled_shape(shape, factor)).astype(np.float32)
    _, vjp = jax.vjp(lambda x: layers.max_pool(x, factor), jnp.asarray(x))
    grad = np.asarray(vjp(jnp.asarray(cotangent))[0])
    np.testing.assert_array_equal(grad, first_maximum_gradient(x, cotangent, factor))
    _, reference_vjp = jax.vjp(lambda x: reference_pool(x, factor), jnp.asarray(x))
    np.testing.assert_array_equal(grad, reference_vjp(jnp.asarray(cotangent))[0])


def test_max_pool_rejects_a_size_the_factor_does_not_divide():
    with pytest.raises(ValueError, match="not divisible by 2"):
        layers.max_pool(jnp.zeros((1, 6, 5, 1)), 2)


def test_a_jitted_batch_norm_unet_has_the_gradient_of_nnx_max_pool(monkeypatch):
    """Regression: a mask formed by comparing the inputs with a separately reduced maximum lost
    the gradient of many windows in this network under jit (XLA computed the two apart)."""
    model = nu.UNet(filters=(256, 512), norm="batch", rngs=nnx.Rngs(0))
    graphdef, params, state = nnx.split(model, nnx.Param, ...)
    image = jax.random.normal(jax.random.key(1), (2, 6, 6, 1))
    mask = (jax.random.uniform(jax.random.key(2), (2, 6, 6)) > 0.5).astype(jnp.int32)

    def gradient(pool):
        monkeypatch.setattr(nu, "max_pool", pool)

        def loss(params):
            fresh = nnx.merge(graphdef, params, jax.tree.map(lambda value: value, state))
            logits = fresh(image, train=True)
            return losses.deep_supervision_loss(logits, mask, output_activation="sigmoid")[0]

        return dict(nnx.to_flat_state(jax.jit(jax.grad(loss))(params)))

    ours, expected = gradient(layers.max_pool), gradient(reference_pool)
    for path, value in expected.items():
        scale = float(jnp.max(jnp.abs(value[...])))
        np.testing.assert_allclose(
            ours[path][...], value[...], atol=1e-4 * scale, err_msg=str(path)
        )


def conv(x, kernel):
    spatial = "DHW"[-(x.ndim - 2) :]
    specs = (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C")
    return jax.lax.conv_general_dilated(
        x, kernel, (1,) * (x.ndim - 2), "SAME", dimension_numbers=specs
    )


@pytest.mark.parametrize("spatial", [(12, 12), (6, 6, 6)])
def test_convolutions_compiled_with_the_cpu_options_equal_the_default_compilation(spatial):
    options = backend.compiler_options()
    if options is None:
        pytest.skip("no XLA:CPU options on this backend")
    keys = jax.random.split(jax.random.key(len(spatial)), 3)
    # More than 16 channels: XLA:CPU's YNNPACK path takes only convolutions that wide.
    x = jax.random.normal(keys[0], (2, *spatial, 24))
    kernel = jax.random.normal(keys[1], (*(3,) * len(spatial), 24, 32)) * 0.1
    cotangent = jax.random.normal(keys[2], (2, *spatial, 32))

    def forward_and_gradients(x, kernel, cotangent):
        y, vjp = jax.vjp(conv, x, kernel)
        return (y, *vjp(cotangent))

    default = jax.jit(forward_and_gradients)(x, kernel, cotangent)
    tuned = jax.jit(forward_and_gradients, compiler_options=options)(x, kernel, cotangent)
    for ours, expected in zip(tuned, default, strict=True):
        np.testing.assert_allclose(
            ours, expected, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(expected)))
        )


def test_backend_jit_leaves_2d_convolutions_out_of_ynnpack():
    if backend.compiler_options() is None:
        pytest.skip("no XLA:CPU options on this backend")
    x, kernel = jnp.ones((2, 12, 12, 24)), jnp.ones((3, 3, 24, 32))
    step = jax.grad(lambda x, kernel: jnp.sum(conv(x, kernel) ** 2), argnums=(0, 1))
    default = jax.jit(step).lower(x, kernel).compile().as_text()
    tuned = backend.jit(step).lower(x, kernel).compile().as_text()
    assert "__ynn_fusion" in default  # what the options change: XLA's default takes them
    assert "__ynn_fusion" not in tuned


@pytest.mark.parametrize("shape", [(2, 5, 6, 16), (2, 3, 4, 2, 24)])
def test_learned_upsample_and_its_gradients_equal_nnx_conv_transpose(shape):
    """The block matmul and its hand-written gradients (a strided convolution for the input, a
    product over pixels for the kernel) against `lax.conv_transpose` and autodiff, under jit."""
    spatial = len(shape) - 2
    spec = layers.NetworkSpec(spatial_dims=spatial)
    upsample = layers.LearnedUpsample(shape[-1], 8, spec, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(upsample)
    keys = jax.random.split(jax.random.key(spatial), 2)
    x = jax.random.normal(keys[0], shape)
    cotangent = jax.random.normal(keys[1], (shape[0], *(2 * n for n in shape[1:-1]), 8))

    def forward_and_gradients(forward):
        def run(params, x):
            y, vjp = jax.vjp(lambda p, x: forward(nnx.merge(graphdef, p), x), params, x)
            return y, vjp(cotangent)

        return backend.jit(run)(params, x)

    ours = forward_and_gradients(lambda layer, x: layer(x))
    expected = forward_and_gradients(lambda layer, x: layer.conv(x))
    for mine, reference in zip(jax.tree.leaves(ours), jax.tree.leaves(expected), strict=True):
        scale = float(jnp.max(jnp.abs(reference)))
        np.testing.assert_allclose(mine, reference, rtol=1e-5, atol=1e-5 * scale)


def test_stored_once_is_the_identity_and_keeps_xla_from_recomputing_its_producers():
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 32))
    shift = jnp.full((32,), 0.25)
    np.testing.assert_array_equal(conv_kernels.stored_once(x), x)
    gradient = jax.grad(lambda x: jnp.sum(conv_kernels.stored_once(x) * x))(x)
    np.testing.assert_array_equal(gradient, 2 * x)

    def relu_count(store, differentiate):
        def consumers(x, shift):
            y = jax.nn.relu(x * 1.5 + shift)
            y = conv_kernels.stored_once(y) if store else y
            return jnp.transpose(y, (3, 1, 2, 0)), y * 2.0

        def loss(x, shift):
            transposed, doubled = consumers(x, shift)
            return jnp.sum(transposed**2) + jnp.sum(doubled)

        function = jax.grad(loss) if differentiate else consumers
        return jax.jit(function).lower(x, shift).compile().as_text().count(" maximum(")

    # Without it XLA fuses the ReLU into both consumers; with it the ReLU runs once.
    assert relu_count(store=False, differentiate=False) == 2
    for differentiate in (False, True):
        assert relu_count(store=True, differentiate=differentiate) == 1
