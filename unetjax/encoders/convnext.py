"""ConvNeXt-Tiny feature extractor in timm's layout, 2D channels-last.

Module names follow timm's `ConvNeXt` (`stem.0/1`, `stages.N.downsample.0/1`,
`stages.N.blocks.M.{conv_dw, norm, mlp.fc1, mlp.fc2, gamma}`), so `weights.load_weights` maps a
timm `state_dict` by name. Channels-last is ConvNeXt's native block layout: timm permutes to it
around the norm and MLP, we never leave it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from unetjax.encoders import common, weights

# timm's ConvNeXt initialisation: truncated normal, std 0.02, for convs and linear layers.
TRUNC_NORMAL = nnx.initializers.truncated_normal(0.02)

WEIGHT_RULES = weights.WeightRules(
    modules=(
        (r"stem\.0|stages\.\d\.downsample\.1|stages\.\d\.blocks\.\d+\.conv_dw", weights.CONV),
        (r"stem\.1|stages\.\d\.downsample\.0|stages\.\d\.blocks\.\d+\.norm", weights.LAYER_NORM),
        (r"stages\.\d\.blocks\.\d+\.mlp\.fc[12]", weights.LINEAR),
        (r"stages\.\d\.blocks\.\d+", {"gamma": ("gamma", None)}),
    ),
    ignored=r"head\..*",
    first_conv="stem.0",
    stages=(("stem", "stages.0"), ("stages.1",), ("stages.2",), ("stages.3",)),
)


def _conv(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    *,
    stride: int = 1,
    groups: int = 1,
    **layer: Any,
) -> nnx.Conv:
    pad = (
        (kernel_size - 1) // 2 if stride == 1 else 0
    )  # timm: "same" for the 7x7, none when patchifying
    return nnx.Conv(
        in_channels,
        out_channels,
        (kernel_size, kernel_size),
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        feature_group_count=groups,
        kernel_init=TRUNC_NORMAL,
        **layer,
    )


def _layer_norm(channels: int, **layer: Any) -> nnx.LayerNorm:
    # Two-pass variance: the one-pass form loses digits when a channel's mean is large.
    return nnx.LayerNorm(channels, epsilon=1e-6, use_fast_variance=False, **layer)


class Mlp(nnx.Module):
    """Linear to 4x width, exact (erf) GELU as torch's nn.GELU, linear back."""

    def __init__(self, channels: int, hidden: int, **layer: Any):
        self.fc1 = nnx.Linear(channels, hidden, kernel_init=TRUNC_NORMAL, **layer)
        self.fc2 = nnx.Linear(hidden, channels, kernel_init=TRUNC_NORMAL, **layer)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(jax.nn.gelu(self.fc1(x), approximate=False))


class ConvNeXtBlock(nnx.Module):
    """7x7 depthwise conv, layer norm, MLP, per-channel layer scale `gamma`, residual."""

    def __init__(self, channels: int, *, layer_scale_init: float, **layer: Any):
        self.conv_dw = _conv(channels, channels, 7, groups=channels, **layer)
        self.norm = _layer_norm(channels, **layer)
        self.mlp = Mlp(channels, 4 * channels, **layer)
        self.gamma = nnx.Param(jnp.full((channels,), layer_scale_init, layer["param_dtype"]))

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.mlp(self.norm(self.conv_dw(x)))
        return x + y * self.gamma[...].astype(y.dtype)


class ConvNeXtStage(nnx.Module):
    """Optional down-sampling (layer norm, 2x2 stride-2 conv), then the blocks."""

    def __init__(
        self, in_channels: int, channels: int, depth: int, *, layer_scale_init: float, **layer: Any
    ):
        self.downsample = (
            nnx.List(
                [
                    _layer_norm(in_channels, **layer),
                    _conv(in_channels, channels, 2, stride=2, **layer),
                ]
            )
            if in_channels != channels
            else None
        )
        self.blocks = nnx.List(
            [
                ConvNeXtBlock(channels, layer_scale_init=layer_scale_init, **layer)
                for _ in range(depth)
            ]
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.downsample is not None:
            norm, conv = self.downsample
            x = conv(norm(x))
        for block in self.blocks:
            x = block(x)
        return x


class ConvNeXt(nnx.Module):
    """ConvNeXt trunk returning each stage's output, shallow to deep (timm's features_only).

    Attributes:
      channels: channels of each feature map, (96, 192, 384, 768)[:n] for ConvNeXt-Tiny.
      reductions: stride of each feature map relative to the input: (4, 8, 16, 32)[:n].
      in_channels: channels of the input image.
      num_features: how many stages are built and run, 1..4.
      freeze_bn: accepted so that every encoder takes the same options; ConvNeXt has only layer
        norms, which behave the same in training and inference, so there is nothing to freeze.
      stem, stages: timm's modules of the same names (no stochastic depth: timm's default 0).
    """

    weight_rules: ClassVar[weights.WeightRules] = WEIGHT_RULES

    def __init__(
        self,
        *,
        depths: Sequence[int],
        dims: Sequence[int],
        in_channels: int = 3,
        num_features: int = 4,
        layer_scale_init: float = 1e-6,
        freeze_bn: bool = False,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        common.check_num_features("ConvNeXt", num_features, len(depths))
        layer = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.in_channels = in_channels
        self.num_features = num_features
        self.freeze_bn = freeze_bn
        self.stem = nnx.List(
            [_conv(in_channels, dims[0], 4, stride=4, **layer), _layer_norm(dims[0], **layer)]
        )
        self.stages = nnx.List(
            [
                ConvNeXtStage(
                    dims[max(index - 1, 0)],
                    dims[index],
                    depths[index],
                    layer_scale_init=layer_scale_init,
                    **layer,
                )
                for index in range(num_features)
            ]
        )
        self.channels = tuple(dims[:num_features])
        self.reductions = tuple(4 * 2**index for index in range(num_features))

    def __call__(
        self, x: jax.Array, *, train: bool = False, num_features: int | None = None
    ) -> list[jax.Array]:
        """Feature maps, shallow to deep. x: (batch, height, width, in_channels).

        `train` changes nothing here (no batch norm, no dropout); every encoder takes it.
        num_features: run only the first this many stages (default: all that are built).
        """
        del train
        common.check_input_shape("ConvNeXt", x.shape, self.in_channels)
        count = self.num_features if num_features is None else num_features
        common.check_num_features("ConvNeXt", count, self.num_features)
        conv, norm = self.stem
        x = norm(conv(x))
        features = []
        for stage in list(self.stages)[:count]:
            x = stage(x)
            features.append(x)
        return features


ConvNeXtTiny = functools.partial(ConvNeXt, depths=(3, 3, 9, 3), dims=(96, 192, 384, 768))
