"""The package's shape, checked from its source: no import cycle, no module over 400 lines."""

from __future__ import annotations

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "unetjax"
MAX_LINES = 400


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, pathlib.Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(name: str, path: pathlib.Path, known: set[str]) -> set[str]:
    """The package's modules that `name` imports, anywhere in its body (function-level imports
    included): relative imports resolved, `from package import module` read as the module."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: len(name.split(".")) - node.level + is_package]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            # `from package import module` imports the module; `from module import name` the module.
            targets = [
                f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            # The deepest module we know: `import a.b.c` runs a and a.b first, but their
            # `__init__`s are not the module that asked for c.
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imported_modules(name, path, set(known)) for name, path in known.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as [a, b, ..., a], or None (depth-first search, three colours)."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return [*stack[stack.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_hand_built_cycle_and_accepts_a_chain():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_imports_are_read_from_relative_and_from_package_forms(tmp_path):
    source = tmp_path / "module.py"
    source.write_text(
        "from unetjax import graph, layers as l\n"
        "from . import losses\n"
        "from .data import pipeline\n"
        "import unetjax.inference.tiling\n"
        "def late():\n    from unetjax.nested_unet import NestedUNet\n"
    )
    known = {
        "unetjax.graph",
        "unetjax.layers",
        "unetjax.losses",
        "unetjax.data",
        "unetjax.data.pipeline",
        "unetjax.inference",
        "unetjax.inference.tiling",
        "unetjax.nested_unet",
    }
    assert imported_modules("unetjax.module", source, known) == {
        "unetjax.graph",
        "unetjax.layers",
        "unetjax.losses",
        "unetjax.data.pipeline",
        "unetjax.inference.tiling",
        "unetjax.nested_unet",
    }


def test_no_import_cycle_among_the_package_modules():
    graph = import_graph()
    assert len(graph) > 50  # the whole package was read
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_module_is_over_400_lines():
    lengths = {name: len(path.read_text().splitlines()) for name, path in modules().items()}
    over = {name: count for name, count in lengths.items() if count > MAX_LINES}
    assert not over, f"modules over {MAX_LINES} lines: {over}"
