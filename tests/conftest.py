"""Shared test fixtures."""

import jax
import pytest


@pytest.fixture(scope="module")
def fast_compile():
    """Compile time dominates tiny test cases: XLA's optimisations off for the module that asks
    (`pytestmark = pytest.mark.usefixtures("fast_compile")`), restored after it."""
    previous = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)
