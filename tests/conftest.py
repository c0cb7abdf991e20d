"""Shared test fixtures and the torch reference import."""

import types

import jax
import pytest


def import_torch_references() -> types.ModuleType:
    """torch for the reference tests (the test module is skipped without it), with torchvision
    made importable beside the CPU torch wheel (`benchmarks.torch_import`)."""
    pytest.importorskip("torch")
    from benchmarks import torch_import

    return torch_import.torch_with_torchvision()


@pytest.fixture(scope="module")
def fast_compile():
    """Compile time dominates tiny test cases: XLA's optimisations off for the module that asks
    (`pytestmark = pytest.mark.usefixtures("fast_compile")`), restored after it."""
    previous = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)
