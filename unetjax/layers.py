"""The layers every node of the graph is made of, and the options that decide them.

`NetworkSpec` holds the layer options shared by the whole network; `ConvNormAct` and
`LearnedUpsample` are the blocks with parameters; `max_pool`, `interpolate` and
`upsample_nearest` the fixed resamplings; `compiler_options` how XLA:CPU should compile a
program of them. Channels-last, 2D or 3D by `spec.spatial_dims`.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from unetjax.conv_kernels import conv_of_concatenation, transposed_conv_as_matmul

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "leaky_relu": functools.partial(jax.nn.leaky_relu, negative_slope=0.01),
    "elu": jax.nn.elu,
    "gelu": jax.nn.gelu,
    "silu": jax.nn.silu,
}
NORMS = ("none", "batch", "instance", "group")
UPSAMPLES = ("transpose", "interpolate", "nearest")
PAPER_FILTERS = (32, 64, 128, 256, 512)
WIDE_FILTERS = (35, 70, 140, 280, 560)


@dataclasses.dataclass(frozen=True)
class NetworkSpec:
    """Everything but the graph that decides a network's layers (hashable, so jit can key on it).

    Attributes:
      in_channels: channels of the input image.
      num_classes: channels of each head's logits.
      filters: feature channels per level, `len(filters) == depth + 1`.
      spatial_dims: 2 or 3; the same code builds both.
      norm: "none" (the paper), "batch", "instance" or "group" (8 groups).
      activation: a key of `ACTIVATIONS`.
      dropout: rate after every conv activation (0 disables it).
      upsample: "transpose" (2x2 transposed conv, the paper), "interpolate" (1x1 conv, then
        linear interpolation) or "nearest" (parameter-free nearest-neighbour x2, smp's decoders;
        the node's convolution then takes the input's own channels).
      cat_channels: UNet 3+ channels per full-scale input (64 in the paper).
      output_activation: "sigmoid" (binary or multi-label) or "softmax" (multi-class); how
        probabilities are formed in `predict`, and what the losses expect.
      dtype: compute dtype (e.g. bfloat16); parameters stay in `param_dtype`.
    """

    in_channels: int = 1
    num_classes: int = 1
    filters: tuple[int, ...] = PAPER_FILTERS
    spatial_dims: int = 2
    norm: str = "none"
    activation: str = "relu"
    dropout: float = 0.0
    upsample: str = "transpose"
    cat_channels: int = 64
    output_activation: str = "sigmoid"
    dtype: Any = None
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        if self.spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {self.spatial_dims}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {tuple(ACTIVATIONS)}, got {self.activation!r}"
            )
        if self.upsample not in UPSAMPLES:
            raise ValueError(f"upsample must be one of {UPSAMPLES}, got {self.upsample!r}")
        if self.output_activation not in ("sigmoid", "softmax"):
            raise ValueError(
                f"output_activation must be 'sigmoid' or 'softmax', got {self.output_activation!r}"
            )
        if self.output_activation == "softmax" and self.num_classes < 2:
            raise ValueError("softmax output needs num_classes >= 2 (use sigmoid for one class)")


# XLA:CPU (jax 0.10) hands 2D float32 convolutions to YNNPACK by default. On the benchmark CPU
# XLA's own (Eigen) convolutions were faster: weight gradients 1.6 to 3.2x (they dominated the
# train step), forward convolutions at 32 to 64 channels about 1.6x (pruned UNet++ inference at
# b8 @ 96x96 1.1 to 1.35x), level at 512x512 and in 3D (benchmarks/RESULTS.md). This keeps
# YNNPACK's dots and reductions and leaves the convolutions to XLA.
_CPU_OPTIONS = {
    "xla_cpu_experimental_ynn_fusion_type": (
        "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"
    )
}


def compiler_options() -> dict[str, str] | None:
    """`compiler_options` for `jax.jit` of a program of these layers (train, eval and predict
    steps): convolutions by XLA's own CPU emitter; None on other backends, or where the installed
    XLA has no such option."""
    if not _cpu_options_apply():
        return None
    return dict(_CPU_OPTIONS)


@functools.cache
def _cpu_options_apply() -> bool:
    if jax.default_backend() != "cpu":
        return False
    try:
        jax.jit(jnp.negative, compiler_options=_CPU_OPTIONS).lower(jnp.zeros(())).compile()
    except jax.errors.JaxRuntimeError:
        return False
    return True


class ConvNormAct(nnx.Module):
    """conv (kernel 3 by default) -> optional norm -> activation -> optional dropout.

    Called on a list of arrays, it convolves their channel concatenation without forming it
    (`conv_kernels.conv_of_concatenation`: faster to train on XLA:CPU, the same parameters).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        spec: NetworkSpec,
        *,
        kernel_size: int = 3,
        rngs: nnx.Rngs,
    ):
        # A normalisation layer has its own shift, which makes a conv bias redundant.
        self.conv = nnx.Conv(
            in_channels,
            out_channels,
            (kernel_size,) * spec.spatial_dims,
            padding="SAME",
            use_bias=spec.norm == "none",
            dtype=spec.dtype,
            param_dtype=spec.param_dtype,
            rngs=rngs,
        )
        norm_options = dict(dtype=spec.dtype, param_dtype=spec.param_dtype, rngs=rngs)
        if spec.norm == "batch":
            self.norm = nnx.BatchNorm(out_channels, momentum=0.9, **norm_options)
        elif spec.norm == "instance":
            self.norm = nnx.InstanceNorm(out_channels, **norm_options)
        elif spec.norm == "group":
            self.norm = nnx.GroupNorm(
                out_channels, num_groups=math.gcd(8, out_channels), **norm_options
            )
        else:
            self.norm = None
        self.activation = ACTIVATIONS[spec.activation]
        self.dropout = nnx.Dropout(spec.dropout, rngs=rngs) if spec.dropout > 0 else None

    def __call__(self, x: jax.Array | Sequence[jax.Array], *, train: bool) -> jax.Array:
        x = conv_of_concatenation(self.conv, x if isinstance(x, list | tuple) else [x])
        if isinstance(self.norm, nnx.BatchNorm):
            x = self.norm(x, use_running_average=not train)
        elif self.norm is not None:
            x = self.norm(x)
        x = self.activation(x)
        if train:
            x = stored_once(x)
        if self.dropout is not None:
            x = self.dropout(x, deterministic=not train)
        return x


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


class LearnedUpsample(nnx.Module):
    """x2 up-sampling to `out_channels`: a 2x2 transposed conv, or a 1x1 conv then interpolation."""

    def __init__(self, in_channels: int, out_channels: int, spec: NetworkSpec, *, rngs: nnx.Rngs):
        self.interpolate = spec.upsample == "interpolate"
        window = 1 if self.interpolate else 2
        layer = nnx.Conv if self.interpolate else nnx.ConvTranspose
        self.conv = layer(
            in_channels,
            out_channels,
            (window,) * spec.spatial_dims,
            strides=(window,) * spec.spatial_dims,
            padding="VALID",
            dtype=spec.dtype,
            param_dtype=spec.param_dtype,
            rngs=rngs,
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        if not self.interpolate:
            return transposed_conv_as_matmul(self.conv, x)
        x = self.conv(x)
        # The 1x1 conv commutes with linear interpolation: convolving first is 2^d times cheaper.
        return interpolate(x, 2)


def upsample_nearest(x: jax.Array) -> jax.Array:
    """x2 nearest-neighbour up-sampling of the spatial axes (torch's `interpolate(..., 2)`)."""
    for axis in range(1, x.ndim - 1):
        x = jnp.repeat(x, 2, axis=axis)
    return x


def interpolate(x: jax.Array, factor: int) -> jax.Array:
    """Linear (bi/trilinear) up-sampling of the spatial axes by `factor`, half-pixel centres."""
    shape = (x.shape[0], *(size * factor for size in x.shape[1:-1]), x.shape[-1])
    return jax.image.resize(x, shape, method="linear")


def max_pool(x: jax.Array, factor: int) -> jax.Array:
    """Max over non-overlapping `factor`^d windows (channels-last; spatial sizes divisible by it).

    The same numbers as `nnx.max_pool` forward and backward, ties included: the gradient of a
    window goes to its first maximum in row-major order, as XLA's select-and-scatter (and
    PyTorch's max-pool) route it. Ties are common here, not rare: a conv fed an all-zero region
    gives one constant, which batch norm and ReLU can keep positive. Written as a max over
    strided views whose derivative is a mask, which XLA:CPU runs about 8x faster than
    select-and-scatter.
    """
    for size in x.shape[1:-1]:
        if size % factor:
            raise ValueError(
                f"max_pool: spatial size {size} of shape {x.shape} is not divisible by {factor}"
            )
    return _max_pool(x, factor)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _max_pool(x: jax.Array, factor: int) -> jax.Array:
    # The maximum of the factor^d strided views: element-wise, so XLA:CPU fuses it into one
    # loop. As a reduction, YNNPACK took it and grew its fusion through the next node's
    # convolutions, which it ran about 3x slower (pruned inference at b8 @ 96x96).
    offsets = itertools.product(range(factor), repeat=x.ndim - 2)
    views = [x[(slice(None), *(slice(o, None, factor) for o in offset))] for offset in offsets]
    return functools.reduce(jnp.maximum, views)


@_max_pool.defjvp
def _max_pool_jvp(factor: int, primals: tuple, tangents: tuple) -> tuple[jax.Array, jax.Array]:
    # Linear in the tangent, so JAX transposes it into a masked broadcast for the gradient.
    (x,), (tangent,) = primals, tangents
    windows, axes = _windows(x, factor), _window_axes(x)
    # Row-major position of every element within its window.
    position = sum(
        jax.lax.broadcasted_iota(jnp.int32, windows.shape, axis) * factor ** (len(axes) - 1 - i)
        for i, axis in enumerate(axes)
    )
    # One reduction picks (max, its first position) together: comparing the elements with a max
    # reduced separately can miss, as XLA may recompute the input (batch norm, ReLU) for each.
    pooled, first = jax.lax.reduce(
        (windows, position),
        (jnp.array(-jnp.inf, x.dtype), jnp.array(factor ** len(axes), jnp.int32)),
        _max_then_first,
        axes,
    )
    at_first = position == jnp.expand_dims(first, axes)
    return pooled, jnp.sum(jnp.where(at_first, _windows(tangent, factor), 0), axis=axes)


def _max_then_first(
    a: tuple[jax.Array, jax.Array], b: tuple[jax.Array, jax.Array]
) -> tuple[jax.Array, jax.Array]:
    """The larger of two (value, position) pairs; of equal values, the earlier position."""
    keep_a = (a[0] > b[0]) | ((a[0] == b[0]) & (a[1] < b[1]))
    return jnp.where(keep_a, a[0], b[0]), jnp.where(keep_a, a[1], b[1])


def _windows(x: jax.Array, factor: int) -> jax.Array:
    """(batch, s1, s2, ..., C) -> (batch, s1 / factor, factor, s2 / factor, factor, ..., C)."""
    shape = [x.shape[0]]
    for size in x.shape[1:-1]:
        shape += [size // factor, factor]
    return x.reshape(*shape, x.shape[-1])


def _window_axes(x: jax.Array) -> tuple[int, ...]:
    return tuple(range(2, 2 * (x.ndim - 2) + 1, 2))
