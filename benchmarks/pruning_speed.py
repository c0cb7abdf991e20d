"""Pruned-inference speed of UNet++ depth 4: parameters, FLOPs, compile time, latency, throughput.

For each configuration (the paper's: no normalisation; and batch norm), input size and pruned depth
L = 1..4, in fast mode (head L alone) and accurate mode (mean of heads <= L), it compiles
`prune(model, L, mode).predict` and reports XLA's FLOP count, the compile time, median and p90
latency after warm-up, images per second, and each figure as a ratio to L4 of the same mode. The
paper's parameter counts are printed beside ours (it reports L3 about 32% faster than L4).

Commands (the defaults are the figures in benchmarks/RESULTS.md):
  python -m benchmarks.pruning_speed                      # 96x96 b32, 512x512 b1, 64^3 b1
  python -m benchmarks.pruning_speed --quick              # 96x96 b8, 3 repeats
  python -m benchmarks.pruning_speed --sizes 96 --batches 32 --repeats 20 --json out.json

JAX picks the GPU when one is present; the table names the device.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from benchmarks import harness
from unetjax import backend
from unetjax.nested_unet import UNetPlusPlus, count_params, prune

PAPER_PARAMS = {1: 100_961, 2: 511_105, 3: 2_204_961, 4: 9_041_601}
PAPER_L3_LATENCY_RATIO = 0.68  # "L3 about 32% faster than L4"
CONFIGS = {"paper": "none", "batch": "batch"}
COLUMNS = (
    "config",
    "size",
    "batch",
    "mode",
    "L",
    "params",
    "paper_params",
    "gflop",
    "compile_s",
    "median_ms",
    "p90_ms",
    "img_per_s",
    "latency_vs_L4",
    "flops_vs_L4",
    "params_vs_L4",
    "paper_params_vs_L4",
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        nargs="+",
        default=["96", "512", "64^3"],
        help="input sizes: 96 (96x96), 512, 64^3 (3D)",
    )
    parser.add_argument(
        "--batches",
        nargs="+",
        type=int,
        default=None,
        help="batch per size (default 32 for sizes <= 128 in 2D, else 1)",
    )
    parser.add_argument("--configs", nargs="+", choices=tuple(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--depths", nargs="+", type=int, default=[1, 2, 3, 4])
    parser.add_argument(
        "--modes", nargs="+", choices=("fast", "accurate"), default=["fast", "accurate"]
    )
    parser.add_argument(
        "--base-filters",
        type=int,
        default=32,
        help="filters at level 0 (doubling per level); 32 is the paper's",
    )
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="96x96 batch 8, 1 warm-up, 3 repeats")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.batches, args.warmup, args.repeats = ["96"], [8], 1, 3
    if args.batches is None:
        args.batches = [
            32 if len(harness.parse_size(s)) == 2 and max(harness.parse_size(s)) <= 128 else 1
            for s in args.sizes
        ]
    if len(args.batches) != len(args.sizes):
        parser.error(f"--batches needs one value per size ({len(args.sizes)})")
    return args


def measure(
    model: nnx.Module, depth: int, mode: str, images: jax.Array, *, warmup: int, repeats: int
) -> dict[str, Any]:
    """Compiles and times `predict` of `model` pruned to `depth`."""
    pruned = prune(model, depth, mode)
    graphdef, state = nnx.split(pruned)

    @backend.jit
    def predict(state, images):
        return nnx.merge(graphdef, state).predict(images, depth=depth, mode=mode)

    compiled, compile_seconds, flops = harness.compile_timed(predict, state, images)
    timing = harness.time_calls(lambda: compiled(state, images), warmup=warmup, repeats=repeats)
    batch = images.shape[0]
    return {
        "params": count_params(pruned),
        "gflop": None if flops is None else flops / 1e9,
        "compile_s": compile_seconds,
        "median_ms": timing.median * 1e3,
        "p90_ms": timing.p90 * 1e3,
        "img_per_s": batch / timing.median,
    }


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Each row's latency, FLOPs and parameters as a ratio to L4 of its config, size and mode."""
    reference = {(r["config"], r["size"], r["mode"]): r for r in rows if r["L"] == 4}
    for row in rows:
        ref = reference.get((row["config"], row["size"], row["mode"]))
        if ref is None:
            continue
        row["latency_vs_L4"] = row["median_ms"] / ref["median_ms"]
        if row["gflop"] and ref["gflop"]:
            row["flops_vs_L4"] = row["gflop"] / ref["gflop"]
        row["params_vs_L4"] = row["params"] / ref["params"]
        if row["paper_params"]:
            row["paper_params_vs_L4"] = row["paper_params"] / PAPER_PARAMS[4]


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    machine = harness.machine_description()
    print(
        f"pruning_speed on {machine['device']} ({machine['cpu']}, {machine['nproc']} cores), "
        f"jax {machine['jax']}, {args.dtype}",
        flush=True,
    )
    filters = tuple(args.base_filters * 2**level for level in range(5))
    dtype = jnp.dtype(args.dtype)
    rows = []
    for config in args.configs:
        for size_text, batch in zip(args.sizes, args.batches, strict=True):
            spatial = harness.parse_size(size_text)
            model = UNetPlusPlus(
                rngs=nnx.Rngs(0),
                filters=filters,
                norm=CONFIGS[config],
                spatial_dims=len(spatial),
                dtype=dtype,
            )
            images = jax.random.normal(jax.random.key(0), (batch, *spatial, 1), dtype)
            for mode in args.modes:
                for depth in args.depths:
                    row = {
                        "config": config,
                        "size": harness.size_name(spatial),
                        "batch": batch,
                        "mode": mode,
                        "L": depth,
                    }
                    row.update(
                        measure(
                            model, depth, mode, images, warmup=args.warmup, repeats=args.repeats
                        )
                    )
                    # The paper's counts are for its configuration: 2D, 32..512 filters, no norm.
                    paper = (
                        config == "paper"
                        and len(spatial) == 2
                        and args.base_filters == 32
                        and mode == "fast"
                    )
                    row["paper_params"] = PAPER_PARAMS.get(depth) if paper else None
                    rows.append(row)
                    print(
                        f"  {config} {row['size']} b{batch} {mode} L{depth}: "
                        f"{row['median_ms']:.1f} ms, compile {row['compile_s']:.1f} s",
                        flush=True,
                    )
    add_ratios(rows)
    print()
    print(harness.format_table(rows, COLUMNS))
    print(
        f"paper: L3 latency about {PAPER_L3_LATENCY_RATIO} x L4; params L1..L4 "
        + " / ".join(f"{count / 1e6:.1f}M" for count in PAPER_PARAMS.values())
    )
    harness.write_json(
        args.json,
        {"benchmark": "pruning_speed", "machine": machine, "args": vars(args), "rows": rows},
    )
    return rows


if __name__ == "__main__":
    main()
