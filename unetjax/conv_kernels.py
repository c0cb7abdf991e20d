"""Forms of the layers' operations that XLA:CPU runs faster than JAX's plain ones, same numbers.

`backend` chooses them for programs lowered for the CPU; other platforms keep the plain forms.

`conv_of_concatenation(layer, parts)` is `layer(jnp.concatenate(parts, axis=-1))` for the first
convolution of a U-Net node, written as one convolution per part with that part's slice of the
kernel, summed. A UNet++ node concatenates the dense skips of its level; the direct form copies
them into a new array (and splits its gradient back), and its weight gradient transposes the
whole concatenation, once per node, into the layout XLA's CPU convolution wants. Per part, the
concatenation and the split are gone and each skip is transposed once for every node that reads
it (XLA shares the copy): about 20% fewer transposed bytes in the UNet++ train step at
b8 @ 96x96. On the shared 2-core benchmark CPU (in-process A/B, load 3-4.5) the step ran a median
1.02-1.07x faster at b8 @ 96x96 and 1.06x at b2 @ 256x256, with rounds from 0.92 to 1.37x.

Each part's 3x3x3 convolution with "SAME" padding is computed as three 2D 3x3 convolutions, one
per depth tap, over the depth-padded input's slices folded into the batch, summed: XLA:CPU
runs 3D convolutions through a generic path several times slower than its 2D ones. On the 2-core
benchmark CPU (quiet, jax 0.10.2): forward 2.6-5.9x and forward + backward 1.9-3.7x faster for
batch 4 at 64^3 x 16 to 8^3 x 128 channels (`python -m benchmarks.conv3d_taps`). Inputs of
at most 16 channels instead stack their three shifted slices as channels and convolve once,
faster again (FOLD_TAPS_MAX_CHANNELS). A 3x3 "SAME"
convolution keeps XLA's forward and input gradient and writes its own weight gradient
(`_conv3x3_small_batch`), which pads the input first, for small batches.

`transposed_conv_as_matmul` is the 2x2 stride-2 transposed convolution of the up-sampling, as a
matrix product with hand-written gradients; `max_pool` the maximum of strided views with a
masked gradient; `stored_once` an activation XLA computes once rather than in each consumer.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

_NHWC = ("NHWC", "HWIO", "NHWC")


def conv_of_concatenation(layer: nnx.Conv, parts: Sequence[jax.Array]) -> jax.Array:
    """`layer(jnp.concatenate(parts, axis=-1))`, summed over the parts (channels-last).

    For the convolutions `ConvNormAct` builds: stride 1, no dilation, one feature group, no
    mask; `padding` as the layer has it. Float rounding differs from the concatenated form only
    in the order of the sum over input channels.
    """
    simple = (
        layer.feature_group_count == 1
        and layer.mask is None
        and isinstance(layer.padding, str)
        and all(_is_one(value) for value in (layer.strides, layer.input_dilation))
        and _is_one(layer.kernel_dilation)
    )
    if not simple:
        raise ValueError("conv_of_concatenation: only stride 1, undilated, ungrouped convolutions")
    widths = [part.shape[-1] for part in parts]
    if sum(widths) != layer.in_features:
        raise ValueError(
            f"conv_of_concatenation: parts of {widths} channels, the layer takes "
            f"{layer.in_features}"
        )
    kernel = layer.kernel[...]
    bias = None if layer.bias is None else layer.bias[...]
    *parts, kernel, bias = layer.promote_dtype((*parts, kernel, bias), dtype=layer.dtype)
    y, start = None, 0
    for part, width in zip(parts, widths, strict=True):
        part_kernel = kernel[..., start : start + width, :]
        term = _convolve(part, part_kernel, layer.padding, layer.precision)
        y = term if y is None else y + term
        start += width
    return y if bias is None else y + bias


def _convolve(x: jax.Array, kernel: jax.Array, padding: str, precision) -> jax.Array:
    """Stride-1 convolution of channels-last `x`: 3D "SAME" ones with an odd depth (3x3x3, or
    1x3x3 along a thick-slice axis) by depth taps, 3x3 "SAME" ones of small batches with
    `_conv3x3_small_batch`'s weight gradient; any other kernel (per-axis pooling's 1x3 in 2D,
    3x1x1) the plain form."""
    if x.ndim == 5 and padding == "SAME" and all(k % 2 for k in kernel.shape[:3]):
        return _conv3d_by_depth_taps(x, kernel, precision)
    # A symbolic batch (an exported artifact's) keeps the plain form.
    small = isinstance(x.shape[0], int) and x.shape[0] <= SMALL_BATCH
    three = kernel.shape[0] == 3 and padding == "SAME"
    if three and x.ndim == 4 and kernel.shape[1] == 3 and small:
        return _conv3x3_small_batch(x, kernel, precision)
    spatial = "DHW"[-(x.ndim - 2) :]
    numbers = (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C")
    return jax.lax.conv_general_dilated(
        x, kernel, (1,) * len(spatial), padding, dimension_numbers=numbers, precision=precision
    )


# Inputs of at most this many channels are convolved with their depth taps side by side as
# channels (`_conv3d_by_depth_taps`): one 2D convolution with kd times the channels, not kd of
# them summed. On the quiet 2-core CPU at 16 channels forward + backward ran 1.30x (b4 @ 64^3)
# and 1.39x (b1 @ 128^3) faster, the forward alone level; the hippocampus plan's UNet++ (16..128,
# 40x56x40) 1.12x faster in its train step (b2) and its forward (b4). At 32 channels the train
# step gained nothing more and the forward ran up to 1.2x slower; at 64 and 128 the forms are
# level (benchmarks/RESULTS.md, `python -m benchmarks.conv3d_taps`).
FOLD_TAPS_MAX_CHANNELS = 16


def _conv3d_by_depth_taps(
    x: jax.Array, kernel: jax.Array, precision, stack_up_to: int = FOLD_TAPS_MAX_CHANNELS
) -> jax.Array:
    """(B, D, H, W, C) * (kd, kh, kw, C, O), all odd, "SAME", as 2D convolutions of the slices
    folded into the batch: for each depth tap t, slices d - kd // 2 + t (zeros outside) with
    kernel[t]. Up to `stack_up_to` channels the kd shifted slices are concatenated along the
    channels and convolved once with the taps' kernels stacked the same way; wider inputs sum
    kd convolutions (kd = 1: one 2D convolution of every slice either way)."""
    batch, depth, height, width, channels = x.shape
    taps, half = kernel.shape[0], kernel.shape[0] // 2
    padded = jnp.pad(x, ((0, 0), (half, half), (0, 0), (0, 0), (0, 0))) if half else x
    shifted = [
        padded[:, tap : tap + depth].reshape(batch * depth, height, width, channels)
        for tap in range(taps)
    ]
    if channels <= stack_up_to:
        # Channel index tap * C + c on both sides: kernel (kh, kw, kd * C, O).
        stacked = jnp.moveaxis(kernel, 0, 2).reshape(*kernel.shape[1:3], taps * channels, -1)
        pairs = [(jnp.concatenate(shifted, axis=-1), stacked)]
    else:
        pairs = list(zip(shifted, kernel, strict=True))
    y = None
    for slices, slice_kernel in pairs:
        term = jax.lax.conv_general_dilated(
            slices,
            slice_kernel,
            (1, 1),
            "SAME",
            dimension_numbers=_NHWC,
            precision=precision,
        )
        y = term if y is None else y + term
    return y.reshape(batch, depth, height, width, -1)


# Largest batch whose 3x3 convolutions `_conv3x3_small_batch` computes.
SMALL_BATCH = 4


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv3x3_small_batch(x: jax.Array, kernel: jax.Array, precision) -> jax.Array:
    """3x3 "SAME" convolution whose weight gradient convolves the zero-padded input with the
    cotangent ("VALID") instead of padding inside the convolution, autodiff's form.

    XLA:CPU's (Eigen's) weight-gradient convolution reads the input with the images innermost,
    and with few of them it pads slowly: at batch 2 the padded-first form ran 1.2-1.5x faster
    (256^2 x 32 to 64^2 x 128 channels), at batch 8 1.1-1.4x slower, level at 4
    (benchmarks/RESULTS.md). Larger batches keep autodiff's form.
    """
    return jax.lax.conv_general_dilated(
        x, kernel, (1, 1), "SAME", dimension_numbers=_NHWC, precision=precision
    )


def _conv3x3_small_batch_forward(x, kernel, precision):
    return _conv3x3_small_batch(x, kernel, precision), (x, kernel)


def _conv3x3_small_batch_backward(precision, residuals, cotangent):
    x, kernel = residuals
    flipped = jnp.swapaxes(jnp.flip(kernel, (0, 1)), 2, 3)
    dx = jax.lax.conv_general_dilated(
        cotangent, flipped, (1, 1), "SAME", dimension_numbers=_NHWC, precision=precision
    )
    # Images as the contracted feature axis, channels as the batch: out (3, 3, C, O).
    numbers = jax.lax.ConvDimensionNumbers(
        lhs_spec=(3, 0, 1, 2), rhs_spec=(3, 0, 1, 2), out_spec=(2, 3, 0, 1)
    )
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    dkernel = jax.lax.conv_general_dilated(
        padded, cotangent, (1, 1), "VALID", dimension_numbers=numbers, precision=precision
    )
    return dx, dkernel.astype(kernel.dtype)


_conv3x3_small_batch.defvjp(_conv3x3_small_batch_forward, _conv3x3_small_batch_backward)


def transposed_conv_as_matmul(layer: nnx.ConvTranspose, x: jax.Array) -> jax.Array:
    """`layer(x)` for a transposed conv whose window equals its stride (2x2, "VALID").

    Each input pixel then writes its own 2x2 output block: one matrix product and a reshape, the
    same numbers as `lax.conv_transpose`. XLA:CPU runs the conv form's gradient as a naive dilated
    convolution, about 50 times slower than this product's.
    """
    x, kernel, bias = nnx.nn.dtypes.promote_dtype(
        (x, layer.kernel[...], None if layer.bias is None else layer.bias[...]), dtype=layer.dtype
    )
    spatial = x.ndim - 2
    # lax.conv_transpose without transpose_kernel correlates the dilated input with the kernel,
    # so output offset k within a block takes kernel tap (window - 1 - k): flip the taps.
    y = _blocks_from_pixels(x, jnp.flip(kernel, axis=tuple(range(spatial))), layer.precision)
    return y if bias is None else y + bias


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _blocks_from_pixels(x: jax.Array, kernel: jax.Array, precision) -> jax.Array:
    """y[b, w * i + k, ..., o] = sum_c x[b, i, ..., c] kernel[k, ..., c, o]: every input pixel
    writes its own block of kernel.shape[:-2] output pixels."""
    spatial = x.ndim - 2
    window, channels = kernel.shape[:spatial], x.shape[-1]
    # One row-major product (pixels, C) x (C, block): XLA:CPU transposed the input for the
    # einsum it replaces.
    blocks = jax.lax.dot_general(
        x.reshape(-1, channels),
        jnp.moveaxis(kernel, -2, 0).reshape(channels, -1),
        (((1,), (0,)), ((), ())),
        precision=precision,
    ).reshape(*x.shape[:-1], *window, kernel.shape[-1])
    # (b, i, j, ..., p, q, ..., o) -> (b, i, p, j, q, ..., o): each block into place.
    interleaved = [0] + [axis for i in range(spatial) for axis in (1 + i, 1 + spatial + i)]
    y = jnp.transpose(blocks, (*interleaved, 1 + 2 * spatial))
    return y.reshape(
        x.shape[0], *(n * w for n, w in zip(x.shape[1:-1], window, strict=True)), kernel.shape[-1]
    )


def _blocks_from_pixels_forward(x, kernel, precision):
    return _blocks_from_pixels(x, kernel, precision), (x, kernel)


def _blocks_from_pixels_backward(precision, residuals, cotangent):
    """The gradients, written so that XLA:CPU copies no activation into a transposed layout
    (autodiff's form of the einsum's gradient transposed two activation-sized arrays, about 15%
    of the UNet++ train step at b8 @ 96x96): the input's gradient is the stride-`window`
    convolution of the cotangent with the kernel, the kernel's a product over pixels of the
    input with the cotangent's blocks laid out pixel-major."""
    x, kernel = residuals
    spatial = x.ndim - 2
    window = kernel.shape[:spatial]
    letters = "DHW"[-spatial:]
    dx = jax.lax.conv_general_dilated(
        cotangent,
        jnp.swapaxes(kernel, -1, -2),
        window,
        "VALID",
        dimension_numbers=(f"N{letters}C", f"{letters}IO", f"N{letters}C"),
        precision=precision,
    )
    # (b, i * w, ..., o) -> (b, i, ..., w, ..., o): each pixel's block as one row.
    split = [x.shape[0]]
    for n, w in zip(x.shape[1:-1], window, strict=True):
        split += [n, w]
    blocks = jnp.transpose(
        cotangent.reshape(*split, kernel.shape[-1]),
        (0, *range(1, 2 * spatial, 2), *range(2, 2 * spatial + 1, 2), 2 * spatial + 1),
    )
    pixels = math.prod(x.shape[:-1])
    dkernel = jax.lax.dot_general(
        x.reshape(pixels, x.shape[-1]),
        blocks.reshape(pixels, -1),
        (((0,), (0,)), ((), ())),
        precision=precision,
    )
    dkernel = jnp.moveaxis(dkernel.reshape(x.shape[-1], *window, kernel.shape[-1]), 0, -2)
    return dx, dkernel


_blocks_from_pixels.defvjp(_blocks_from_pixels_forward, _blocks_from_pixels_backward)


def stored_once(x: jax.Array) -> jax.Array:
    """`x`, computed once and stored by XLA rather than recomputed in each of its consumers.

    XLA fuses cheap element-wise producers (here a node's batch norm and activation) into every
    consumer. In a train step one consumer of each activation is the transposing copy that feeds
    its convolution's weight gradient, and on XLA:CPU that copy ran 4-5x slower with the batch
    norm recomputed inside it. XLA counts a division as expensive and does not duplicate it:
    `x / (1 + 0 * x)` is `x` for every finite `x` (NaN where `x` is infinite), and XLA cannot
    fold it away, as `0 * x` is not 0 for infinities and NaNs.
    """
    return x / (1 + 0 * jax.lax.stop_gradient(x))


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def max_pool(x: jax.Array, window: int | tuple[int, ...]) -> jax.Array:
    """Max over non-overlapping windows (`window` per spatial axis, an int for every axis;
    spatial sizes divisible by it), the same numbers as `nnx.max_pool` forward and backward,
    ties included: the gradient of a window goes to its first maximum in row-major order, as
    XLA's select-and-scatter (and PyTorch's max-pool) route it. Written as a max over strided
    views whose derivative is a mask, which XLA:CPU runs about 8x faster than
    select-and-scatter. A window of 1 on an axis (per-axis pooling) leaves that axis alone."""
    window = _window(x, window)
    # The maximum of the strided views: element-wise, so XLA:CPU fuses it into one loop. As a
    # reduction, YNNPACK took it and grew its fusion through the next node's convolutions, which
    # it ran about 3x slower (pruned inference at b8 @ 96x96).
    offsets = itertools.product(*(range(w) for w in window))
    views = [
        x[(slice(None), *(slice(o, None, w) for o, w in zip(offset, window, strict=True)))]
        for offset in offsets
    ]
    return functools.reduce(jnp.maximum, views)


@max_pool.defjvp
def _max_pool_jvp(window, primals: tuple, tangents: tuple) -> tuple[jax.Array, jax.Array]:
    # Linear in the tangent, so JAX transposes it into a masked broadcast for the gradient.
    (x,), (tangent,) = primals, tangents
    window = _window(x, window)
    windows, axes = _windows(x, window), _window_axes(x)
    # Row-major position of every element within its window.
    position = sum(
        jax.lax.broadcasted_iota(jnp.int32, windows.shape, axis) * math.prod(window[i + 1 :])
        for i, axis in enumerate(axes)
    )
    # One reduction picks (max, its first position) together: comparing the elements with a max
    # reduced separately can miss, as XLA may recompute the input (batch norm, ReLU) for each.
    pooled, first = jax.lax.reduce(
        (windows, position),
        (jnp.array(-jnp.inf, x.dtype), jnp.array(math.prod(window), jnp.int32)),
        _max_then_first,
        axes,
    )
    at_first = position == jnp.expand_dims(first, axes)
    return pooled, jnp.sum(jnp.where(at_first, _windows(tangent, window), 0), axis=axes)


def _max_then_first(
    a: tuple[jax.Array, jax.Array], b: tuple[jax.Array, jax.Array]
) -> tuple[jax.Array, jax.Array]:
    """The larger of two (value, position) pairs; of equal values, the earlier position."""
    keep_a = (a[0] > b[0]) | ((a[0] == b[0]) & (a[1] < b[1]))
    return jnp.where(keep_a, a[0], b[0]), jnp.where(keep_a, a[1], b[1])


def _window(x: jax.Array, window: int | tuple[int, ...]) -> tuple[int, ...]:
    return (window,) * (x.ndim - 2) if isinstance(window, int) else tuple(window)


def _windows(x: jax.Array, window: tuple[int, ...]) -> jax.Array:
    """(batch, s1, s2, ..., C) -> (batch, s1 / w1, w1, s2 / w2, w2, ..., C)."""
    shape = [x.shape[0]]
    for size, w in zip(x.shape[1:-1], window, strict=True):
        shape += [size // w, w]
    return x.reshape(*shape, x.shape[-1])


def _window_axes(x: jax.Array) -> tuple[int, ...]:
    return tuple(range(2, 2 * (x.ndim - 2) + 1, 2))


def _is_one(value: int | Sequence[int] | None) -> bool:
    if value is None or isinstance(value, int):
        return value in (None, 1)
    return all(v == 1 for v in value)
