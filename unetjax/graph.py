"""The nested X^{i,j} node graph that every U-Net family member is generated from.

Plain Python, no JAX: the model, pruning, parameter export and benchmarks all read the same `Graph`.

Node `x_{i}_{j}` sits at level `i` (resolution 1 / 2^i) and column `j` (how many decoder steps
it is from the encoder), as in the UNet++ paper. Column 0 is the encoder. Every node lists its
inputs in concatenation order, each with the resampling that brings it to the node's resolution.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

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


@dataclasses.dataclass(frozen=True)
class Edge:
    """One input of a node: `source` resampled by `resample` with scale `factor` (a power of 2)."""

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


def _nested_decoder(depth: int, dense: bool, full_columns: bool) -> list[Node]:
    """Decoder nodes X^{i,j}, generated column by column so inputs precede their users.

    dense: UNet++ skips (every X^{i,k}, k < j) instead of only the left neighbour (UNet+, U-Net).
    full_columns: every i + j <= depth (nested) instead of only i + j == depth (U-Net).
    """
    nodes = []
    for column in range(1, depth + 1):
        levels = range(depth - column + 1) if full_columns else [depth - column]
        for level in levels:
            up = Edge(node_name(level + 1, column - 1), Resample.UP, 2)
            if dense:
                skip_columns = range(column)
            elif full_columns:
                skip_columns = [column - 1]
            else:
                skip_columns = [0]
            skips = tuple(Edge(node_name(level, k), Resample.IDENTITY) for k in skip_columns)
            nodes.append(Node(node_name(level, column), level, column, (up, *skips)))
    return nodes


def _unet3plus_decoder(depth: int) -> list[Node]:
    """UNet 3+ decoder: one node per level i < depth, named x_{i}_{depth - i} like U-Net's.

    Inputs: encoder levels <= i (max-pooled down), deeper decoder nodes and the bottom encoder node
    (interpolated up), shallow to deep.
    """
    nodes = []
    for level in range(depth - 1, -1, -1):
        inputs = []
        for source_level in range(depth + 1):
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

    Needs no JAX, so recipes and reports can read a run's heads and depth cheaply.
    """
    filters = model_filters(
        model_config["architecture"],
        depth=model_config.get("depth"),
        filters=model_config.get("filters"),
        base_filters=model_config.get("base_filters"),
    )
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


def to_table(graph: Graph) -> str:
    """A plain-text table of nodes, their inputs and the heads, for people to read."""
    lines = [f"{graph.architecture}, depth {graph.depth}: {len(graph.nodes)} nodes"]
    for node in graph.nodes:
        inputs = ", ".join(_edge_text(edge) for edge in node.inputs)
        lines.append(f"  {node.name:<8} <- [{inputs}]")
    for head in graph.heads:
        scale = f", up x{head.factor}" if head.factor > 1 else ""
        lines.append(f"  {head.name:<8} <- {head.source} ({head.kernel_size}x conv{scale})")
    return "\n".join(lines)


def to_dot(graph: Graph) -> str:
    """Graphviz DOT text of the graph; nodes are placed by level (rows) and column."""
    lines = [f'digraph "{graph.architecture}" {{', "  rankdir=TB;"]
    for node in graph.nodes:
        lines.append(f'  {node.name} [label="X{node.level},{node.column}"];')
    for node in graph.nodes:
        for edge in node.inputs:
            if edge.source != INPUT:
                lines.append(f'  {edge.source} -> {node.name} [label="{_resample_text(edge)}"];')
    for head in graph.heads:
        lines.append(f"  {head.name} [shape=box];")
        lines.append(f"  {head.source} -> {head.name};")
    lines.append("}")
    return "\n".join(lines)


def _resample_text(edge: Edge) -> str:
    if edge.resample is Resample.IDENTITY:
        return ""
    return f"{edge.resample.value} x{edge.factor}"


def _edge_text(edge: Edge) -> str:
    resample = _resample_text(edge)
    return f"{resample}({edge.source})" if resample else edge.source
