"""Memory and time of the real train step, measured by XLA rather than estimated by constants.

`peak_bytes` lowers and compiles `steps.make_train_step` for the model a `config.model` section
describes, at a batch and patch, from abstract shapes only (nothing is allocated), and reads
`compiled.memory_analysis()`: the peak is the arguments (parameters, optimiser state, batch)
plus the outputs plus XLA's temporaries, less what the donated state aliases. `seconds_per_step`
runs the compiled step on random data and times it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from unetjax import backend, models, optim, steps


def _batch_shapes(
    model_config: ml_collections.ConfigDict, batch: int, patch: Sequence[int]
) -> dict[str, jax.ShapeDtypeStruct]:
    spatial = (batch, *patch)
    return {
        "image": jax.ShapeDtypeStruct((*spatial, model_config.in_channels), jnp.float32),
        "mask": jax.ShapeDtypeStruct(spatial, jnp.int32),
    }


def _compiled(
    model_config: ml_collections.ConfigDict,
    optimizer_config: ml_collections.ConfigDict,
    batch: int,
    patch: Sequence[int],
):
    abstract = nnx.eval_shape(lambda: models.from_config(model_config))
    graphdef, params, model_state = nnx.split(abstract, nnx.Param, ...)
    optimizer, schedule = optim.make_optimizer(optimizer_config, 1000)
    state = steps.TrainState(
        step=jax.ShapeDtypeStruct((), jnp.int32),
        params=params,
        model_state=model_state,
        opt_state=jax.eval_shape(optimizer.init, params),
    )
    step = steps.make_train_step(
        graphdef,
        optimizer,
        output_activation=model_config.output_activation,
        schedule=schedule,
    )
    jitted = backend.jit(step, donate_argnums=(0,))
    return jitted, jitted.lower(state, _batch_shapes(model_config, batch, patch)).compile()


def peak_bytes(
    model_config: ml_collections.ConfigDict,
    optimizer_config: ml_collections.ConfigDict,
    batch: int,
    patch: Sequence[int],
) -> int:
    """The compiled train step's peak memory in bytes (see the module doc)."""
    _, compiled = _compiled(model_config, optimizer_config, batch, patch)
    stats = compiled.memory_analysis()
    return int(
        stats.argument_size_in_bytes
        + stats.output_size_in_bytes
        + stats.temp_size_in_bytes
        - stats.alias_size_in_bytes
    )


def seconds_per_step(
    model_config: ml_collections.ConfigDict,
    optimizer_config: ml_collections.ConfigDict,
    batch: int,
    patch: Sequence[int],
    repeats: int = 3,
) -> float:
    """Wall-clock seconds of one train step on random data: the median of `repeats` steps after
    a warm-up step, since one slow step moved a 2-step mean by 8% and the width chosen with it
    (benchmarks/RESULTS.md)."""
    model = models.from_config(model_config)
    optimizer, schedule = optim.make_optimizer(optimizer_config, 1000)
    graphdef, state = steps.create_train_state(model, optimizer)
    step = backend.jit(
        steps.make_train_step(
            graphdef,
            optimizer,
            output_activation=model_config.output_activation,
            schedule=schedule,
        ),
        donate_argnums=(0,),
    )
    rng = np.random.default_rng(0)
    classes = max(2, model_config.num_classes)
    batch_arrays = {
        "image": jnp.asarray(
            rng.normal(size=(batch, *patch, model_config.in_channels)).astype(np.float32)
        ),
        "mask": jnp.asarray(rng.integers(0, classes, size=(batch, *patch)).astype(np.int32)),
    }
    if model_config.output_activation == "sigmoid":
        batch_arrays["mask"] = batch_arrays["mask"] % 2
    state, metrics = step(state, batch_arrays)
    jax.block_until_ready(metrics)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        state, metrics = step(state, batch_arrays)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def device_budget_bytes(cpu_default_gb: float) -> tuple[int, str]:
    """The accelerator's memory limit as it reports it, or the CPU default; and where it came
    from."""
    device = jax.devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"]), f"{device.device_kind} reports it"
    return int(cpu_default_gb * 2**30), f"the CPU default ({cpu_default_gb:g} GB)"
