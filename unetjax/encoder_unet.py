"""The U-Net family's decoders over a pretrained encoder (ResNet, ConvNeXt), pruning kept.

`EncoderNestedUNet` runs a graph from `graph.build_encoder_graph`: the encoder's stages are the
X^{i,0} column, the decoder nodes and heads are built on them, and every head predicts at full
input resolution. With smp's decoder settings (decoder channels 256, 128, 64, 32, 16, nearest
up-sampling, batch norm, no deep supervision) a UNet++ is exactly smp's `UnetPlusPlus`
(`unetjax.cli.import_smp` converts its checkpoints).

Widths follow smp: the decoder path (the nodes with i + j = D and the full-resolution nodes
below the encoder's first level) has `decoder_channels`, shallow nested nodes X^{i,j} the
encoder's width at level i, UNet 3+ nodes `cat_channels` per input.

Input normalisation (the ImageNet mean / std the weights expect) is part of the model: a fixed
affine on the input, so training, evaluation, prediction and export all apply it identically.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from flax import nnx

from unetjax import encoders, nested_unet
from unetjax import graph as graph_lib
from unetjax.graph import Block, Graph
from unetjax.layers import NetworkSpec

# segmentation_models_pytorch's decoder widths, deepest first.
SMP_DECODER_CHANNELS = (256, 128, 64, 32, 16)


@dataclasses.dataclass(frozen=True)
class EncoderNetworkSpec(NetworkSpec):
    """`NetworkSpec` plus the encoder (`filters` is unused: the widths come from below).

    Attributes:
      encoder: a key of `unetjax.encoders.ENCODERS`.
      decoder_channels: widths of the decoder path, deepest level first (one per level below
        the encoder's deepest: 5 for ResNet and ConvNeXt).
      input_mean, input_std: per-channel normalisation applied to the input, or None for none;
        3 values (RGB) for an input of other channels follow the first-conv adaptation: their
        mean for 1 channel, channel i takes value i % 3 otherwise.
      freeze_encoder_bn: the encoder's batch norm uses (and keeps) its running statistics.
    """

    encoder: str = "resnet34"
    decoder_channels: tuple[int, ...] = SMP_DECODER_CHANNELS
    input_mean: tuple[float, ...] | None = None
    input_std: tuple[float, ...] | None = None
    freeze_encoder_bn: bool = False

    def __post_init__(self):
        if self.spatial_dims != 2:
            raise ValueError(
                f"pretrained encoders are 2D; config.model.spatial_dims is {self.spatial_dims}"
            )
        encoders.encoder_info(self.encoder)
        if (self.input_mean is None) != (self.input_std is None):
            raise ValueError("set config.model.input_mean and input_std together (or neither)")
        for name in ("input_mean", "input_std"):
            values = getattr(self, name)
            if values is not None and len(values) not in (3, self.in_channels):
                raise ValueError(
                    f"config.model.{name} has {len(values)} values; expected 3 (RGB) or "
                    f"in_channels={self.in_channels}"
                )
        super().__post_init__()

    def channel_statistics(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(mean, std) per input channel, or None without normalisation."""
        if self.input_mean is None:
            return None
        stats = []
        for values in (self.input_mean, self.input_std):
            values = np.asarray(values, np.float32)
            if len(values) != self.in_channels:
                if self.in_channels == 1:
                    values = values.mean(keepdims=True)
                else:
                    values = values[np.arange(self.in_channels) % len(values)]
            stats.append(values)
        return stats[0], stats[1]


def node_widths(graph: Graph, spec: EncoderNetworkSpec) -> dict[str, int]:
    """Output channels of every node (smp's rule, see the module docstring) and of the input."""
    channels = graph_lib.ENCODER_FEATURES[spec.encoder][0]
    base = graph.nodes[0].level
    if len(spec.decoder_channels) != graph.depth:
        raise ValueError(
            f"config.model.decoder_channels={tuple(spec.decoder_channels)} has "
            f"{len(spec.decoder_channels)} widths; the {spec.encoder} decoder has {graph.depth} "
            f"levels below its deepest, e.g. {SMP_DECODER_CHANNELS[: graph.depth]}"
        )
    widths = {graph_lib.INPUT: spec.in_channels}
    for node in graph.nodes:
        if node.block is Block.ENCODER:
            widths[node.name] = channels[node.level - base]
        elif node.block is Block.FULL_SCALE:
            widths[node.name] = spec.cat_channels * len(node.inputs)
        elif node.level < base or node.level + node.column == graph.depth:
            widths[node.name] = spec.decoder_channels[graph.depth - 1 - node.level]
        else:
            widths[node.name] = channels[node.level - base]
    return widths


class EncoderNestedUNet(nested_unet.NestedUNet):
    """A decoder graph over a pretrained encoder; calls, `predict` and pruning as `NestedUNet`.

    Only the encoder stages the (sub)graph holds are built, and only those a call's depth needs
    are run: a UNet++ pruned to L1 over a ResNet holds and runs the stem and `layer1` alone.

    Attributes:
      graph, spec: the graph (full or a `subgraph`) and the layer options.
      encoder: the encoder module, `encoder.num_features` = the graph's encoder nodes.
      nodes: decoder node name -> its block; heads: `head_{L}` -> its segmentation head.
    """

    def __init__(self, graph: Graph, spec: EncoderNetworkSpec, *, rngs: nnx.Rngs):
        self.graph = graph
        self.spec = spec
        widths = node_widths(graph, spec)
        encoder_nodes = [node for node in graph.nodes if node.block is Block.ENCODER]
        self.encoder = encoders.create_encoder(
            spec.encoder,
            in_channels=spec.in_channels,
            num_features=len(encoder_nodes),
            freeze_bn=spec.freeze_encoder_bn,
            dtype=spec.dtype,
            param_dtype=spec.param_dtype,
            rngs=rngs,
        )
        self.nodes = nnx.Dict()
        for node in graph.nodes:
            if node.block is Block.FULL_SCALE:
                self.nodes[node.name] = nested_unet.FullScaleNode(node, widths, spec, rngs=rngs)
            elif node.block is not Block.ENCODER:
                self.nodes[node.name] = nested_unet.DoubleConvNode(node, widths, spec, rngs=rngs)
        self.heads = nnx.Dict(
            {
                head.name: nested_unet.SegmentationHead(head, widths[head.source], spec, rngs=rngs)
                for head in graph.heads
            }
        )

    @property
    def freeze_encoder_bn(self) -> bool:
        return self.encoder.freeze_bn

    @freeze_encoder_bn.setter
    def freeze_encoder_bn(self, value: bool) -> None:
        self.encoder.freeze_bn = value

    def normalize(self, x: jax.Array) -> jax.Array:
        """The fixed input affine the encoder's weights expect ((x - mean) / std per channel)."""
        stats = self.spec.channel_statistics()
        if stats is None:
            return x
        mean, std = stats
        return (x - mean) / std

    def _features(self, x: jax.Array, graph: Graph, *, train: bool) -> dict[str, jax.Array]:
        nested_unet.check_input_shape(x.shape, self.spec, self.graph.depth)
        encoder_nodes = [node.name for node in graph.nodes if node.block is Block.ENCODER]
        maps = self.encoder(self.normalize(x), train=train, num_features=len(encoder_nodes))
        features = {graph_lib.INPUT: x, **dict(zip(encoder_nodes, maps, strict=True))}
        for node in graph.nodes:
            if node.block is not Block.ENCODER:
                inputs = [(edge, features[edge.source]) for edge in node.inputs]
                features[node.name] = self.nodes[node.name](inputs, train=train)
        return features
