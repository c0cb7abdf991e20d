"""Backend choices in one place: which form of a layer operation runs on which platform, and how
XLA compiles the project's programs.

XLA:CPU runs some of the layers' operations much faster in other forms, with the same numbers
(`conv_kernels`: a concatenation's convolution per part, 3D convolutions by depth taps, the
small-batch weight gradient, the transposed convolution as a matrix product, max-pooling's
gradient as a mask, activations stored once). Each function here takes that form on the CPU
and JAX's plain form on every other platform (the CPU forms were not measured there). The
choice is `jax.lax.platform_dependent`: made when a program is lowered, for the platform it is
lowered for, not by the process's default backend, so a program exported for CUDA from a CPU
machine carries CUDA's forms only (and one exported for both carries both). A converter that
reads the traced program and knows no `platform_dependent` (jax2onnx) traces it inside
`forms_for(platform)`, which makes the choice in Python.

`jit` is `jax.jit` with `compiler_options()`: every train, eval and predict step of the project
is compiled with it, and so should research code that jits its own step over these modules.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from unetjax import conv_kernels

# The platform `forms_for` fixes while tracing; None: chosen at lowering.
_FORMS_FOR: contextvars.ContextVar[str | None] = contextvars.ContextVar("forms_for", default=None)
# XLA:CPU (jax 0.10) hands 2D float32 convolutions to YNNPACK by default. On the benchmark CPU
# XLA's own (Eigen) convolutions were faster: weight gradients 1.6 to 3.2x (they dominated the
# train step), forward convolutions at 32 to 64 channels about 1.6x (pruned UNet++ inference at
# b8 @ 96x96 1.1 to 1.35x), level at 512x512 and in 3D (benchmarks/RESULTS.md). This keeps
# YNNPACK's dots and reductions and leaves the convolutions to XLA.
_CPU_OPTIONS = {
    "xla_cpu_experimental_ynn_fusion_type": (
        "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"
    )
}


def jit(fun: Callable, /, **jit_options: Any) -> Any:
    """`jax.jit(fun, **jit_options)` compiled with `compiler_options()`; as a decorator too
    (`@backend.jit` or `@functools.partial(backend.jit, donate_argnums=0)`).

    Under a plain `jax.jit` the UNet++ train step ran at 0.46-0.62x this speed on the CPU.
    """
    return jax.jit(fun, compiler_options=compiler_options(), **jit_options)


def compiler_options() -> dict[str, str] | None:
    """XLA options for compiling a program of these layers: convolutions by XLA's own CPU
    emitter. None off the CPU, or where the installed XLA has no such option. `jax.jit` takes one
    set of options whatever the platform, so these follow the default backend."""
    if not _cpu_options_apply():
        return None
    return dict(_CPU_OPTIONS)


@functools.cache
def _cpu_options_apply() -> bool:
    if jax.default_backend() != "cpu":
        return False
    try:
        jax.jit(jnp.negative, compiler_options=_CPU_OPTIONS).lower(jnp.zeros(())).compile()
    except jax.errors.JaxRuntimeError:
        return False
    return True


@contextlib.contextmanager
def forms_for(platform: str) -> Iterator[None]:
    """Programs traced inside take `platform`'s forms whatever they are lowered for.

    JAX reuses a function's trace whatever this says, so the trace caches are cleared on the way
    in and out (a one-off export's cost: the next call of a jitted step compiles again).
    """
    token = _FORMS_FOR.set(platform)
    jax.clear_caches()
    try:
        yield
    finally:
        _FORMS_FOR.reset(token)
        jax.clear_caches()


def _on_cpu(cpu: Callable[[], jax.Array], default: Callable[[], jax.Array]) -> jax.Array:
    """`cpu()` in a program lowered for the CPU, `default()` for any other platform."""
    fixed = _FORMS_FOR.get()
    if fixed is not None:
        return cpu() if fixed == "cpu" else default()
    return jax.lax.platform_dependent(cpu=cpu, default=default)


def conv_of_concatenation(layer: nnx.Conv, parts: Sequence[jax.Array]) -> jax.Array:
    """`layer(jnp.concatenate(parts, axis=-1))`, without forming the concatenation on the CPU."""
    parts = list(parts)

    def concatenated() -> jax.Array:
        return layer(parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=-1))

    return _on_cpu(lambda: conv_kernels.conv_of_concatenation(layer, parts), concatenated)


def transposed_conv(layer: nnx.ConvTranspose, x: jax.Array) -> jax.Array:
    """`layer(x)` for the 2x2 stride-2 transposed convolution, a matrix product on the CPU."""
    return _on_cpu(lambda: conv_kernels.transposed_conv_as_matmul(layer, x), lambda: layer(x))


def max_pool(x: jax.Array, factor: int | Sequence[int]) -> jax.Array:
    """Max over non-overlapping windows of `factor` per axis (an int: every axis); on the CPU
    with a masked gradient."""
    window = (factor,) * (x.ndim - 2) if isinstance(factor, int) else tuple(factor)

    def reduce_window() -> jax.Array:
        return nnx.max_pool(x, window_shape=window, strides=window)

    return _on_cpu(lambda: conv_kernels.max_pool(x, window), reduce_window)


def stored_once(x: jax.Array) -> jax.Array:
    """`x`; on the CPU, computed once and stored rather than recomputed in each consumer."""
    return _on_cpu(lambda: conv_kernels.stored_once(x), lambda: x)
