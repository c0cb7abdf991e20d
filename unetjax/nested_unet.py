"""Flax NNX modules that run a generated node graph: the whole U-Net family in 2D and 3D.

One module, `NestedUNet`, runs any `graph.Graph`; `UNet`, `WideUNet`, `UNetPlus`, `UNetPlusPlus`
and `UNet3Plus` build the graph and the module in one call. Layout is channels-last
(batch, *spatial, channels).

Outputs are always a tuple of logits, one per head, at full input resolution, ordered shallow to
deep (length 1 without deep supervision). Pruned inference, `model(x, depth=L)`, computes only the
nodes head L needs; `prune(model, L)` returns a model holding only their parameters.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
from flax import nnx

from unetjax import graph as graph_lib
from unetjax.graph import Block, Graph, Resample
from unetjax.layers import (
    ConvNormAct,
    LearnedUpsample,
    NetworkSpec,
    interpolate,
    max_pool,
    upsample_nearest,
)

Mode = Literal["fast", "accurate"]


class DoubleConvNode(nnx.Module):
    """U-Net-style node: concatenated inputs -> (conv3 -> norm -> act) x 2 (smp's `DecoderBlock`).

    An `UP` input has its own learned up-sampling to the node's width, as in the UNet++ code, or
    with `upsample="nearest"` a parameter-free one that keeps its channels, as smp's decoders.

    Attributes:
      upsamplers: learned x2 up-sampling per `UP` input (none with `upsample="nearest"`).
      conv1, conv2: the two conv blocks (smp's `conv1.0/.1`, `conv2.0/.1`).
    """

    def __init__(
        self,
        node: graph_lib.Node,
        channels: dict[str, int],
        spec: NetworkSpec,
        *,
        rngs: nnx.Rngs,
    ):
        width = channels[node.name]
        self.nearest = spec.upsample == "nearest"
        self.scales = tuple(edge_scale(node, edge, spec) for edge in node.inputs)
        self.upsamplers = nnx.Dict()
        in_channels = 0
        for edge, scale in zip(node.inputs, self.scales, strict=True):
            if edge.resample is Resample.UP and not self.nearest:
                self.upsamplers[edge.source] = LearnedUpsample(
                    channels[edge.source], width, spec, factor=scale, rngs=rngs
                )
                in_channels += width
            else:
                in_channels += channels[edge.source]
        kernel = spec.kernel(node.level)
        self.conv1 = ConvNormAct(in_channels, width, spec, kernel_size=kernel, rngs=rngs)
        self.conv2 = ConvNormAct(width, width, spec, kernel_size=kernel, rngs=rngs)

    def __call__(self, inputs: list[tuple[graph_lib.Edge, jax.Array]], *, train: bool) -> jax.Array:
        resampled = []
        for (edge, x), scale in zip(inputs, self.scales, strict=True):
            if edge.resample is Resample.UP:
                x = upsample_nearest(x, scale) if self.nearest else self.upsamplers[edge.source](x)
            else:
                x = resample_fixed(edge, x, scale)
            resampled.append(x)
        # conv1 of the list: the concatenation's convolution without the concatenation.
        return self.conv2(self.conv1(resampled, train=train), train=train)


class FullScaleNode(nnx.Module):
    """UNet 3+ decoder node: each resampled input -> conv3 to `cat_channels`, concat, conv3."""

    def __init__(
        self,
        node: graph_lib.Node,
        channels: dict[str, int],
        spec: NetworkSpec,
        *,
        rngs: nnx.Rngs,
    ):
        kernel = spec.kernel(node.level)
        self.scales = tuple(edge_scale(node, edge, spec) for edge in node.inputs)
        self.branches = nnx.List(
            [
                ConvNormAct(
                    channels[edge.source], spec.cat_channels, spec, kernel_size=kernel, rngs=rngs
                )
                for edge in node.inputs
            ]
        )
        width = spec.cat_channels * len(node.inputs)
        self.fuse = ConvNormAct(width, width, spec, kernel_size=kernel, rngs=rngs)

    def __call__(self, inputs: list[tuple[graph_lib.Edge, jax.Array]], *, train: bool) -> jax.Array:
        branches = [
            branch(resample_fixed(edge, x, scale), train=train)
            for branch, (edge, x), scale in zip(self.branches, inputs, self.scales, strict=True)
        ]
        return self.fuse(jnp.concatenate(branches, axis=-1), train=train)


def edge_scale(node: graph_lib.Node, edge: graph_lib.Edge, spec: NetworkSpec) -> tuple[int, ...]:
    """Per axis, the factor `edge` resamples by: the graph's `factor` is 2^(levels crossed), and
    the strides between those levels make it per axis (`spec.scale`)."""
    crossed = edge.factor.bit_length() - 1
    if edge.resample is Resample.POOL:
        return spec.scale(node.level - crossed, node.level)
    return spec.scale(node.level, node.level + crossed)


def resample_fixed(
    edge: graph_lib.Edge, x: jax.Array, scale: Sequence[int] | None = None
) -> jax.Array:
    """The parameter-free resamplings: identity, max-pool, interpolation (by `scale` per axis,
    default the edge's factor on every axis)."""
    factor = edge.factor if scale is None else tuple(scale)
    if edge.resample is Resample.IDENTITY:
        return x
    if edge.resample is Resample.POOL:
        return max_pool(x, factor)
    if edge.resample is Resample.INTERPOLATE:
        return interpolate(x, factor)
    raise ValueError(f"{edge.resample} needs parameters; the node owns it")


class SegmentationHead(nnx.Module):
    """conv (1x1, or 3x3 for UNet 3+) to class logits, interpolated up to full resolution."""

    def __init__(
        self, head: graph_lib.Head, in_channels: int, spec: NetworkSpec, *, rngs: nnx.Rngs
    ):
        # A head's factor is 2^(its level): per axis, the strides above that level.
        self.factor = spec.scale(0, head.factor.bit_length() - 1)
        self.conv = nnx.Conv(
            in_channels,
            spec.num_classes,
            (head.kernel_size,) * spec.spatial_dims,
            padding="SAME",
            dtype=spec.dtype,
            param_dtype=spec.param_dtype,
            rngs=rngs,
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.conv(x)
        if any(f > 1 for f in self.factor):
            x = interpolate(x, self.factor)
        return x.astype(jnp.float32)


def node_channels(graph: Graph, spec: NetworkSpec) -> dict[str, int]:
    """Output channels of every node (and of the input image)."""
    channels = {graph_lib.INPUT: spec.in_channels}
    for node in graph.nodes:
        if node.block is Block.FULL_SCALE:
            channels[node.name] = spec.cat_channels * len(node.inputs)
        else:
            channels[node.name] = spec.filters[node.level]
    return channels


class NestedUNet(nnx.Module):
    """Runs a generated node graph: one block per node, one head per graph head.

    Attributes:
      graph: the node graph this module holds parameters for (a full graph or a `subgraph`).
      spec: the layer options, shared by every node.
      nodes: `x_{i}_{j}` -> its block, in topological order.
      heads: `head_{L}` -> its segmentation head.
    """

    def __init__(self, graph: Graph, spec: NetworkSpec, *, rngs: nnx.Rngs):
        if len(spec.filters) != graph.depth + 1:
            raise ValueError(
                f"filters {spec.filters} has {len(spec.filters)} levels; depth {graph.depth} "
                f"needs {graph.depth + 1}"
            )
        self.graph = graph
        self.spec = spec
        channels = node_channels(graph, spec)
        self.nodes = nnx.Dict()
        for node in graph.nodes:
            block = FullScaleNode if node.block is Block.FULL_SCALE else DoubleConvNode
            self.nodes[node.name] = block(node, channels, spec, rngs=rngs)
        self.heads = nnx.Dict(
            {
                head.name: SegmentationHead(head, channels[head.source], spec, rngs=rngs)
                for head in graph.heads
            }
        )

    @property
    def head_depths(self) -> tuple[int, ...]:
        return self.graph.head_depths

    def __call__(
        self, x: jax.Array, *, train: bool = False, depth: int | None = None
    ) -> tuple[jax.Array, ...]:
        """Logits of every head up to `depth` (all heads by default), shallow to deep.

        Only the nodes of `subgraph(graph, depth)` are computed. x: (batch, *spatial, in_channels).
        """
        if depth is not None:
            graph = graph_lib.subgraph(self.graph, depth, mode="accurate")
        else:
            graph = self.graph
        features = self._features(x, graph, train=train)
        return tuple(self.heads[head.name](features[head.source]) for head in graph.heads)

    def predict(self, x: jax.Array, *, depth: int | None = None, mode: Mode = "fast") -> jax.Array:
        """Probabilities at inference: head L alone ("fast") or the mean of heads <= L ("accurate").

        Fast mode computes only head L's ancestors and head L. Returns (batch, *spatial, classes).
        """
        depth = self.graph.heads[-1].depth if depth is None else depth
        graph = graph_lib.subgraph(self.graph, depth, mode=mode)
        features = self._features(x, graph, train=False)
        probabilities = [
            self.probabilities(self.heads[h.name](features[h.source])) for h in graph.heads
        ]
        return accurate_mean(probabilities)

    def probabilities(self, logits: jax.Array) -> jax.Array:
        if self.spec.output_activation == "softmax":
            return jax.nn.softmax(logits, axis=-1)
        return jax.nn.sigmoid(logits)

    def _features(self, x: jax.Array, graph: Graph, *, train: bool) -> dict[str, jax.Array]:
        check_input_shape(x.shape, self.spec, self.graph.depth)
        features = {graph_lib.INPUT: x}
        for node in graph.nodes:
            inputs = [(edge, features[edge.source]) for edge in node.inputs]
            features[node.name] = self.nodes[node.name](inputs, train=train)
        return features


def accurate_mean(probabilities: Sequence[jax.Array]) -> jax.Array:
    """Accurate mode: the mean of the heads' probabilities (the UNet++ paper's ensemble)."""
    return sum(probabilities[1:], probabilities[0]) / len(probabilities)


def check_layout(shape: Sequence[int], spec: NetworkSpec, *, batched: bool = True) -> None:
    """Raises a ValueError naming the shape when its rank or channels do not fit the network
    (`batched`: (batch, *spatial, C); else one image (*spatial, C))."""
    axes = ("depth", "height", "width")[-spec.spatial_dims :]
    layout = "(" + ", ".join((("batch",) if batched else ()) + axes + ("channels",)) + ")"
    what = "input shape" if batched else "shape"
    if len(shape) != spec.spatial_dims + 1 + batched:
        raise ValueError(f"{what} {tuple(shape)} has rank {len(shape)}; expected {layout}")
    if shape[-1] != spec.in_channels:
        raise ValueError(
            f"{what} {tuple(shape)} has {shape[-1]} channels; the model expects "
            f"{spec.in_channels} (channels last, {layout})"
        )


def check_input_shape(shape: Sequence[int], spec: NetworkSpec, depth: int) -> None:
    """`check_layout`, and spatial sizes divisible by `spec.divisor(depth)` (2^depth without
    per-axis strides; the error names the nearest)."""
    check_layout(shape, spec)
    for size, multiple in zip(shape[1:-1], spec.divisor(depth), strict=True):
        if size % multiple:
            lower, upper = (size // multiple) * multiple, (size // multiple + 1) * multiple
            nearest = f"{lower} or {upper}" if lower else f"{upper}"
            what = f"2^{depth} = {multiple}" if spec.strides is None else f"{multiple} (strides)"
            raise ValueError(
                f"input shape {tuple(shape)}: spatial size {size} is not divisible by {what}; "
                f"use {nearest}, or pad (overlap-tile inference handles any size)"
            )


def create(
    architecture: str,
    *,
    depth: int | None = None,
    filters: Sequence[int] | None = None,
    deep_supervision: bool = True,
    rngs: nnx.Rngs,
    **options: Any,
) -> NestedUNet:
    """Builds the graph of `architecture` and a module for it.

    `filters` and `depth` follow `graph.model_filters` (default: the paper's 32, 64, ... or 35,
    70, ... for the wide U-Net, depth 4). Other options go to `NetworkSpec`.
    """
    filters = graph_lib.model_filters(architecture, depth=depth, filters=filters)
    graph = graph_lib.build_graph(architecture, len(filters) - 1, deep_supervision=deep_supervision)
    return NestedUNet(graph, NetworkSpec(filters=filters, **options), rngs=rngs)


UNet = functools.partial(create, "unet")
WideUNet = functools.partial(create, "wide_unet")
UNetPlus = functools.partial(create, "unet_plus")
UNetPlusPlus = functools.partial(create, "unet_plusplus")
UNet3Plus = functools.partial(create, "unet_3plus")


def pruned_abstract(model: NestedUNet, depth: int, mode: Mode = "fast") -> NestedUNet:
    """The depth-L model's structure with shape-only parameters (nothing allocated)."""
    graph = graph_lib.subgraph(model.graph, depth, mode=mode)
    return nnx.eval_shape(lambda: type(model)(graph, model.spec, rngs=nnx.Rngs(0)))


def prune(model: NestedUNet, depth: int, mode: Mode = "fast") -> NestedUNet:
    """A model of `subgraph(model.graph, depth, mode=mode)` holding only that subgraph's state.

    Its state paths are a subset of the full model's, with the same values.
    """
    pruned = pruned_abstract(model, depth, mode)
    graphdef, abstract_state = nnx.split(pruned)
    full = dict(nnx.to_flat_state(nnx.state(model)))
    kept = [(path, full[path]) for path, _ in nnx.to_flat_state(abstract_state)]
    return nnx.merge(graphdef, nnx.from_flat_state(kept))


def count_params(model: nnx.Module) -> int:
    """Number of trainable parameters (batch-norm statistics excluded)."""
    return sum(math.prod(p.shape) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
