"""The nested X^{i,j} node graph that every U-Net family member is generated from.

Plain Python, no JAX: the model, pruning, parameter export and benchmarks all read the same `Graph`.

Node `x_{i}_{j}` sits at level `i` (resolution 1 / 2^i; per axis with `model.strides`, see
`scales`) and column `j` (decoder steps from the encoder), as in the UNet++ paper. Column 0 is
the encoder. Every node lists its inputs in concatenation order, each with the resampling that
brings it to the node's resolution.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from unetjax import scales

ARCHITECTURES = ("unet", "wide_unet", "unet_plus", "unet_plusplus", "unet_3plus")
INPUT = "input"
DEFAULT_DEPTH = 4
# Level-0 width of the papers' networks: the wide U-Net is widened to match UNet++'s parameters.
PAPER_BASE_FILTERS = {"wide_unet": 35}
PAPER_BASE = 32


class Resample(enum.Enum):
    """How an input reaches a node's resolution."""

    IDENTITY = "identity"
    POOL = "pool"  # max-pool by `factor`
    UP = "up"  # learned up-sampling by 2 (transposed conv, or interpolation + 1x1 conv)
    INTERPOLATE = "interpolate"  # parameter-free linear interpolation by `factor` (UNet 3+)


class Block(enum.Enum):
    """What a node computes from its (resampled) inputs."""

    DOUBLE_CONV = "double_conv"  # concat -> (conv3 -> norm -> act) x 2 (U-Net, UNet+, UNet++)
    FULL_SCALE = "full_scale"  # each input conv3 -> cat_channels, concat, conv3 (UNet 3+ decoder)
    ENCODER = "encoder"  # one stage of a pretrained encoder (its input: the stage before)


# Feature channels and strides of the pretrained encoders (unetjax.encoders builds them), here so
# that a run's graph can be read without JAX. Encoder feature i has stride reductions[i]: it is
# node x_{log2 stride}_0.
ENCODER_FEATURES: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "resnet18": ((64, 64, 128, 256, 512), (2, 4, 8, 16, 32)),
    "resnet34": ((64, 64, 128, 256, 512), (2, 4, 8, 16, 32)),
    "resnet50": ((64, 256, 512, 1024, 2048), (2, 4, 8, 16, 32)),
    "convnext_tiny": ((96, 192, 384, 768), (4, 8, 16, 32)),
    "resnet_tiny": ((8, 8, 16, 32, 64), (2, 4, 8, 16, 32)),
}


@dataclasses.dataclass(frozen=True)
class Edge:
    """One input of a node: `source` resampled by `resample` with scale `factor`: 2^(levels
    crossed), per axis the product of those levels' strides (`scales.factor`)."""

    source: str
    resample: Resample
    factor: int = 1


@dataclasses.dataclass(frozen=True)
class Node:
    """Node `x_{level}_{column}` and its ordered inputs."""

    name: str
    level: int
    column: int
    inputs: tuple[Edge, ...]
    block: Block = Block.DOUBLE_CONV


@dataclasses.dataclass(frozen=True)
class Head:
    """A segmentation head: a conv on `source`, up-sampled by `factor` to full resolution.

    `depth` is the L of the paper: head L is what the network pruned to depth L predicts.
    """

    name: str
    source: str
    depth: int
    kernel_size: int = 1
    factor: int = 1


@dataclasses.dataclass(frozen=True)
class Graph:
    """A DAG of nodes in topological order, and its heads ordered shallow to deep."""

    architecture: str
    depth: int
    nodes: tuple[Node, ...]
    heads: tuple[Head, ...]

    @property
    def node_names(self) -> tuple[str, ...]:
        return tuple(node.name for node in self.nodes)

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(
            f"no node {name!r} in the {self.architecture} graph; it has {self.node_names}"
        )

    def head(self, depth: int) -> Head:
        for head in self.heads:
            if head.depth == depth:
                return head
        depths = [head.depth for head in self.heads]
        raise ValueError(
            f"the {self.architecture} graph has no head at depth {depth}; its heads are at {depths}"
        )

    @property
    def head_depths(self) -> tuple[int, ...]:
        return tuple(head.depth for head in self.heads)


def node_name(level: int, column: int) -> str:
    return f"x_{level}_{column}"


def _encoder(depth: int) -> list[Node]:
    nodes = [Node(node_name(0, 0), 0, 0, (Edge(INPUT, Resample.IDENTITY),))]
    for level in range(1, depth + 1):
        source = node_name(level - 1, 0)
        nodes.append(Node(node_name(level, 0), level, 0, (Edge(source, Resample.POOL, 2),)))
    return nodes


def _nested_decoder(
    depth: int, dense: bool, full_columns: bool, *, base: int = 0, newest_first: bool = False
) -> list[Node]:
    """Decoder nodes X^{i,j}, generated column by column so inputs precede their users.

    dense: UNet++ skips (every X^{i,k}, k < j) instead of only the left neighbour (UNet+, U-Net).
    full_columns: every i + j <= base + depth (nested) instead of only i + j == base + depth.
    base: the shallowest level with nodes (an encoder's first level).
    newest_first: skips concatenated X^{i,j-1} .. X^{i,0}, as smp does (so its weights convert
      by name), instead of X^{i,0} .. X^{i,j-1} as the UNet++ paper's code.
    """
    nodes = []
    for column in range(1, depth + 1):
        deepest = base + depth - column
        levels = range(base, deepest + 1) if full_columns else [deepest]
        for level in levels:
            up = Edge(node_name(level + 1, column - 1), Resample.UP, 2)
            if dense:
                skip_columns = range(column)
            elif full_columns:
                skip_columns = [column - 1]
            else:
                skip_columns = [0]
            if newest_first:
                skip_columns = reversed(skip_columns)
            skips = tuple(Edge(node_name(level, k), Resample.IDENTITY) for k in skip_columns)
            nodes.append(Node(node_name(level, column), level, column, (up, *skips)))
    return nodes


def _unet3plus_decoder(depth: int, *, base: int = 0) -> list[Node]:
    """UNet 3+ decoder: one node per level base <= i < depth, named x_{i}_{depth - i} like U-Net's.

    Inputs: encoder levels <= i (max-pooled down), deeper decoder nodes and the bottom encoder node
    (interpolated up), shallow to deep.
    """
    nodes = []
    for level in range(depth - 1, base - 1, -1):
        inputs = []
        for source_level in range(base, depth + 1):
            if source_level <= level:
                source = node_name(source_level, 0)
                factor = 2 ** (level - source_level)
                kind = Resample.IDENTITY if factor == 1 else Resample.POOL
            else:
                column = 0 if source_level == depth else depth - source_level
                source = node_name(source_level, column)
                factor = 2 ** (source_level - level)
                kind = Resample.INTERPOLATE
            inputs.append(Edge(source, kind, factor))
        nodes.append(
            Node(
                node_name(level, depth - level),
                level,
                depth - level,
                tuple(inputs),
                Block.FULL_SCALE,
            )
        )
    return nodes


def build_graph(architecture: str, depth: int = 4, *, deep_supervision: bool = True) -> Graph:
    """Generates the node graph of `architecture` with levels 0..depth.

    With `deep_supervision`, UNet+ and UNet++ have heads on x_0_1..x_0_depth and UNet 3+ on every
    decoder level; without it, and always for U-Net, only the deepest head exists.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; expected one of {ARCHITECTURES}")
    if depth < 1:
        raise ValueError(f"depth must be >= 1 (levels 0..depth), got {depth}")

    nodes = _encoder(depth)
    if architecture == "unet_3plus":
        nodes += _unet3plus_decoder(depth)
        heads = [
            Head(
                f"head_{depth - level}",
                node_name(level, depth - level),
                depth - level,
                kernel_size=3,
                factor=2**level,
            )
            for level in range(depth - 1, -1, -1)
        ]
    else:
        nested = architecture in ("unet_plus", "unet_plusplus")
        nodes += _nested_decoder(depth, dense=architecture == "unet_plusplus", full_columns=nested)
        if nested:
            heads = [Head(f"head_{j}", node_name(0, j), j) for j in range(1, depth + 1)]
        else:
            heads = [Head(f"head_{depth}", node_name(0, depth), depth)]
    if not deep_supervision:
        heads = heads[-1:]
    return Graph(architecture, depth, tuple(nodes), tuple(heads))


def encoder_levels(reductions: Sequence[int]) -> tuple[int, ...]:
    """The levels (log2 of the strides) of an encoder's feature maps: consecutive, each 2x the
    one before, e.g. (1, 2, 3, 4, 5) for a ResNet's strides 2..32."""
    levels = tuple(int(r).bit_length() - 1 for r in reductions)
    first = levels[0] if levels else 0
    if any(2**lv != r for lv, r in zip(levels, reductions, strict=True)) or levels != tuple(
        range(first, first + len(levels))
    ):
        raise ValueError(f"encoder strides {tuple(reductions)} are not consecutive powers of 2")
    if len(levels) < 2:
        raise ValueError(f"an encoder needs at least 2 feature maps, got strides {reductions}")
    return levels


def _full_resolution_chain(source: Node, column: int) -> list[Node]:
    """smp's rule for the levels below the encoder's first: x_{i}_{column} up-samples
    x_{i+1}_{column} (no skip) until level 0, at full input resolution."""
    nodes = []
    for level in range(source.level - 1, -1, -1):
        up = Edge(node_name(level + 1, column) if nodes else source.name, Resample.UP, 2)
        nodes.append(Node(node_name(level, column), level, column, (up,)))
    return nodes


def build_encoder_graph(
    architecture: str, levels: Sequence[int], *, deep_supervision: bool = True
) -> Graph:
    """The graph of `architecture` over a pretrained encoder whose features sit at `levels`.

    The encoder's feature maps are the X^{i,0} column (`Block.ENCODER`, i in `levels`); the
    decoder is the architecture's, on levels[0]..levels[-1] (depth D = levels[-1] - levels[0],
    heads L = 1..D); each head's node then reaches full resolution through up-sampling nodes
    without skips (`_full_resolution_chain`, smp's last decoder block), and heads are 3x3 convs
    as smp's. `graph.depth` is the deepest level, so inputs are multiples of 2^levels[-1].
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; expected one of {ARCHITECTURES}")
    base, top = levels[0], levels[-1]
    depth = top - base
    nodes = [Node(node_name(base, 0), base, 0, (Edge(INPUT, Resample.IDENTITY),), Block.ENCODER)]
    for level in range(base + 1, top + 1):
        source = Edge(node_name(level - 1, 0), Resample.POOL, 2)
        nodes.append(Node(node_name(level, 0), level, 0, (source,), Block.ENCODER))
    if architecture == "unet_3plus":
        nodes += _unet3plus_decoder(top, base=base)
        sources = {d: node_name(top - d, d) for d in range(1, depth + 1)}
    else:
        nested = architecture in ("unet_plus", "unet_plusplus")
        nodes += _nested_decoder(
            depth,
            dense=architecture == "unet_plusplus",
            full_columns=nested,
            base=base,
            newest_first=True,
        )
        sources = {d: node_name(base, d) for d in (range(1, depth + 1) if nested else [depth])}
    if not deep_supervision:
        sources = {depth: sources[depth]}
    by_name = {node.name: node for node in nodes}
    heads = []
    for head_depth, source in sources.items():
        node = by_name[source]
        if architecture == "unet_3plus" and head_depth < depth:
            # UNet 3+'s side heads interpolate their coarse logits, as in the paper.
            heads.append(Head(f"head_{head_depth}", source, head_depth, 3, factor=2**node.level))
            continue
        chain = _full_resolution_chain(node, head_depth)
        nodes += chain
        heads.append(Head(f"head_{head_depth}", chain[-1].name if chain else source, head_depth, 3))
    return Graph(architecture, top, tuple(nodes), tuple(heads))


def model_filters(
    architecture: str,
    *,
    depth: int | None = None,
    filters: Sequence[int] | None = None,
    base_filters: int | None = None,
) -> tuple[int, ...]:
    """Feature channels per level: the one rule every config-to-model path uses.

    `filters` as given (then `depth`, if set, must be `len(filters) - 1`); otherwise `base_filters`
    (default: the paper's 32, or 35 for the wide U-Net) doubled per level for `depth` + 1 levels
    (default depth 4).
    """
    if filters:
        filters = tuple(int(f) for f in filters)
        if depth is not None and depth != len(filters) - 1:
            raise ValueError(
                f"filters {filters} has {len(filters)} levels; depth {depth} needs {depth + 1} "
                f"(set depth to {len(filters) - 1}, or leave it unset to follow the filters)"
            )
        return filters
    base = base_filters or PAPER_BASE_FILTERS.get(architecture, PAPER_BASE)
    depth = DEFAULT_DEPTH if depth is None else depth
    return tuple(base * 2**level for level in range(depth + 1))


def graph_from_config(model_config: Mapping[str, Any]) -> Graph:
    """The graph a `config.model` section describes (a ConfigDict or a plain dict of config.json).

    Needs no JAX, so recipes and reports can read a run's heads and depth cheaply. With
    `model.encoder` set, the graph is built over that encoder's levels (`build_encoder_graph`).
    """
    encoder = model_config.get("encoder")
    if encoder:
        scales.from_config(model_config, 0)  # per-axis pooling: not over an encoder
        if encoder not in ENCODER_FEATURES:
            raise ValueError(
                f"config.model.encoder={encoder!r}; choose one of {', '.join(ENCODER_FEATURES)}"
            )
        return build_encoder_graph(
            model_config["architecture"],
            encoder_levels(ENCODER_FEATURES[encoder][1]),
            deep_supervision=model_config.get("deep_supervision", True),
        )
    filters = model_filters(
        model_config["architecture"],
        depth=model_config.get("depth"),
        filters=model_config.get("filters"),
        base_filters=model_config.get("base_filters"),
    )
    scales.from_config(model_config, len(filters) - 1)  # per-axis pooling: checked here
    return build_graph(
        model_config["architecture"],
        len(filters) - 1,
        deep_supervision=model_config.get("deep_supervision", True),
    )


def ancestors(graph: Graph, names: Iterable[str]) -> set[str]:
    """The given nodes and every node they read from, directly or not."""
    wanted = set(names)
    for node in reversed(graph.nodes):
        if node.name in wanted:
            wanted.update(edge.source for edge in node.inputs if edge.source != INPUT)
    return wanted


def subgraph(graph: Graph, depth: int, *, mode: str = "fast") -> Graph:
    """The network pruned to depth L: the ancestors of head L, and its heads.

    mode "fast" keeps head L alone (the paper's pruned UNet++ L^depth, with its parameter count);
    "accurate" also keeps the shallower heads whose nodes are in the subgraph, to average them.
    Node and head names are kept, so the pruned model's parameters are a subtree of the full one's.
    """
    if mode not in ("fast", "accurate"):
        raise ValueError(f"mode must be 'fast' or 'accurate', got {mode!r}")
    head = graph.head(depth)
    keep = ancestors(graph, [head.source])
    if mode == "fast":
        heads = (head,)
    else:
        heads = tuple(h for h in graph.heads if h.depth <= depth and h.source in keep)
    nodes = tuple(node for node in graph.nodes if node.name in keep)
    return dataclasses.replace(graph, nodes=nodes, heads=heads)
