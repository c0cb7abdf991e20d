"""Text views of a node graph: a table of nodes and their inputs, and Graphviz DOT."""

from __future__ import annotations

from unetjax.graph import INPUT, Edge, Graph, Resample


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
