"""Images per second of the full train step (forward, backward, Adam) for the U-Net family.

For U-Net, UNet++ (deep supervision, 4 heads) and UNet 3+ (deep supervision), batch norm by
default, in float32 and bfloat16 compute (parameters stay float32), it compiles
`unetjax.steps.make_train_step` under `backend.jit` with the state donated and reports: compile
time, median and p90 step time, images/s, XLA's FLOP count of one step, achieved FLOP/s and its
fraction of the device's peak (the figure used is printed: a datasheet figure for known GPUs, else
a matrix product timed in the same run), XLA's buffer plan of one step and, on GPU, the
allocator's peak.

Commands (the defaults are the figures in benchmarks/RESULTS.md):
  python -m benchmarks.train_throughput                   # 96x96 b8 and b32, 512x512 b2
  python -m benchmarks.train_throughput --quick           # 96x96 b8, 3 repeats
  python -m benchmarks.train_throughput --shapes 96:8 --models unet_plusplus --dtypes float32 \
      --repeats 20 --json out.json
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from benchmarks import harness
from unetjax import backend, steps
from unetjax.nested_unet import count_params, create

MODELS = ("unet", "unet_plusplus", "unet_3plus")
COLUMNS = (
    "model",
    "size",
    "batch",
    "dtype",
    "params",
    "compile_s",
    "median_ms",
    "p90_ms",
    "img_per_s",
    "gflop_per_step",
    "gflop_per_s",
    "peak_fraction",
    "xla_mem_mb",
    "device_peak_mb",
)


def parse_shape(text: str) -> tuple[tuple[int, ...], int]:
    """'96:8' -> ((96, 96), 8): the input size and the batch."""
    size, _, batch = text.partition(":")
    return harness.parse_size(size), int(batch or 1)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shapes",
        nargs="+",
        default=["96:8", "96:32", "512:2"],
        help="SIZE:BATCH, e.g. 96:8 or 64^3:1",
    )
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument(
        "--dtypes", nargs="+", choices=("float32", "bfloat16"), default=["float32", "bfloat16"]
    )
    parser.add_argument("--norm", default="batch", help="none, batch, instance or group")
    parser.add_argument(
        "--base-filters",
        type=int,
        default=32,
        help="filters at level 0 (doubling per level); 32 is the paper's",
    )
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--xla-defaults",
        action="store_true",
        help="jit the step with a plain jax.jit (XLA's default options), not backend.jit",
    )
    parser.add_argument("--quick", action="store_true", help="96x96 batch 8, 1 warm-up, 3 repeats")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    if args.quick:
        args.shapes, args.warmup, args.repeats = ["96:8"], 1, 3
    return args


def build(
    architecture: str,
    spatial: tuple[int, ...],
    *,
    dtype: str,
    norm: str,
    base_filters: int,
    depth: int,
) -> nnx.Module:
    filters = tuple(base_filters * 2**level for level in range(depth + 1))
    return create(
        architecture,
        filters=filters,
        rngs=nnx.Rngs(0),
        norm=norm,
        spatial_dims=len(spatial),
        dtype=None if dtype == "float32" else jnp.dtype(dtype),
    )


def synthetic_batch(spatial: tuple[int, ...], batch: int) -> dict[str, jax.Array]:
    """A fixed random image and a blob mask (about half foreground), as the pipeline gives them."""
    image = jax.random.normal(jax.random.key(1), (batch, *spatial, 1), jnp.float32)
    mask = (jax.random.uniform(jax.random.key(2), (batch, *spatial)) > 0.5).astype(jnp.int32)
    return {"image": image, "mask": mask}


def measure(
    model: nnx.Module,
    batch: dict[str, jax.Array],
    *,
    warmup: int,
    repeats: int,
    xla_defaults: bool = False,
) -> dict[str, Any]:
    """Compiles the donated train step and times `repeats` steps after `warmup`.

    The step is jitted with `backend.jit`, as training runs it, unless `xla_defaults` (a plain
    `jax.jit`, XLA's default options, for an A/B of the two).
    """
    optimizer = optax.adam(1e-3)
    graphdef, state = steps.create_train_state(model, optimizer)
    jit = jax.jit if xla_defaults else backend.jit
    train_step = jit(steps.make_train_step(graphdef, optimizer), donate_argnums=0)
    compiled, compile_seconds, flops = harness.compile_timed(train_step, state, batch)
    step_state = {"state": state}

    def one_step():
        step_state["state"], metrics = compiled(step_state["state"], batch)
        return step_state["state"], metrics

    timing = harness.time_calls(one_step, warmup=warmup, repeats=repeats)
    memory = harness.compiled_memory_bytes(compiled)
    device_peak = harness.device_peak_bytes()
    loss = float(one_step()[1]["loss"])
    if not np.isfinite(loss):
        raise RuntimeError(f"the benchmark's train step gave a non-finite loss {loss}")
    images = batch["image"].shape[0]
    return {
        "params": count_params(model),
        "compile_s": compile_seconds,
        "median_ms": timing.median * 1e3,
        "p90_ms": timing.p90 * 1e3,
        "img_per_s": images / timing.median,
        "gflop_per_step": None if flops is None else flops / 1e9,
        "gflop_per_s": None if flops is None else flops / timing.median / 1e9,
        "xla_mem_mb": None if memory is None else memory / 2**20,
        "device_peak_mb": None if device_peak is None else device_peak / 2**20,
    }


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    machine = harness.machine_description()
    print(
        f"train_throughput on {machine['device']} ({machine['cpu']}, {machine['nproc']} cores), "
        f"jax {machine['jax']}, norm {args.norm}, compiler options "
        f"{None if args.xla_defaults else backend.compiler_options()}, load "
        f"{' / '.join(f'{value:.2f}' for value in os.getloadavg())}",
        flush=True,
    )
    peaks = {dtype: harness.peak_flops(dtype) for dtype in args.dtypes}
    for dtype, (value, source) in peaks.items():
        shown = "-" if value is None else f"{value / 1e9:.0f} GFLOP/s"
        print(f"  peak for {dtype}: {shown} ({source})", flush=True)
    rows = []
    for shape_text in args.shapes:
        spatial, batch_size = parse_shape(shape_text)
        batch = synthetic_batch(spatial, batch_size)
        for dtype in args.dtypes:
            for architecture in args.models:
                model = build(
                    architecture,
                    spatial,
                    dtype=dtype,
                    norm=args.norm,
                    base_filters=args.base_filters,
                    depth=args.depth,
                )
                row = {
                    "model": architecture,
                    "size": harness.size_name(spatial),
                    "batch": batch_size,
                    "dtype": dtype,
                }
                row.update(
                    measure(
                        model,
                        batch,
                        warmup=args.warmup,
                        repeats=args.repeats,
                        xla_defaults=args.xla_defaults,
                    )
                )
                peak = peaks[dtype][0]
                if peak and row["gflop_per_s"]:
                    row["peak_fraction"] = row["gflop_per_s"] * 1e9 / peak
                rows.append(row)
                print(
                    f"  {architecture} {row['size']} b{batch_size} {dtype}: "
                    f"{row['img_per_s']:.1f} img/s, compile {row['compile_s']:.1f} s",
                    flush=True,
                )
    print()
    print(harness.format_table(rows, COLUMNS))
    harness.write_json(
        args.json,
        {
            "benchmark": "train_throughput",
            "machine": machine,
            "args": vars(args),
            "peaks": {
                dtype: {"flops": value, "source": source}
                for dtype, (value, source) in peaks.items()
            },
            "rows": rows,
        },
    )
    return rows


if __name__ == "__main__":
    main()
