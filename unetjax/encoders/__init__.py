"""Pretrained-encoder building blocks: ResNet and ConvNeXt feature extractors, their weights.

`ENCODERS` maps an encoder name (timm's model name) to its constructor, the channels and strides
of its feature maps and where its published weights come from (they expect inputs normalised
with `IMAGENET_MEAN` / `IMAGENET_STD`). Every encoder
returns a list of feature maps, shallow to deep, and has `channels` and `reductions` attributes
(timm's `features_only` contract); `weights.load_weights` fills one from a timm or torchvision
`state_dict` file.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any

from flax import nnx

from unetjax.encoders.convnext import ConvNeXt, ConvNeXtTiny
from unetjax.encoders.resnet import ResNet, ResNet18, ResNet34, ResNet50, ResNetTiny
from unetjax.encoders.weights import load_weights, read_state_dict
from unetjax.graph import ENCODER_FEATURES

# The ImageNet statistics torchvision and timm normalise RGB in [0, 1] with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class EncoderInfo:
    """What a caller needs to know about an encoder before building it.

    Attributes:
      constructor: builds the module: `constructor(in_channels=..., rngs=...)`.
      channels: channels of each feature map, shallow to deep.
      reductions: stride of each feature map relative to the input.
      weight_files: where published weights come from (see docs/encoders.md), empty if none.
    """

    constructor: Callable[..., nnx.Module]
    channels: tuple[int, ...]
    reductions: tuple[int, ...]
    weight_files: tuple[str, ...] = ()


ENCODERS: dict[str, EncoderInfo] = {
    "resnet18": EncoderInfo(
        ResNet18,
        *ENCODER_FEATURES["resnet18"],
        weight_files=("timm/resnet18.a1_in1k", "torchvision resnet18-f37072fd.pth"),
    ),
    "resnet34": EncoderInfo(
        ResNet34,
        *ENCODER_FEATURES["resnet34"],
        weight_files=("timm/resnet34.a1_in1k", "torchvision resnet34-b627a593.pth"),
    ),
    "resnet50": EncoderInfo(
        ResNet50,
        *ENCODER_FEATURES["resnet50"],
        weight_files=("timm/resnet50.a1_in1k", "torchvision resnet50-11ad3fa6.pth"),
    ),
    "convnext_tiny": EncoderInfo(
        ConvNeXtTiny,
        *ENCODER_FEATURES["convnext_tiny"],
        weight_files=("timm/convnext_tiny.fb_in22k_ft_in1k", "timm/convnext_tiny.fb_in1k"),
    ),
    "resnet_tiny": EncoderInfo(ResNetTiny, *ENCODER_FEATURES["resnet_tiny"]),
}


def encoder_info(name: str) -> EncoderInfo:
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose one of {', '.join(ENCODERS)}")
    return ENCODERS[name]


def create_encoder(name: str, *, rngs: nnx.Rngs, **options: Any) -> nnx.Module:
    """Builds encoder `name` with random weights; options (in_channels, num_features, freeze_bn,
    dtype, ...) go to its constructor."""
    return encoder_info(name).constructor(rngs=rngs, **options)


def load_encoder(
    name: str, weights: str | os.PathLike | Mapping[str, Any], *, prefix: str = "", **options: Any
) -> nnx.Module:
    """Encoder `name` holding the weights of a timm / torchvision state_dict (file or dict).

    The module is built shape-only and then filled, so no random initialisation is spent on
    weights the file replaces. Options go to the constructor, `prefix` to `load_weights`.
    """
    encoder = nnx.eval_shape(lambda: create_encoder(name, rngs=nnx.Rngs(0), **options))
    load_weights(encoder, weights, prefix=prefix)
    return encoder


__all__ = [
    "ENCODERS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ConvNeXt",
    "ConvNeXtTiny",
    "EncoderInfo",
    "ResNet",
    "ResNet18",
    "ResNet34",
    "ResNet50",
    "ResNetTiny",
    "create_encoder",
    "encoder_info",
    "load_encoder",
    "load_weights",
    "read_state_dict",
]
