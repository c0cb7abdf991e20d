"""ResNet-18, -34 and -50 feature extractors in the torchvision / timm layout, 2D channels-last.

Module names follow torchvision's `ResNet` (`conv1`, `bn1`, `layer1..4`, blocks with
`conv1/bn1/conv2/bn2(/conv3/bn3)` and `downsample.0/.1`), so `weights.load_weights` maps a
torchvision or timm `state_dict` by name. Paddings are explicit and symmetric, as torch pads,
so the feature maps equal torch's for any input size.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from unetjax.encoders import common, weights

# torchvision initialises its convs so (kaiming_normal_, mode="fan_out", nonlinearity="relu").
KAIMING_FAN_OUT = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")

WEIGHT_RULES = weights.WeightRules(
    modules=(
        (r"conv1|layer\d\.\d+\.(conv\d|downsample\.0)", weights.CONV),
        (r"bn1|layer\d\.\d+\.(bn\d|downsample\.1)", weights.BATCH_NORM),
    ),
    ignored=r"fc\.(weight|bias)",
    first_conv="conv1",
    stages=(("conv1", "bn1"), ("layer1",), ("layer2",), ("layer3",), ("layer4",)),
)


def _conv(
    in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1, **layer: Any
) -> nnx.Conv:
    pad = kernel_size // 2
    return nnx.Conv(
        in_channels,
        out_channels,
        (kernel_size, kernel_size),
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        use_bias=False,
        kernel_init=KAIMING_FAN_OUT,
        **layer,
    )


def _batch_norm(channels: int, **layer: Any) -> nnx.BatchNorm:
    # torch's defaults: running stats move 0.1 towards each batch, eps 1e-5.
    return nnx.BatchNorm(channels, momentum=0.9, epsilon=1e-5, **layer)


def _downsample(in_channels: int, out_channels: int, stride: int, **layer: Any) -> nnx.List | None:
    """torchvision's shortcut projection (1x1 conv, BN) where the shape changes, else None."""
    if stride == 1 and in_channels == out_channels:
        return None
    return nnx.List(
        [
            _conv(in_channels, out_channels, 1, stride=stride, **layer),
            _batch_norm(out_channels, **layer),
        ]
    )


def _shortcut(downsample: nnx.List | None, x: jax.Array, *, train: bool) -> jax.Array:
    if downsample is None:
        return x
    conv, norm = downsample
    return norm(conv(x), use_running_average=not train)


class BasicBlock(nnx.Module):
    """3x3 conv, BN, ReLU, 3x3 conv, BN, plus the shortcut, then ReLU (ResNet-18/34)."""

    expansion: ClassVar[int] = 1

    def __init__(self, in_channels: int, width: int, *, stride: int, **layer: Any):
        self.conv1 = _conv(in_channels, width, 3, stride=stride, **layer)
        self.bn1 = _batch_norm(width, **layer)
        self.conv2 = _conv(width, width, 3, **layer)
        self.bn2 = _batch_norm(width, **layer)
        self.downsample = _downsample(in_channels, width, stride, **layer)

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        y = jax.nn.relu(self.bn1(self.conv1(x), use_running_average=not train))
        y = self.bn2(self.conv2(y), use_running_average=not train)
        return jax.nn.relu(y + _shortcut(self.downsample, x, train=train))


class Bottleneck(nnx.Module):
    """1x1 conv, 3x3 conv (strided, as torchvision's v1.5), 1x1 conv to 4x width (ResNet-50)."""

    expansion: ClassVar[int] = 4

    def __init__(self, in_channels: int, width: int, *, stride: int, **layer: Any):
        out_channels = width * self.expansion
        self.conv1 = _conv(in_channels, width, 1, **layer)
        self.bn1 = _batch_norm(width, **layer)
        self.conv2 = _conv(width, width, 3, stride=stride, **layer)
        self.bn2 = _batch_norm(width, **layer)
        self.conv3 = _conv(width, out_channels, 1, **layer)
        self.bn3 = _batch_norm(out_channels, **layer)
        self.downsample = _downsample(in_channels, out_channels, stride, **layer)

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        y = jax.nn.relu(self.bn1(self.conv1(x), use_running_average=not train))
        y = jax.nn.relu(self.bn2(self.conv2(y), use_running_average=not train))
        y = self.bn3(self.conv3(y), use_running_average=not train)
        return jax.nn.relu(y + _shortcut(self.downsample, x, train=train))


class ResNet(nnx.Module):
    """ResNet trunk returning one feature map per stride, shallow to deep (timm's features_only).

    Feature i is the stem's ReLU output (stride 2) for i = 0, else the output of `layer{i}`
    (strides 4, 8, 16, 32). Only the first `num_features` stages are built and run, so a
    model that needs the shallow levels only holds and computes those.

    Attributes:
      channels: channels of each feature map, e.g. (64, 64, 128, 256, 512) for ResNet-18.
      reductions: stride of each feature map relative to the input: (2, 4, 8, 16, 32)[:n].
      in_channels: channels of the input image.
      num_features: how many feature maps (stages) are built, 1..5.
      width: channels of the stem and of `layer1`'s blocks (64 in torchvision), doubling per
        stage; only `ResNetTiny` changes it.
      freeze_bn: when True, batch norm normalises with its running statistics and leaves them
        unchanged even with `train=True` (fine-tuning a pretrained encoder on small batches);
        the scales and shifts stay trainable. It can be flipped after construction.
      conv1, bn1, layer1..layer4: the torchvision modules of the same names.
    """

    weight_rules: ClassVar[weights.WeightRules] = WEIGHT_RULES

    def __init__(
        self,
        *,
        block_cls: type[BasicBlock] | type[Bottleneck],
        stage_sizes: Sequence[int],
        in_channels: int = 3,
        width: int = 64,
        num_features: int = 5,
        freeze_bn: bool = False,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        common.check_num_features("ResNet", num_features, len(stage_sizes) + 1)
        layer = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.in_channels = in_channels
        self.num_features = num_features
        self.width = width
        self.freeze_bn = freeze_bn
        self.conv1 = _conv(in_channels, width, 7, stride=2, **layer)
        self.bn1 = _batch_norm(width, **layer)
        channels = [width]
        for index, num_blocks in enumerate(stage_sizes[: num_features - 1]):
            stage_width = width * 2**index
            blocks = []
            for position in range(num_blocks):
                # The first block of each stage but the first halves the resolution.
                stride = 2 if index > 0 and position == 0 else 1
                block_in = channels[-1] if position == 0 else stage_width * block_cls.expansion
                blocks.append(block_cls(block_in, stage_width, stride=stride, **layer))
            setattr(self, f"layer{index + 1}", nnx.List(blocks))
            channels.append(stage_width * block_cls.expansion)
        self.channels = tuple(channels)
        self.reductions = tuple(2 ** (level + 1) for level in range(num_features))

    def __call__(
        self, x: jax.Array, *, train: bool = False, num_features: int | None = None
    ) -> list[jax.Array]:
        """Feature maps, shallow to deep. x: (batch, height, width, in_channels).

        num_features: run only the first this many stages (default: all that are built).
        """
        common.check_input_shape("ResNet", x.shape, self.in_channels)
        count = self.num_features if num_features is None else num_features
        common.check_num_features("ResNet", count, self.num_features)
        train = train and not self.freeze_bn
        x = jax.nn.relu(self.bn1(self.conv1(x), use_running_average=not train))
        features = [x]
        if count > 1:
            x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        for index in range(1, count):
            for block in getattr(self, f"layer{index}"):
                x = block(x, train=train)
            features.append(x)
        return features


ResNet18 = functools.partial(ResNet, block_cls=BasicBlock, stage_sizes=(2, 2, 2, 2))
ResNet34 = functools.partial(ResNet, block_cls=BasicBlock, stage_sizes=(3, 4, 6, 3))
ResNet50 = functools.partial(ResNet, block_cls=Bottleneck, stage_sizes=(3, 4, 6, 3))
# For tests and smoke runs: one basic block per stage, 8 to 64 channels; no published weights.
ResNetTiny = functools.partial(ResNet, block_cls=BasicBlock, stage_sizes=(1, 1, 1, 1), width=8)
