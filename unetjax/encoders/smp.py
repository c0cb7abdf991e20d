"""segmentation_models_pytorch `UnetPlusPlus` checkpoints into our `EncoderNestedUNet`.

smp names its UNet++ nodes `x_{d}_{l}`: `l` counts decoder resolutions from the deepest skip
(stride 16 for a ResNet) and `d` the steps back along that resolution's row, the last block
(`x_0_{n}`, no skip) reaching full resolution. Ours are the paper's `x_{level}_{column}`
(`graph.build_encoder_graph`), concatenating in smp's order, so a block converts by renaming:
level = top - 1 - l and column = l - d + 1, the no-skip block being our full-resolution node.
The encoder (`encoder.*`, torchvision names) goes through the encoder's own rules, and
`segmentation_head.0` becomes the deepest head's conv.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
from flax import nnx

from unetjax.encoders import weights
from unetjax.graph import Block, Graph

SMP_ENCODERS = ("resnet18", "resnet34", "resnet50")
ENCODER_PREFIX = "encoder."
_BLOCK = re.compile(r"decoder\.blocks\.x_(\d+)_(\d+)\.conv([12])\.([01])\.(\w+)")
_HEAD = re.compile(r"segmentation_head\.0\.(\w+)")

DECODER_RULES = weights.WeightRules(
    modules=(
        (r"nodes\.x_\d+_\d+\.conv[12]\.conv|heads\.head_\d+\.conv", weights.CONV),
        (r"nodes\.x_\d+_\d+\.conv[12]\.norm", weights.BATCH_NORM),
    ),
    ignored=r"(?!)",
    first_conv="",
    stages=(),
)


def our_node(graph: Graph, depth_index: int, layer_index: int) -> str:
    """Our name of smp's decoder block `x_{depth_index}_{layer_index}`."""
    base = min(node.level for node in graph.nodes if node.block is Block.ENCODER)
    level = graph.depth - 1 - layer_index
    column = graph.depth - base if level < base else layer_index - depth_index + 1
    return f"x_{level}_{column}"


def rename_decoder(state_dict: Mapping[str, Any], graph: Graph) -> dict[str, Any]:
    """smp's decoder and head keys renamed to ours (`nodes.x_1_4.conv1.norm.running_mean`);
    keys that are neither (or name no block of ours) are kept as they are, so the conversion
    reports them by smp's name."""
    head = graph.heads[-1].name
    renamed = {}
    for key, value in state_dict.items():
        if key.startswith(ENCODER_PREFIX):
            continue
        block, head_match = _BLOCK.fullmatch(key), _HEAD.fullmatch(key)
        if block and our_node(graph, *map(int, block.groups()[:2])) in graph.node_names:
            depth_index, layer_index, conv, part, tensor = block.groups()
            node = our_node(graph, int(depth_index), int(layer_index))
            key = f"nodes.{node}.conv{conv}.{'conv' if part == '0' else 'norm'}.{tensor}"
        elif head_match:
            key = f"heads.{head}.conv.{head_match.group(1)}"
        renamed[key] = value
    return renamed


def load_smp_state_dict(
    model: nnx.Module, state_dict: Mapping[str, Any], *, source: str = "state_dict"
) -> None:
    """Fills an `EncoderNestedUNet` (smp's settings, one head) in place from smp's state_dict.

    A missing, unexpected or wrongly shaped key is a one-line ValueError naming it (in smp's
    name for the encoder, in ours for the decoder).
    """
    if model.graph.architecture != "unet_plusplus" or len(model.graph.heads) != 1:
        raise ValueError(
            "an smp UnetPlusPlus checkpoint converts into a unet_plusplus with one head "
            "(deep_supervision=False)"
        )
    weights.load_weights(model.encoder, state_dict, prefix=ENCODER_PREFIX)
    flat = dict(nnx.to_flat_state(nnx.state(model)))
    expected = {path: tuple(v.shape) for path, v in flat.items() if path[0] != "encoder"}
    converted = weights.convert_state_dict(
        rename_decoder(state_dict, model.graph),
        DECODER_RULES,
        expected,
        num_features=0,
        source=source,
    )
    nnx.update(
        model,
        nnx.from_flat_state(
            [(path, jnp.asarray(array, flat[path].dtype)) for path, array in converted.items()]
        ),
    )
