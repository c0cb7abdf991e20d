"""The node graph against hand-written graphs from the papers' figures."""

import pytest

from unetjax import graph as g
from unetjax import graph_text
from unetjax.graph import Resample


def edges(graph: g.Graph) -> dict[str, list[tuple[str, str, int]]]:
    return {
        node.name: [(e.source, e.resample.value, e.factor) for e in node.inputs]
        for node in graph.nodes
    }


ENCODER_D2 = {
    "x_0_0": [("input", "identity", 1)],
    "x_1_0": [("x_0_0", "pool", 2)],
    "x_2_0": [("x_1_0", "pool", 2)],
}


def test_unetplusplus_depth2_matches_the_paper_figure():
    graph = g.build_graph("unet_plusplus", 2)
    assert edges(graph) == {
        **ENCODER_D2,
        "x_0_1": [("x_1_0", "up", 2), ("x_0_0", "identity", 1)],
        "x_1_1": [("x_2_0", "up", 2), ("x_1_0", "identity", 1)],
        "x_0_2": [("x_1_1", "up", 2), ("x_0_0", "identity", 1), ("x_0_1", "identity", 1)],
    }
    assert [(h.name, h.source) for h in graph.heads] == [("head_1", "x_0_1"), ("head_2", "x_0_2")]


def test_unet_plus_has_nested_nodes_without_dense_skips():
    graph = g.build_graph("unet_plus", 2)
    assert edges(graph)["x_0_2"] == [("x_1_1", "up", 2), ("x_0_1", "identity", 1)]
    assert len(graph.heads) == 2


def test_unet_has_one_decoder_node_per_level_and_one_head():
    graph = g.build_graph("unet", 2)
    assert edges(graph) == {
        **ENCODER_D2,
        "x_1_1": [("x_2_0", "up", 2), ("x_1_0", "identity", 1)],
        "x_0_2": [("x_1_1", "up", 2), ("x_0_0", "identity", 1)],
    }
    assert [h.source for h in graph.heads] == ["x_0_2"]
    assert g.build_graph("wide_unet", 2).nodes == graph.nodes


def test_unet3plus_full_scale_skips():
    graph = g.build_graph("unet_3plus", 2)
    assert edges(graph) == {
        **ENCODER_D2,
        "x_1_1": [("x_0_0", "pool", 2), ("x_1_0", "identity", 1), ("x_2_0", "interpolate", 2)],
        "x_0_2": [
            ("x_0_0", "identity", 1),
            ("x_1_1", "interpolate", 2),
            ("x_2_0", "interpolate", 4),
        ],
    }
    assert [(h.source, h.factor, h.kernel_size) for h in graph.heads] == [
        ("x_1_1", 2, 3),
        ("x_0_2", 1, 3),
    ]


@pytest.mark.parametrize("architecture", g.ARCHITECTURES)
@pytest.mark.parametrize("depth", [1, 3, 4])
def test_nodes_are_topologically_ordered_and_named_by_position(architecture, depth):
    graph = g.build_graph(architecture, depth)
    seen = {g.INPUT}
    for node in graph.nodes:
        assert node.name == f"x_{node.level}_{node.column}"
        for edge in node.inputs:
            assert edge.source in seen, f"{node.name} reads {edge.source} before it exists"
            if edge.resample is Resample.UP:
                assert edge.source == f"x_{node.level + 1}_{node.column - 1}"
        seen.add(node.name)
    nested = architecture in ("unet_plus", "unet_plusplus")
    expected_nodes = (depth + 1) * (depth + 2) // 2 if nested else 2 * depth + 1
    assert len(graph.nodes) == expected_nodes


def test_subgraph_of_unetplusplus_is_the_pruned_network():
    graph = g.build_graph("unet_plusplus", 4)
    pruned = g.subgraph(graph, 2)
    assert set(pruned.node_names) == {"x_0_0", "x_1_0", "x_2_0", "x_0_1", "x_1_1", "x_0_2"}
    assert [h.name for h in pruned.heads] == ["head_2"]
    accurate = g.subgraph(graph, 2, mode="accurate")
    assert [h.name for h in accurate.heads] == ["head_1", "head_2"]
    assert g.subgraph(graph, 4).nodes == graph.nodes


def test_subgraph_of_unet3plus_keeps_the_deeper_decoders():
    pruned = g.subgraph(g.build_graph("unet_3plus", 3), 2)
    assert set(pruned.node_names) == {"x_0_0", "x_1_0", "x_2_0", "x_3_0", "x_2_1", "x_1_2"}


def test_deep_supervision_off_keeps_only_the_deepest_head():
    graph = g.build_graph("unet_plusplus", 3, deep_supervision=False)
    assert [h.depth for h in graph.heads] == [3]
    with pytest.raises(ValueError, match="no head at depth 2"):
        g.subgraph(graph, 2)


def test_bad_arguments_name_what_was_expected():
    with pytest.raises(ValueError, match="unknown architecture 'unet4'"):
        g.build_graph("unet4", 4)
    with pytest.raises(ValueError, match="depth must be >= 1"):
        g.build_graph("unet", 0)
    with pytest.raises(ValueError, match="mode must be"):
        g.subgraph(g.build_graph("unet", 2), 2, mode="quick")


def test_renderings_show_every_node_and_edge():
    graph = g.build_graph("unet_plusplus", 2)
    table = graph_text.to_table(graph)
    assert "x_0_2    <- [up x2(x_1_1), x_0_0, x_0_1]" in table
    dot = graph_text.to_dot(graph)
    assert dot.count("->") == sum(len(n.inputs) for n in graph.nodes) - 1 + len(graph.heads)
    assert 'x_1_1 -> x_0_2 [label="up x2"];' in dot
