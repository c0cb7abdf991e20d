"""What each runtime costs a deployer: in-process predictor vs StableHLO artifact vs ONNX Runtime.

A UNet++ of depth 4 (random weights: latency does not depend on them) is saved as a run; for each
pruned depth L and mode it is loaded as a `Predictor` (jit, in-process, Flax), exported to a
StableHLO artifact run with `jax.export.deserialize` (jit), and to an ONNX artifact per size run
with onnxruntime on the CPU. Each `predict_batch` is timed (host input to host probabilities, so
the three do the same work) after warm-up: median and p90 latency, images per second, the first
call (XLA compile; ONNX Runtime prepares at load), the artifact's size, and per runtime the L3/L4
and L1/L4 latency ratios.

Commands (defaults: the issue's 96x96 batch 32 and 512x512 batch 1, L1..L4, fast mode):
  python -m benchmarks.deploy_latency --json deploy.json
  python -m benchmarks.deploy_latency --quick             # 96x96 batch 8, 1 warm-up, 3 repeats
  python -m benchmarks.deploy_latency --sizes 64 --batches 4 --base-filters 8 --repeats 3

JAX picks the GPU when one is present (the predictor and StableHLO rows then run there); ONNX
Runtime runs on the CPU here. The table names the device and the machine's load average.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import tempfile
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmarks import harness
from configs import default as default_config
from unetjax import checkpoint, inference, models, rundir
from unetjax.inference.deploy import artifact, artifact_runner

RUNTIMES = ("predictor", "stablehlo", "onnx")
COLUMNS = (
    "size",
    "batch",
    "mode",
    "L",
    "runtime",
    "params",
    "artifact_kb",
    "first_call_s",
    "median_ms",
    "p90_ms",
    "img_per_s",
    "L3_over_L4",
    "L1_over_L4",
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["96", "512"], help="e.g. 96 512 64^3")
    parser.add_argument(
        "--batches", nargs="+", type=int, default=None, help="per size (default 32 if <= 128)"
    )
    parser.add_argument("--depths", nargs="+", type=int, default=[1, 2, 3, 4])
    parser.add_argument("--modes", nargs="+", choices=inference.MODES, default=["fast"])
    parser.add_argument("--runtimes", nargs="+", choices=RUNTIMES, default=list(RUNTIMES))
    parser.add_argument("--base-filters", type=int, default=32, help="32 is the paper's")
    parser.add_argument("--norm", choices=("batch", "none"), default="batch")
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
    if len({len(harness.parse_size(s)) for s in args.sizes}) != 1:
        parser.error("--sizes must be all 2D or all 3D (one model per run)")
    return args


def save_random_run(workdir: str, *, base_filters: int, norm: str, spatial_dims: int) -> None:
    """A run directory (config.json + one checkpoint) of a depth-4 UNet++ with random weights."""
    config = default_config.get_config()
    model_config = config.model
    model_config.depth, model_config.norm = 4, norm
    model_config.filters = tuple(base_filters * 2**level for level in range(5))
    model_config.spatial_dims, model_config.in_channels = spatial_dims, 1
    model_config.num_classes, model_config.output_activation = 1, "sigmoid"
    config.data.spatial_dims = spatial_dims
    model = models.from_config(model_config, seed=0)
    _, params, model_state = nnx.split(model, nnx.Param, ...)
    state = {"step": jnp.asarray(0, jnp.int32), "params": params, "model_state": model_state}
    manager = checkpoint.CheckpointManager(rundir.checkpoint_dir(workdir))
    manager.save(0, state, data_state={})
    manager.wait_until_finished()
    manager.close()
    rundir.save_config(workdir, config)


def measure(runtime, images: np.ndarray, *, warmup: int, repeats: int) -> dict[str, Any]:
    """First-call seconds and steady timings of `runtime.predict_batch(images)`."""
    first = harness.time_calls(lambda: runtime.predict_batch(images), warmup=0, repeats=1)
    timing = harness.time_calls(
        lambda: runtime.predict_batch(images), warmup=warmup, repeats=repeats
    )
    return {
        "first_call_s": first.median,
        "median_ms": timing.median * 1e3,
        "p90_ms": timing.p90 * 1e3,
        "img_per_s": images.shape[0] / timing.median,
    }


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """L3/L4 and L1/L4 latency of each runtime, size and mode (where L1, L3 and L4 ran)."""
    by_key = {(r["size"], r["mode"], r["runtime"], r["L"]): r for r in rows}
    for row in rows:
        if row["L"] != 4:
            continue
        for depth, column in ((3, "L3_over_L4"), (1, "L1_over_L4")):
            other = by_key.get((row["size"], row["mode"], row["runtime"], depth))
            if other is not None:
                row[column] = other["median_ms"] / row["median_ms"]


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    machine = harness.machine_description()
    machine["load_average"] = os.getloadavg()
    machine["onnxruntime"] = _version("onnxruntime")
    machine["jax2onnx"] = _version("jax2onnx")
    print(
        f"deploy_latency on {machine['device']} ({machine['cpu']}, {machine['nproc']} cores, "
        f"load {machine['load_average'][0]:.1f}), jax {machine['jax']}, onnxruntime "
        f"{machine['onnxruntime']}",
        flush=True,
    )
    shapes = [harness.parse_size(s) for s in args.sizes]
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        run = os.path.join(workdir, "run")
        save_random_run(
            run, base_filters=args.base_filters, norm=args.norm, spatial_dims=len(shapes[0])
        )
        for mode in args.modes:
            for depth in args.depths:
                predictor = inference.load_predictor(run, depth=depth, mode=mode)
                runtimes = _runtimes(predictor, args.runtimes, shapes, workdir)
                for spatial, batch in zip(shapes, args.batches, strict=True):
                    images = np.random.default_rng(0).random((batch, *spatial, 1), np.float32)
                    for name in args.runtimes:
                        runtime, size_bytes = runtimes[name, spatial]
                        row = {
                            "size": harness.size_name(spatial),
                            "batch": batch,
                            "mode": mode,
                            "L": depth,
                            "runtime": name,
                            "params": predictor.num_params,
                            "artifact_kb": None if size_bytes is None else size_bytes / 1024,
                        }
                        row.update(
                            measure(runtime, images, warmup=args.warmup, repeats=args.repeats)
                        )
                        rows.append(row)
                        print(
                            f"  {row['size']} b{batch} {mode} L{depth} {name}: "
                            f"{row['median_ms']:.1f} ms, first call {row['first_call_s']:.1f} s",
                            flush=True,
                        )
    add_ratios(rows)
    print()
    print(harness.format_table(rows, COLUMNS))
    harness.write_json(
        args.json,
        {"benchmark": "deploy_latency", "machine": machine, "args": vars(args), "rows": rows},
    )
    return rows


def _runtimes(predictor, names, shapes, workdir) -> dict[tuple[str, tuple[int, ...]], tuple]:
    """(runtime, artifact bytes or None) per runtime name and input shape: one StableHLO file
    serves every shape; ONNX needs one export per spatial size."""
    stem = os.path.join(workdir, f"L{predictor.depth}_{predictor.mode}")
    runtimes = {}
    if "stablehlo" in names:
        path = f"{stem}.stablehlo"
        artifact.export_stablehlo(predictor, path, platforms=None)  # this machine's
        stablehlo = artifact_runner.load_artifact(path)
    for spatial in shapes:
        runtimes["predictor", spatial] = (predictor, None)
        if "stablehlo" in names:
            runtimes["stablehlo", spatial] = (stablehlo, os.path.getsize(path))
        if "onnx" in names:
            onnx_path = f"{stem}_{harness.size_name(spatial)}.onnx"
            artifact.export_onnx(predictor, onnx_path, spatial_shape=spatial)
            runtimes["onnx", spatial] = (
                artifact_runner.load_artifact(onnx_path),
                os.path.getsize(onnx_path),
            )
    return runtimes


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
