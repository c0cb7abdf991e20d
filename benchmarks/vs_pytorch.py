"""unetjax against PyTorch peers: train step and inference, each implementation in its own process.

Pairs (unetjax model <-> peer), each row printing unetjax / peer throughput (> 1: unetjax faster):
  - paper UNet++ (no norm, 9,041,601 parameters) <-> `TorchNestedUNet`, a plain PyTorch UNet++
    generated from the same `unetjax.graph` (identical parameter counts, so identical FLOPs),
    at L4 and, for inference, pruned to L1..L3;
  - batch-norm UNet++ (9.05M) <-> MONAI `BasicUNetPlusPlus(spatial_dims=2, in_channels=1,
    out_channels=1, features=(32, 64, 128, 256, 512, 32), norm="batch", act="relu",
    upsample="deconv", deep_supervision=True)` (9.12M, the closest MONAI match);
  - the same, MONAI under bfloat16 autocast (`monai_amp`) and `torch.compile`d too
    (`monai_compile_amp`), against unetjax computing in bfloat16; 3D shapes (`48x64x48:8`) pair
    the batch-norm UNet++ with MONAI's 3D `BasicUNetPlusPlus`, filters from --base-filters-3d;
  - batch-norm UNet++ <-> segmentation_models_pytorch
    `UnetPlusPlus("resnet18", encoder_weights=None)` (a different network, 16M parameters: a
    reference point, not a matched pair).
The train step is the same on both sides: forward, the summed deep-supervision loss of every head
(0.5 * BCE + 1 - soft Dice per image, as `unetjax.losses`), backward, Adam (lr 1e-3); unetjax's
is jitted with `backend.jit` as training uses it (`--xla-defaults`: a plain `jax.jit`).
Inference is the sigmoid of the deepest head (unetjax: `predict(mode="fast")`). `--dtype bfloat16`
(opt-in) computes in bf16 with fp32 parameters and loss on both sides (torch: `torch.autocast`).
Rows also give each side's compile time (unetjax: lowering and compiling; `torch.compile`: its
first call) and device peak memory (torch: `max_memory_allocated` per row; unetjax: the
allocator's peak where the row raised it, else `-`, with XLA's buffer plan beside it).

Protocol, so that figures from a shared machine cannot pass for quiet-machine ones:
  - each implementation runs in its own process, one at a time, in ABBA order: round 1 the peers
    then unetjax, round 2 unetjax then the peers reversed (peer, ours, ours, peer for one peer);
  - `uptime`'s load averages are recorded before and after every process; a process does not
    start while the 1-minute load exceeds --max-load (1.5): the run stops with an error, unless
    --allow-load (its rows are then flagged LOADED); --wait-quiet S first waits up to S seconds;
  - rows print each round's images/s, the ratio unetjax / peer of each round and their spread.

Install (the `bench` extra) with the CPU build of torch first, so that pip does not fetch a CUDA
build of several GB: `pip install torch --index-url https://download.pytorch.org/whl/cpu`, then
`pip install -e '.[bench]'`. torch uses `--threads` intra-op threads (default: all cores, which
XLA's CPU backend uses); it runs on CUDA when available, as JAX does.

Commands:
  python -m benchmarks.vs_pytorch --threads 2          # the issue's protocol: ~15 min, idle CPU
  python -m benchmarks.vs_pytorch --peers monai --dtype bfloat16 --infer-shapes --json bf16.json
  python -m benchmarks.vs_pytorch --quick --allow-load             # 96:8 only, 1 round, flagged
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax

from benchmarks import harness, train_throughput
from benchmarks.torch_peers import PEERS, base_filters_for, peer_dtype

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = (
    "task",
    "size",
    "batch",
    "dtype",
    "unetjax",
    "peer",
    "L",
    "jax_params",
    "peer_params",
    "jax_img_per_s",
    "peer_img_per_s",
    "jax_over_peer",
    "ratio_r1",
    "ratio_r2",
    "spread",
    "flag",
)
FLOP_COLUMNS = ("size", "batch", "implementation", "gflop_per_step", "gflop_per_s", "of_ceiling")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-shapes", nargs="*", default=["96:8", "256:2"], help="SIZE:BATCH")
    parser.add_argument("--infer-shapes", nargs="*", default=["96:8", "512:1"], help="SIZE:BATCH")
    parser.add_argument("--peers", nargs="+", choices=PEERS, default=list(PEERS))
    parser.add_argument(
        "--depths", nargs="+", type=int, default=[1, 2, 3, 4], help="pruned depths vs plain"
    )
    parser.add_argument("--base-filters", type=int, default=32, help="32 is the paper's")
    parser.add_argument("--base-filters-3d", type=int, default=16, help="of 3D shapes' networks")
    parser.add_argument(
        "--batch-depths", nargs="+", type=int, default=[4], help="pruned batch-norm UNet++ depths"
    )
    parser.add_argument("--compile-backend", default="inductor", help="torch.compile's backend")
    parser.add_argument(
        "--no-ceiling", dest="ceiling", action="store_false", help="time no matmul for FLOP/s"
    )
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, choices=(1, 2), default=2, help="2: ABBA")
    parser.add_argument("--max-load", type=float, default=1.5, help="1-minute load average")
    parser.add_argument("--allow-load", action="store_true", help="run anyway, rows flagged")
    parser.add_argument("--wait-quiet", type=float, default=0, help="seconds to wait for quiet")
    parser.add_argument("--xla-defaults", action="store_true", help="unetjax without its options")
    parser.add_argument("--quick", action="store_true", help="96:8 train and infer, 1 round")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-json", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.train_shapes, args.infer_shapes, args.rounds = ["96:8"], ["96:8"], 1
        args.warmup, args.repeats = 1, 3
    return args


def jax_config_for(peer: str) -> str:
    return "paper" if peer == "plain" else "batch"


def depths_for(name: str, args: argparse.Namespace) -> list[int]:
    """Pruned depths are compared with the plain UNet++ (whose graph prunes the same way); the
    batch-norm UNet++ runs --batch-depths (its peers have no pruning: L4 alone)."""
    if name in ("plain", "paper"):
        return args.depths
    return args.batch_depths if name == "batch" else [4]


def measure_unetjax(args: argparse.Namespace) -> dict[str, Any]:
    """Every unetjax row the peers need: the paper config for plain, batch norm for the others."""
    import jax.numpy as jnp
    from flax import nnx

    from benchmarks import pruning_speed
    from unetjax.nested_unet import UNetPlusPlus

    def model(config: str, spatial: tuple[int, ...], dtype: str) -> nnx.Module:
        # "rbg" keys: threefry's initialisers of a 3D UNet++ compile for minutes on a CPU.
        return UNetPlusPlus(
            rngs=nnx.Rngs(jax.random.key(0, impl="rbg")),
            filters=tuple(base_filters_for(spatial, args) * 2**level for level in range(5)),
            norm="none" if config == "paper" else "batch",
            spatial_dims=len(spatial),
            dtype=None if dtype == "float32" else jnp.dtype(dtype),
        )

    pairs = sorted({(jax_config_for(p), peer_dtype(p, args.dtype)) for p in args.peers})[::-1]
    timing = {"warmup": args.warmup, "repeats": args.repeats}
    rows = []
    for text in args.train_shapes:
        spatial, batch_size = train_throughput.parse_shape(text)
        batch = train_throughput.synthetic_batch(spatial, batch_size)
        for config, dtype in pairs:
            before = harness.device_peak_bytes()
            figures = train_throughput.measure(
                model(config, spatial, dtype), batch, xla_defaults=args.xla_defaults, **timing
            )
            figures.update(dtype=dtype, device_peak_mib=harness.own_peak_mib(before))
            rows.append(row("train", spatial, batch_size, config, 4, figures))
    for text in args.infer_shapes:
        spatial, batch_size = train_throughput.parse_shape(text)
        for config, dtype in pairs:
            images = jax.random.normal(
                jax.random.key(0), (batch_size, *spatial, 1), jnp.dtype(dtype)
            )
            full = model(config, spatial, dtype)
            for depth in depths_for(config, args):
                before = harness.device_peak_bytes()
                figures = pruning_speed.measure(full, depth, "fast", images, **timing)
                figures.update(dtype=dtype, device_peak_mib=harness.own_peak_mib(before))
                figures["gflop_per_step"] = figures.pop("gflop")
                rows.append(row("infer", spatial, batch_size, config, depth, figures))
    ceiling, source = harness.peak_flops(args.dtype, measure=args.ceiling)
    return {"machine": harness.machine_description(), "ceiling": [ceiling, source], "rows": rows}


def row(task, spatial, batch_size, name, depth, figures) -> dict[str, Any]:
    keys = ("dtype", "params", "median_ms", "img_per_s", "gflop_per_step", "compile_s")
    keys += ("device_peak_mib", "xla_mem_mb")
    return {
        "task": task,
        "size": harness.size_name(spatial),
        "batch": batch_size,
        "name": name,
        "L": depth,
        **{key: figures.get(key) for key in keys},
    }


def uptime() -> dict[str, Any]:
    """`uptime`'s line and the 1/5/15-minute load averages."""
    try:
        line = subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        line = ""
    return {"uptime": line.strip(), "load": list(os.getloadavg())}


def wait_for_quiet(args: argparse.Namespace, name: str) -> dict[str, Any]:
    """The load before a run: waits up to --wait-quiet seconds, then refuses or flags."""
    deadline = time.monotonic() + args.wait_quiet
    before = uptime()
    while before["load"][0] > args.max_load and time.monotonic() < deadline:
        time.sleep(10)
        before = uptime()
    before["loaded"] = before["load"][0] > args.max_load
    if before["loaded"] and not args.allow_load:
        raise SystemExit(
            f"vs_pytorch: 1-minute load {before['load'][0]:.2f} > --max-load {args.max_load} "
            f"before the {name} run ({before['uptime']}); wait for a quiet machine, pass "
            "--wait-quiet SECONDS, or --allow-load to run anyway with the rows flagged LOADED"
        )
    return before


def run_worker(name: str, argv: Sequence[str], args: argparse.Namespace) -> dict[str, Any]:
    """Runs one implementation in a fresh process and returns its rows with the loads around it."""
    before = wait_for_quiet(args, name)
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / "rows.json"
        command = [sys.executable, "-m", "benchmarks.vs_pytorch", *argv]
        command += ["--worker", name, "--worker-json", str(output)]
        paths = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
        # The children compile as this process would (the tests turn XLA's optimisations off).
        if jax.config.read("jax_disable_most_optimizations"):
            env["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
        start = time.perf_counter()
        subprocess.run(command, check=True, cwd=ROOT, env=env)
        result = json.loads(output.read_text())
    result.update(name=name, seconds=time.perf_counter() - start, before=before, after=uptime())
    print(
        f"  {name}: {result['seconds']:.0f} s, load before {fmt_load(before)} after "
        f"{fmt_load(result['after'])}{'  LOADED' if before['loaded'] else ''}",
        flush=True,
    )
    return result


def fmt_load(sample: dict[str, Any]) -> str:
    return " / ".join(f"{value:.2f}" for value in sample["load"])


def combine(runs: list[dict[str, Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per (peer row): each round's unetjax and peer images/s and their ratios."""

    def index(name):
        found = [run for run in runs if run["name"] == name]
        return [
            {
                (r["task"], r["size"], r["batch"], r["name"], r["L"], r["dtype"]): r
                for r in run["rows"]
            }
            for run in found
        ], found

    ours, our_runs = index("unetjax")
    rows = []
    for task_order, peer in [(task, peer) for task in ("train", "infer") for peer in args.peers]:
        theirs, peer_runs = index(peer)
        for key, first in theirs[0].items():
            task, size, batch, _, depth, dtype = key
            if task != task_order:
                continue
            jax_key = (task, size, batch, jax_config_for(peer), depth, dtype)
            jax_rounds = [table[jax_key] for table in ours]
            peer_rounds = [table[key] for table in theirs]
            ratios = [
                j["img_per_s"] / p["img_per_s"]
                for j, p in zip(jax_rounds, peer_rounds, strict=True)
            ]
            loaded = any(run["before"]["loaded"] for run in our_runs + peer_runs)
            rows.append(
                {
                    "task": task,
                    "size": size,
                    "batch": batch,
                    "L": depth,
                    "dtype": dtype,
                    "peer": peer,
                    "unetjax": f"{jax_config_for(peer)} UNet++",
                    "jax_params": jax_rounds[0]["params"],
                    "peer_params": first["params"],
                    "jax_img_per_s": " / ".join(f"{r['img_per_s']:.3g}" for r in jax_rounds),
                    "peer_img_per_s": " / ".join(f"{r['img_per_s']:.3g}" for r in peer_rounds),
                    "jax_over_peer": statistics.geometric_mean(ratios),
                    "ratio_r1": ratios[0],
                    "ratio_r2": ratios[-1] if len(ratios) > 1 else None,
                    "spread": (max(ratios) - min(ratios)) / statistics.geometric_mean(ratios),
                    "flag": "LOADED" if loaded else "",
                    "jax_compile_s": jax_rounds[0]["compile_s"],
                    "peer_compile_s": first["compile_s"],
                    "jax_peak_mib": jax_rounds[0]["device_peak_mib"],
                    "jax_xla_mib": jax_rounds[0]["xla_mem_mb"],
                    "peer_peak_mib": first["device_peak_mib"],
                    "rounds": {"unetjax": jax_rounds, peer: peer_rounds},
                }
            )
    return rows


def flop_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Train rows: FLOPs per step and the rate against each framework's measured matmul."""
    table = []
    for run in runs:
        ceiling = run["ceiling"][0]
        for r in run["rows"]:
            if r["task"] != "train" or not r["gflop_per_step"]:
                continue
            rate = r["gflop_per_step"] / (r["median_ms"] / 1e3)
            table.append(
                {
                    "size": r["size"],
                    "batch": r["batch"],
                    "implementation": f"{run['name']} ({r['name']})",
                    "gflop_per_step": r["gflop_per_step"],
                    "gflop_per_s": rate,
                    "of_ceiling": rate * 1e9 / ceiling if ceiling else None,
                }
            )
    return table


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.worker:
        if args.worker == "unetjax":
            result = measure_unetjax(args)
        else:
            from benchmarks import torch_peers

            result = torch_peers.measure_peer(args.worker, depths_for(args.worker, args), args, row)
        harness.write_json(args.worker_json, result)
        return result["rows"]
    order = [*args.peers, "unetjax"]
    if args.rounds == 2:
        order += order[::-1]
    print(f"vs_pytorch: {' -> '.join(order)}, one process each, {args.dtype}", flush=True)
    runs = []
    for name in order:
        runs.append(run_worker(name, argv, args))
        # A run cut short (a device's time limit) keeps the processes that finished.
        harness.write_json(args.json, {"benchmark": "vs_pytorch", "partial": True, "runs": runs})
    rows = combine(runs, args)
    machine = {**runs[-1]["machine"]}
    for run in runs:
        machine.update(run["machine"])
    print(
        f"\n{machine['device']} ({machine['cpu']}, {machine['nproc']} cores), jax "
        f"{machine['jax']}, torch {machine.get('torch')}, {machine.get('torch_threads')} threads"
    )
    print(harness.format_table(rows, COLUMNS))
    print(
        "img/s as round 1 / round 2; jax_over_peer: geometric mean of the rounds' ratios (> 1: "
        "unetjax faster); spread: (max - min) / mean of the rounds' ratios"
    )
    flops = flop_rows([run for run in runs[: len(runs) // args.rounds]])
    if flops:
        print("\nround 1 train FLOPs (unetjax: XLA's count; torch: its FLOP counter) and rate:")
        print(harness.format_table(flops, FLOP_COLUMNS))
        ceilings = {run["name"]: run["ceiling"] for run in runs}
        print(
            "ceilings: "
            + "; ".join(
                f"{n} {c[0] / 1e9:.0f} GFLOP/s ({c[1]})" for n, c in ceilings.items() if c[0]
            )
        )
    harness.write_json(
        args.json,
        {
            "benchmark": "vs_pytorch",
            "machine": machine,
            "args": vars(args),
            "runs": runs,
            "rows": rows,
        },
    )
    return rows


if __name__ == "__main__":
    main()
