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

from unetjax import backend

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
            return backend.transposed_conv(self.conv, x)
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
    window goes to its first maximum in row-major order (`conv_kernels.max_pool`). Ties are
    common here, not rare: a conv fed an all-zero region gives one constant, which batch norm
    and ReLU can keep positive.
    """
    for size in x.shape[1:-1]:
        if size % factor:
            raise ValueError(
                f"max_pool: spatial size {size} of shape {x.shape} is not divisible by {factor}"
            )
    return backend.max_pool(x, factor)
