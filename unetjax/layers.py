"""The layers every node of the graph is made of, and the options that decide them.

`NetworkSpec` holds the layer options shared by the whole network; `ConvNormAct` and
`LearnedUpsample` are the blocks with parameters; `max_pool`, `interpolate` and
`upsample_nearest` the fixed resamplings. Channels-last, 2D or 3D by `spec.spatial_dims`. The
forms XLA:CPU runs faster are `backend`'s choice, by the platform a program is lowered for.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from unetjax import backend, scales

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
      strides: per level 1..depth, per axis, 2 or 1 (`scales`); None pools every axis by 2.
      kernels: per level 0..depth, per axis, 3 or 1; None: 3 on every axis.
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
    strides: scales.Strides | None = None
    kernels: scales.Strides | None = None
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
        strides, kernels = scales.from_config(
            {"strides": self.strides, "kernels": self.kernels, "spatial_dims": self.spatial_dims},
            len(self.filters) - 1,
        )
        # Tuples of tuples, so that the spec stays hashable whatever sequences it was given.
        object.__setattr__(self, "strides", strides)
        object.__setattr__(self, "kernels", kernels)

    def scale(self, low: int, high: int) -> tuple[int, ...]:
        """Per axis, how many times finer level `low` is than level `high` (`scales.factor`)."""
        return scales.factor(self.strides, low, high, self.spatial_dims)

    def divisor(self, depth: int) -> tuple[int, ...]:
        """Per axis, what an input size must be a multiple of for a graph of `depth`."""
        return scales.divisor(self.strides, depth, self.spatial_dims)

    def kernel(self, level: int) -> tuple[int, ...]:
        return scales.kernel(self.kernels, level, self.spatial_dims)


class ConvNormAct(nnx.Module):
    """conv (kernel 3 by default) -> optional norm -> activation -> optional dropout.

    Called on a list of arrays, it convolves their channel concatenation (on the CPU without
    forming it: `backend.conv_of_concatenation`, the same parameters).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        spec: NetworkSpec,
        *,
        kernel_size: int | Sequence[int] = 3,
        rngs: nnx.Rngs,
    ):
        if isinstance(kernel_size, int):
            kernel_size = (kernel_size,) * spec.spatial_dims
        # A normalisation layer has its own shift, which makes a conv bias redundant.
        self.conv = nnx.Conv(
            in_channels,
            out_channels,
            tuple(kernel_size),
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
        x = backend.conv_of_concatenation(self.conv, x if isinstance(x, list | tuple) else [x])
        if isinstance(self.norm, nnx.BatchNorm):
            x = self.norm(x, use_running_average=not train)
        elif self.norm is not None:
            x = self.norm(x)
        x = self.activation(x)
        if train:
            x = backend.stored_once(x)
        if self.dropout is not None:
            x = self.dropout(x, deterministic=not train)
        return x


class LearnedUpsample(nnx.Module):
    """Up-sampling by `factor` per axis (default 2) to `out_channels`: a transposed conv whose
    window is the factor (2x2), or a 1x1 conv then interpolation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        spec: NetworkSpec,
        *,
        factor: Sequence[int] | None = None,
        rngs: nnx.Rngs,
    ):
        self.interpolate = spec.upsample == "interpolate"
        self.factor = tuple(factor) if factor else (2,) * spec.spatial_dims
        window = (1,) * spec.spatial_dims if self.interpolate else self.factor
        layer = nnx.Conv if self.interpolate else nnx.ConvTranspose
        self.conv = layer(
            in_channels,
            out_channels,
            window,
            strides=window,
            padding="VALID",
            dtype=spec.dtype,
            param_dtype=spec.param_dtype,
            rngs=rngs,
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        if not self.interpolate:
            return backend.transposed_conv(self.conv, x)
        x = self.conv(x)
        # The 1x1 conv commutes with linear interpolation: convolving first is 2^d times cheaper.
        return interpolate(x, self.factor)


def _per_axis(x: jax.Array, factor: int | Sequence[int]) -> tuple[int, ...]:
    return (factor,) * (x.ndim - 2) if isinstance(factor, int) else tuple(factor)


def upsample_nearest(x: jax.Array, factor: int | Sequence[int] = 2) -> jax.Array:
    """Nearest-neighbour up-sampling of the spatial axes by `factor` (an int: every axis;
    torch's `interpolate(..., 2)`)."""
    for axis, f in enumerate(_per_axis(x, factor), start=1):
        if f > 1:
            x = jnp.repeat(x, f, axis=axis)
    return x


def interpolate(x: jax.Array, factor: int | Sequence[int]) -> jax.Array:
    """Linear (bi/trilinear) up-sampling of the spatial axes by `factor` (an int: every axis),
    half-pixel centres."""
    factors = _per_axis(x, factor)
    shape = (x.shape[0], *(s * f for s, f in zip(x.shape[1:-1], factors, strict=True)), x.shape[-1])
    return jax.image.resize(x, shape, method="linear")


def max_pool(x: jax.Array, factor: int | Sequence[int]) -> jax.Array:
    """Max over non-overlapping windows of `factor` per axis (an int: every axis; channels-last;
    spatial sizes divisible by it).

    The same numbers as `nnx.max_pool` forward and backward, ties included: the gradient of a
    window goes to its first maximum in row-major order (`conv_kernels.max_pool`). Ties are
    common here, not rare: a conv fed an all-zero region gives one constant, which batch norm
    and ReLU can keep positive.
    """
    factors = _per_axis(x, factor)
    for size, f in zip(x.shape[1:-1], factors, strict=True):
        if size % f:
            raise ValueError(
                f"max_pool: spatial size {size} of shape {x.shape} is not divisible by {f}"
            )
    return backend.max_pool(x, factors)
