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
import logging
import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from unetjax import checkpoint, encoders, nested_unet, rundir
from unetjax import graph as graph_lib
from unetjax.graph import Block, Graph, Resample
from unetjax.layers import ConvNormAct, LearnedUpsample, NetworkSpec

logger = logging.getLogger(__name__)

# segmentation_models_pytorch's decoder widths, deepest first.
SMP_DECODER_CHANNELS = (256, 128, 64, 32, 16)
NORMALIZATIONS = {"imagenet": (encoders.IMAGENET_MEAN, encoders.IMAGENET_STD)}
HUB_FILE = "model.safetensors"


@dataclasses.dataclass(frozen=True)
class EncoderNetworkSpec(NetworkSpec):
    """`NetworkSpec` plus the encoder (`filters` is unused: the widths come from below).

    Attributes:
      encoder: a key of `unetjax.encoders.ENCODERS`.
      decoder_channels: widths of the decoder path, deepest level first (one per level below
        the encoder's deepest: 5 for ResNet and ConvNeXt).
      upsample: also "nearest": parameter-free nearest-neighbour x2, as smp's decoders.
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
        if self.upsample == "nearest":
            dataclasses.replace(self, upsample="transpose")  # the other options' checks
        else:
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


def upsample_nearest(x: jax.Array) -> jax.Array:
    """x2 nearest-neighbour up-sampling of the spatial axes (torch's `interpolate(..., 2)`)."""
    for axis in range(1, x.ndim - 1):
        x = jnp.repeat(x, 2, axis=axis)
    return x


class DecoderNode(nnx.Module):
    """smp's `DecoderBlock`: up-sampled input and skips concatenated -> (conv3, norm, act) x 2.

    Attributes:
      upsamplers: learned x2 up-sampling per `UP` input (none with `upsample="nearest"`).
      conv1, conv2: the two conv blocks (smp's `conv1.0/.1`, `conv2.0/.1`).
    """

    def __init__(
        self, node: graph_lib.Node, widths: dict[str, int], spec: EncoderNetworkSpec, *, rngs
    ):
        width = widths[node.name]
        self.nearest = spec.upsample == "nearest"
        self.upsamplers = nnx.Dict()
        in_channels = 0
        for edge in node.inputs:
            if edge.resample is Resample.UP and not self.nearest:
                self.upsamplers[edge.source] = LearnedUpsample(
                    widths[edge.source], width, spec, rngs=rngs
                )
                in_channels += width
            else:
                in_channels += widths[edge.source]
        self.conv1 = ConvNormAct(in_channels, width, spec, rngs=rngs)
        self.conv2 = ConvNormAct(width, width, spec, rngs=rngs)

    def __call__(self, inputs: list[tuple[graph_lib.Edge, jax.Array]], *, train: bool) -> jax.Array:
        resampled = []
        for edge, x in inputs:
            if edge.resample is Resample.UP:
                x = upsample_nearest(x) if self.nearest else self.upsamplers[edge.source](x)
            else:
                x = nested_unet.resample_fixed(edge, x)
            resampled.append(x)
        x = resampled[0] if len(resampled) == 1 else jnp.concatenate(resampled, axis=-1)
        return self.conv2(self.conv1(x, train=train), train=train)


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
                self.nodes[node.name] = DecoderNode(node, widths, spec, rngs=rngs)
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


def spec_from_config(model_config: Mapping[str, Any]) -> EncoderNetworkSpec:
    """The layer options of a `config.model` section with `encoder` set."""
    plain = dict(model_config.items())
    plain["upsample"] = "transpose"  # NetworkSpec does not know "nearest"; set below
    base = nested_unet.spec_from_config(plain)
    fields = {field.name: getattr(base, field.name) for field in dataclasses.fields(NetworkSpec)}
    mean, std = model_config.get("input_mean"), model_config.get("input_std")
    decoder_channels = model_config.get("decoder_channels") or SMP_DECODER_CHANNELS
    return EncoderNetworkSpec(
        **{**fields, "upsample": model_config["upsample"]},
        encoder=model_config["encoder"],
        decoder_channels=tuple(int(c) for c in decoder_channels),
        input_mean=None if mean is None else tuple(float(v) for v in mean),
        input_std=None if std is None else tuple(float(v) for v in std),
        freeze_encoder_bn=bool(model_config.get("freeze_encoder_bn", False)),
    )


def from_config(
    model_config: Mapping[str, Any], *, seed: int = 0, pretrained: bool = False
) -> EncoderNestedUNet:
    """The encoder network of a `config.model` section. With `pretrained`, the encoder holds
    `model.encoder_weights` (a file, or "imagenet" through huggingface_hub) when it is set, and
    then every array of the run `model.init_from` with the same path and shape."""
    model = EncoderNestedUNet(
        graph_lib.graph_from_config(model_config),
        spec_from_config(model_config),
        rngs=nnx.Rngs(seed),
    )
    weights = model_config.get("encoder_weights")
    if pretrained and weights:
        encoders.load_weights(model.encoder, resolve_weights(model_config["encoder"], weights))
    if pretrained and model_config.get("init_from"):
        initialize_from_run(model, model_config["init_from"])
    return model


def initialize_from_run(model: nnx.Module, run_dir: str) -> None:
    """Copies into `model` the arrays of run `run_dir`'s latest checkpoint whose path and shape
    it shares (e.g. an imported smp network under a model with deep supervision added)."""
    config = rundir.load_config(run_dir)
    saved = nnx.eval_shape(lambda: nested_unet.from_config(config.model))
    ours = {path: v.shape for path, v in nnx.to_flat_state(nnx.state(model))}
    _, params, model_state = nnx.split(saved, nnx.Param, ...)
    target = {}
    for key, tree in (("params", params), ("model_state", model_state)):
        shared = [(p, v) for p, v in nnx.to_flat_state(tree) if ours.get(p) == v.shape]
        if shared:
            target[key] = nnx.from_flat_state(shared)
    directory = rundir.checkpoint_dir(run_dir)
    step = checkpoint.resolve_step(directory, None)
    restored = checkpoint.restore_subtree(directory, target, step)
    for tree in restored.values():
        nnx.update(model, tree)
    count = sum(len(nnx.to_flat_state(tree)) for tree in restored.values())
    logger.info("initialised %d of %d arrays from %s step %d", count, len(ours), run_dir, step)


def check_weights(model_config: Mapping[str, Any]) -> None:
    """Raises ValueError now, before any data is prepared, when `model.encoder_weights` names
    a file that is not there or ImageNet weights that cannot be fetched."""
    weights = model_config.get("encoder_weights")
    if not model_config.get("encoder") or not weights:
        return
    path = resolve_weights(model_config["encoder"], weights)
    if not os.path.isfile(path):
        raise ValueError(
            f"model.encoder_weights={path}: no such file (a timm or torchvision state_dict as "
            ".safetensors or .pth; docs/encoders.md)"
        )


def resolve_weights(encoder: str, weights: str) -> str:
    """A weights file path: `weights` itself, or for "imagenet" the encoder's timm file from the
    Hugging Face hub (only with huggingface_hub installed and online)."""
    if weights != "imagenet":
        return os.fspath(weights)
    files = [
        name for name in encoders.encoder_info(encoder).weight_files if name.startswith("timm/")
    ]
    if not files:
        raise ValueError(f"encoder {encoder!r} has no published ImageNet weights")
    repo = files[0]
    place = (
        f"download {HUB_FILE} of https://huggingface.co/{repo} and set "
        f"--config.model.encoder_weights=/path/to/{HUB_FILE}"
    )
    try:
        import huggingface_hub  # optional: only "imagenet" downloads
    except ImportError:
        raise ValueError(f"encoder_weights=imagenet needs huggingface_hub; or {place}") from None
    try:
        return huggingface_hub.hf_hub_download(repo, HUB_FILE)
    except Exception as error:  # offline, no such file, no access: all say the same fix
        raise ValueError(
            f"encoder_weights=imagenet: could not fetch {repo}/{HUB_FILE} "
            f"({type(error).__name__}); {place}"
        ) from None
