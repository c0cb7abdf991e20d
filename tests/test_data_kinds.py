"""The dataset kinds registry: each kind registers what it brings, and no module branches on a
dataset's name."""

import ast
import pathlib

import pytest

from unetjax.data import config as config_lib
from unetjax.data import kinds
from unetjax.data.errors import DataError

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "unetjax"
# The data.name values unetjax builds itself (README, config.default_config's comment).
DATASET_NAMES = {"synthetic_cells", "image_folder", "isbi2012_em", "dsb2018_nuclei", "decathlon"}


def _string_constants(node: ast.AST) -> set[str]:
    """The str constants a comparison operand is or holds ("x", ("x", "y"), {"x"}, ["x"])."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return set().union(*(_string_constants(e) for e in node.elts)) if node.elts else set()
    return set()


def name_comparisons(path: pathlib.Path) -> list[int]:
    """The line of each comparison with a dataset name, written out or through a module
    constant (NAME = "decathlon"; ... == NAME)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    constants = {
        target.id
        for statement in tree.body
        if isinstance(statement, ast.Assign) and _string_constants(statement.value) & DATASET_NAMES
        for target in statement.targets
        if isinstance(target, ast.Name)
    }
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        for operand in (node.left, *node.comparators):
            named = isinstance(operand, ast.Name) and operand.id in constants
            if named or _string_constants(operand) & DATASET_NAMES:
                found.append(node.lineno)
                break
    return found


def test_no_module_compares_a_dataset_name_to_a_string():
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for line in name_comparisons(path)
    ]
    assert found == [], f"branch on the dataset's kind (unetjax.data.kinds) instead: {found}"


def test_the_scan_finds_a_comparison_written_out_or_through_a_constant(tmp_path):
    module = tmp_path / "example.py"
    module.write_text(
        'NAME = "decathlon"\n'
        "def f(config):\n"
        '    if config.name == "image_folder":\n'
        "        return 1\n"
        '    if config.name in ("isbi2012_em", "other"):\n'
        "        return 2\n"
        "    return config.name != NAME\n"
    )
    assert name_comparisons(module) == [3, 5, 7]


def test_every_dataset_name_is_registered_once_with_the_tfds_builder_of_that_name():
    # The built folder is <data_dir>/<builder.name>/<config>/<version>: a kind whose builder
    # had another name would not find the datasets prepared before.
    assert set(kinds.names()) == DATASET_NAMES
    for name in DATASET_NAMES:
        kind = kinds.get(name)
        assert kind.name == name and kind.builder.name == name and not kind.catalog


def test_a_name_registered_twice_is_refused():
    with pytest.raises(ValueError, match="'decathlon' is registered twice"):
        kinds.register(kinds.DatasetKind(name="decathlon"))


def test_any_other_name_is_a_catalog_dataset_with_the_catalog_rules():
    kind = kinds.get("oxford_iiit_pet")
    assert kind.catalog and kind.builder_config is None
    config = config_lib.default_config()
    config.name, config.normalize = "oxford_iiit_pet", "zscore_dataset"
    with pytest.raises(DataError, match="catalog datasets"):
        config_lib.check(config)
