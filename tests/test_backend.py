"""`backend`: the CPU's forms only in programs lowered for the CPU, JAX's plain forms in programs
lowered for CUDA (read off the exported StableHLO, no GPU needed), and one `jit` for every step."""

from __future__ import annotations

import ast
import functools
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import export

from unetjax import backend, nested_unet

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "unetjax"
# Modules that jit an exported artifact's program (compiled where it is deployed) or are the helper.
PLAIN_JIT_MODULES = {"backend.py", "artifact.py", "artifact_runner.py"}


@functools.cache
def train_step_text(platform: str, spatial_dims: int) -> str:
    """StableHLO of the gradient of a tiny UNet++ (transposed-conv up-sampling, a two-input node,
    a max-pool, train mode) exported for `platform`."""
    model = nested_unet.UNetPlusPlus(
        filters=(4, 8), spatial_dims=spatial_dims, deep_supervision=False, rngs=nnx.Rngs(0)
    )
    graphdef, params = nnx.split(model)

    def loss(params, x):
        (logits,) = nnx.merge(graphdef, params)(x, train=True)
        return jnp.sum(logits**2)

    x = jnp.ones((2, *(4,) * spatial_dims, 1))
    exported = export.export(jax.jit(jax.grad(loss)), platforms=[platform])(params, x)
    return exported.mlir_module()


def count(text: str, op: str) -> int:
    return text.count(f"stablehlo.{op}")


def concatenated_types(text: str) -> list[list[str]]:
    """The operand types of each `stablehlo.concatenate` in `text`."""
    return [
        re.search(r": \(([^)]*)\) ->", line).group(1).split(", ")
        for line in text.splitlines()
        if "stablehlo.concatenate" in line
    ]


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_a_program_lowered_for_cuda_has_the_plain_forms_and_none_of_the_cpus(spatial_dims):
    cuda = train_step_text("cuda", spatial_dims)
    # The concatenation of a node's inputs, XLA's max-pool and its gradient, the transposed conv.
    assert count(cuda, "concatenate") >= 1
    assert count(cuda, "reduce_window") >= 1 and count(cuda, "select_and_scatter") >= 1
    assert "lhs_dilate" in cuda
    # No stored-once division (nothing else here divides): the activations fuse freely.
    assert count(cuda, "divide") == 0


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_a_program_lowered_for_the_cpu_has_the_cpu_forms(spatial_dims):
    cpu, cuda = train_step_text("cpu", spatial_dims), train_step_text("cuda", spatial_dims)
    # No node's inputs are concatenated. In 3D the only concatenations stack a part's three
    # depth taps (slices folded into the batch, so rank 4) as channels for one 2D convolution.
    joined = concatenated_types(cpu)
    if spatial_dims == 2:
        assert joined == []
    else:
        assert joined
        for types in joined:  # e.g. three of tensor<8x4x4x4xf32>
            assert len(types) == 3 and len(set(types)) == 1
            assert len(types[0].removeprefix("tensor<").split("x")) - 1 == 4
    assert count(cpu, "reduce_window") == 0 and count(cpu, "select_and_scatter") == 0
    assert "lhs_dilate" not in cpu
    assert count(cpu, "divide") > 0
    # Per-part convolutions (and in 3D three depth taps each): more of them than on CUDA.
    assert count(cpu, "convolution") > count(cuda, "convolution")


def test_a_program_exported_for_cpu_and_cuda_runs_the_cpu_forms_on_the_cpu():
    if jax.default_backend() != "cpu":
        pytest.skip("runs the export on the CPU")
    model = nested_unet.UNetPlusPlus(filters=(4, 8), norm="batch", rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)

    def forward(state, x):
        return nnx.merge(graphdef, state)(x, train=False)

    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 1))
    both = export.export(jax.jit(forward), platforms=["cpu", "cuda"])(state, x)
    assert count(both.mlir_module(), "concatenate") >= 1  # CUDA's form travels with it
    for ours, expected in zip(both.call(state, x), forward(state, x), strict=True):
        np.testing.assert_array_equal(ours, expected)


def test_forms_for_fixes_the_forms_while_tracing_whatever_the_lowering_platform():
    def pool_gradient(x):
        return jax.grad(lambda x: jnp.sum(backend.max_pool(x, 2)))(x)

    x = jnp.ones((1, 4, 4, 1))
    plain = export.export(jax.jit(pool_gradient), platforms=["cuda"])(x).mlir_module()
    with backend.forms_for("cpu"):
        fixed = export.export(jax.jit(pool_gradient), platforms=["cuda"])(x).mlir_module()
    after = export.export(jax.jit(pool_gradient), platforms=["cuda"])(x).mlir_module()
    assert count(plain, "select_and_scatter") == count(after, "select_and_scatter") == 1
    assert count(fixed, "select_and_scatter") == 0 and count(fixed, "reduce_window") == 0


def test_backend_jit_takes_jax_jit_options_and_works_as_a_decorator():
    @functools.partial(backend.jit, static_argnames="power")
    def raise_to(x, power):
        return x**power

    np.testing.assert_array_equal(raise_to(jnp.arange(3.0), power=2), [0.0, 1.0, 4.0])
    np.testing.assert_array_equal(backend.jit(jnp.negative)(jnp.ones(2)), [-1.0, -1.0])


def test_every_jit_in_the_package_is_backend_jit():
    """A step compiled with a plain `jax.jit` misses the CPU compiler options (issue 22)."""
    plain = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name in PLAIN_JIT_MODULES:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            is_jax_jit = (
                isinstance(node, ast.Attribute)
                and node.attr == "jit"
                and isinstance(node.value, ast.Name)
                and node.value.id == "jax"
            )
            if is_jax_jit:
                plain.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert not plain, f"jax.jit where backend.jit belongs: {plain}"
