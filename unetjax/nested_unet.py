"""Flax NNX modules that run a generated node graph: the whole U-Net family in 2D and 3D.

One module, `NestedUNet`, runs any `graph.Graph`; `UNet`, `WideUNet`, `UNetPlus`, `UNetPlusPlus`
and `UNet3Plus` build the graph and the module in one call. Layout is channels-last
(batch, *spatial, channels).

Outputs are always a tuple of logits, one per head, at full input resolution, ordered shallow to
deep (length 1 without deep supervision). Pruned inference, `model(x, depth=L)`, computes only the
nodes head L needs; `prune(model, L)` returns a model holding only their parameters.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
from flax import nnx

from unetjax import graph as graph_lib
from unetjax.graph import Block, Graph, Resample

Mode = Literal["fast", "accurate"]

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "leaky_relu": functools.partial(jax.nn.leaky_relu, negative_slope=0.01),
    "elu": jax.nn.elu,
    "gelu": jax.nn.gelu,
    "silu": jax.nn.silu,
}
NORMS = ("none", "batch", "instance", "group")
UPSAMPLES = ("transpose", "interpolate")
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
      upsample: "transpose" (2x2 transposed conv, the paper) or "interpolate" (1x1 conv, then
        linear interpolation).
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
    """conv (kernel 3 by default) -> optional norm -> activation -> optional dropout."""

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

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        x = self.conv(x)
        if isinstance(self.norm, nnx.BatchNorm):
            x = self.norm(x, use_running_average=not train)
        elif self.norm is not None:
            x = self.norm(x)
        x = self.activation(x)
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
            return transposed_conv_as_matmul(self.conv, x)
        x = self.conv(x)
        # The 1x1 conv commutes with linear interpolation: convolving first is 2^d times cheaper.
        return interpolate(x, 2)


def transposed_conv_as_matmul(layer: nnx.ConvTranspose, x: jax.Array) -> jax.Array:
    """`layer(x)` for a transposed conv whose window equals its stride (2x2, "VALID").

    Each input pixel then writes its own 2x2 output block: one matrix product and a reshape, the
    same numbers as `lax.conv_transpose`. XLA:CPU runs the conv form's gradient as a naive dilated
    convolution, about 50 times slower than this product's.
    """
    x, kernel, bias = nnx.nn.dtypes.promote_dtype(
        (x, layer.kernel[...], None if layer.bias is None else layer.bias[...]), dtype=layer.dtype
    )
    spatial = x.ndim - 2
    # lax.conv_transpose without transpose_kernel correlates the dilated input with the kernel,
    # so output offset k within a block takes kernel tap (window - 1 - k): flip the taps.
    kernel = jnp.flip(kernel, axis=tuple(range(spatial)))
    in_axes, tap_axes = "defg"[:spatial], "pqrs"[:spatial]
    out_axes = "".join(a + t for a, t in zip(in_axes, tap_axes, strict=True))
    y = jnp.einsum(f"b{in_axes}c,{tap_axes}co->b{out_axes}o", x, kernel, precision=layer.precision)
    window = kernel.shape[:spatial]
    y = y.reshape(
        x.shape[0], *(n * w for n, w in zip(x.shape[1:-1], window, strict=True)), kernel.shape[-1]
    )
    if bias is not None:
        y = y + bias
    return y


def interpolate(x: jax.Array, factor: int) -> jax.Array:
    """Linear (bi/trilinear) up-sampling of the spatial axes by `factor`, half-pixel centres."""
    shape = (x.shape[0], *(size * factor for size in x.shape[1:-1]), x.shape[-1])
    return jax.image.resize(x, shape, method="linear")


def max_pool(x: jax.Array, factor: int) -> jax.Array:
    window = (factor,) * (x.ndim - 2)
    return nnx.max_pool(x, window_shape=window, strides=window)


class DoubleConvNode(nnx.Module):
    """U-Net-style node: concatenated inputs -> (conv3 -> norm -> act) x 2.

    An `UP` input has its own learned up-sampling to the node's width, as in the UNet++ code.
    """

    def __init__(
        self,
        node: graph_lib.Node,
        source_channels: dict[str, int],
        spec: NetworkSpec,
        *,
        rngs: nnx.Rngs,
    ):
        width = spec.filters[node.level]
        self.upsamplers = nnx.Dict()
        in_channels = 0
        for edge in node.inputs:
            if edge.resample is Resample.UP:
                self.upsamplers[edge.source] = LearnedUpsample(
                    source_channels[edge.source], width, spec, rngs=rngs
                )
                in_channels += width
            else:
                in_channels += source_channels[edge.source]
        self.conv1 = ConvNormAct(in_channels, width, spec, rngs=rngs)
        self.conv2 = ConvNormAct(width, width, spec, rngs=rngs)

    def __call__(self, inputs: list[tuple[graph_lib.Edge, jax.Array]], *, train: bool) -> jax.Array:
        resampled = []
        for edge, x in inputs:
            if edge.resample is Resample.UP:
                x = self.upsamplers[edge.source](x)
            else:
                x = _resample_fixed(edge, x)
            resampled.append(x)
        x = resampled[0] if len(resampled) == 1 else jnp.concatenate(resampled, axis=-1)
        return self.conv2(self.conv1(x, train=train), train=train)


class FullScaleNode(nnx.Module):
    """UNet 3+ decoder node: each resampled input -> conv3 to `cat_channels`, concat, conv3."""

    def __init__(
        self,
        node: graph_lib.Node,
        source_channels: dict[str, int],
        spec: NetworkSpec,
        *,
        rngs: nnx.Rngs,
    ):
        self.branches = nnx.List(
            [
                ConvNormAct(source_channels[edge.source], spec.cat_channels, spec, rngs=rngs)
                for edge in node.inputs
            ]
        )
        width = spec.cat_channels * len(node.inputs)
        self.fuse = ConvNormAct(width, width, spec, rngs=rngs)

    def __call__(self, inputs: list[tuple[graph_lib.Edge, jax.Array]], *, train: bool) -> jax.Array:
        branches = [
            branch(_resample_fixed(edge, x), train=train)
            for branch, (edge, x) in zip(self.branches, inputs, strict=True)
        ]
        return self.fuse(jnp.concatenate(branches, axis=-1), train=train)


def _resample_fixed(edge: graph_lib.Edge, x: jax.Array) -> jax.Array:
    """The parameter-free resamplings: identity, max-pool, interpolation."""
    if edge.resample is Resample.IDENTITY:
        return x
    if edge.resample is Resample.POOL:
        return max_pool(x, edge.factor)
    if edge.resample is Resample.INTERPOLATE:
        return interpolate(x, edge.factor)
    raise ValueError(f"{edge.resample} needs parameters; the node owns it")


class SegmentationHead(nnx.Module):
    """conv (1x1, or 3x3 for UNet 3+) to class logits, interpolated up to full resolution."""

    def __init__(
        self, head: graph_lib.Head, in_channels: int, spec: NetworkSpec, *, rngs: nnx.Rngs
    ):
        self.factor = head.factor
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
        if self.factor > 1:
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
        return sum(probabilities[1:], probabilities[0]) / len(probabilities)

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


def check_input_shape(shape: Sequence[int], spec: NetworkSpec, depth: int) -> None:
    """Raises a ValueError naming the shape and the nearest valid sizes when `shape` cannot run."""
    expected_rank = spec.spatial_dims + 2
    if len(shape) != expected_rank:
        layout = (
            "(batch, height, width, channels)"
            if spec.spatial_dims == 2
            else ("(batch, depth, height, width, channels)")
        )
        raise ValueError(f"input shape {tuple(shape)} has rank {len(shape)}; expected {layout}")
    if shape[-1] != spec.in_channels:
        raise ValueError(
            f"input shape {tuple(shape)} has {shape[-1]} channels; the model expects "
            f"{spec.in_channels} (channels last)"
        )
    multiple = 2**depth
    for size in shape[1:-1]:
        if size % multiple:
            lower, upper = (size // multiple) * multiple, (size // multiple + 1) * multiple
            nearest = f"{lower} or {upper}" if lower else f"{upper}"
            raise ValueError(
                f"input shape {tuple(shape)}: spatial size {size} is not divisible by 2^{depth} = "
                f"{multiple}; use {nearest}, or pad (overlap-tile inference handles any size)"
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

    `filters` defaults to the paper's 32, 64, ... (35, 70, ... for the wide U-Net), cut to
    `depth + 1` levels; `depth` defaults to `len(filters) - 1`. Other options go to `NetworkSpec`.
    """
    if filters is None:
        base = WIDE_FILTERS[0] if architecture == "wide_unet" else PAPER_FILTERS[0]
        depth = len(PAPER_FILTERS) - 1 if depth is None else depth
        filters = tuple(base * 2**level for level in range(depth + 1))
    filters = tuple(int(f) for f in filters)
    depth = len(filters) - 1 if depth is None else depth
    graph = graph_lib.build_graph(architecture, depth, deep_supervision=deep_supervision)
    return NestedUNet(graph, NetworkSpec(filters=filters, **options), rngs=rngs)


UNet = functools.partial(create, "unet")
WideUNet = functools.partial(create, "wide_unet")
UNetPlus = functools.partial(create, "unet_plus")
UNetPlusPlus = functools.partial(create, "unet_plusplus")
UNet3Plus = functools.partial(create, "unet_3plus")


def pruned_abstract(model: NestedUNet, depth: int, mode: Mode = "fast") -> NestedUNet:
    """The depth-L model's structure with shape-only parameters (nothing allocated)."""
    graph = graph_lib.subgraph(model.graph, depth, mode=mode)
    return nnx.eval_shape(lambda: NestedUNet(graph, model.spec, rngs=nnx.Rngs(0)))


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
