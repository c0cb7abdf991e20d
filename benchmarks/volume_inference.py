"""3D sliding-window inference of a whole volume: unetjax against MONAI, same tiles and blending.

Both predict one (1, 128, 128, 128) volume by overlapping 64^3 tiles (overlap 0.5, Gaussian
blending with sigma = tile / 8, 4 tiles per network call) and a softmax over 2 classes:
  - unetjax: `Predictor.predict(volume, tile=TileOptions(64, overlap=32, blend="gaussian"))`
    (`inference.tiling.predict_tiled`) with a UNet++ of depth 4, batch norm, filters 16..256,
    random weights, pruned to L = 1..4 (mode "fast": head L's subgraph alone);
  - MONAI: `monai.inferers.sliding_window_inference(volume, (64, 64, 64), 4, net, overlap=0.5,
    mode="gaussian", sigma_scale=0.125)` with `BasicUNetPlusPlus(spatial_dims=3,
    features=(16, 32, 64, 128, 256, 16), norm="batch", upsample="deconv")` in eval mode under
    `torch.inference_mode()` (its deepest output, as L4).
Each implementation (and each L) runs in its own process, so peak memory is its own: the
process's maximum resident set size (ru_maxrss: runtime, weights, compiled code, activations and
the accumulated volume) and, on a GPU, the device's (JAX's allocator peak; torch's
`max_memory_allocated`). On a GPU both take the volume from host memory and return the
probabilities there: unetjax tiles on the host and sends batches of tiles; MONAI runs its windows
and blending on the GPU (`sw_device` and `device` cuda), then copies the result back.
After a warm-up call on one batch of tiles (compilation for unetjax),
`--repeats` whole volumes are timed; volumes/s is 1 / the median. The processes run in ABBA order
(unetjax L1..L4, MONAI, MONAI, unetjax L4..L1) and `uptime` is recorded before and after: on a
shared machine the figures are indicative, the two passes show how much the load moved them.

    python -m benchmarks.volume_inference                       # the RESULTS.md figures
    python -m benchmarks.volume_inference --size 64 --tile 32 --depths 1 4 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

# Workers import only their own framework (MONAI's process holds no JAX), so the orchestrating
# code imports `benchmarks.harness` (and with it JAX) where it runs.
COLUMNS = (
    "pass",
    "impl",
    "L",
    "params",
    "tiles",
    "s_per_volume",
    "volumes_per_s",
    "peak_rss_mib",
    "device_peak_mib",
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128, help="volume side (voxels)")
    parser.add_argument("--tile", type=int, default=64, help="tile side (voxels)")
    parser.add_argument("--base-filters", type=int, default=16, help="filters 16..256")
    parser.add_argument("--batch", type=int, default=4, help="tiles per network call")
    parser.add_argument("--repeats", type=int, default=1, help="timed volumes per process")
    parser.add_argument("--depths", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--no-monai", dest="monai", action="store_false")
    parser.add_argument("--json", default=None, help="also write the rows and machine here")
    parser.add_argument("--worker", choices=("unetjax", "monai"), help=argparse.SUPPRESS)
    parser.add_argument("--depth", type=int, default=4, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def volume(size: int) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(size, size, size, 1)).astype(np.float32)


def predictor_for(model: Any, depth: int, config: Any = None) -> Any:
    """`model` pruned to `depth` (fast mode) in a `Predictor`, as `load_predictor` restores one
    from a run (here the weights are the model's own: nothing is read)."""
    from configs import default
    from unetjax import nested_unet
    from unetjax.inference.predictor import Predictor

    return Predictor(
        nested_unet.prune(model, depth, "fast"),
        depth=depth,
        mode="fast",
        config=default.get_config() if config is None else config,
        model_dir="(random weights)",
        step=0,
        restored_paths=(),
    )


def run_unetjax(args: argparse.Namespace) -> dict[str, Any]:
    import jax
    from flax import nnx

    from benchmarks import harness
    from configs import default
    from unetjax import graph as graph_lib
    from unetjax import models, nested_unet
    from unetjax.inference import TileOptions

    config = default.get_config()
    config.model.update(
        depth=4,
        base_filters=args.base_filters,
        norm="batch",
        spatial_dims=3,
        in_channels=1,
        num_classes=2,
        output_activation="softmax",
    )
    # Random weights either way; JAX's default threefry keys take minutes to compile for the
    # initialisers of a 3D UNet++ on a CPU, "rbg" keys seconds. Inference is unaffected.
    model = nested_unet.NestedUNet(
        graph_lib.graph_from_config(config.model),
        models.spec_from_config(config.model),
        rngs=nnx.Rngs(jax.random.key(0, impl="rbg")),
    )
    predictor = predictor_for(model, args.depth, config)
    tile = TileOptions(
        tile=args.tile, overlap=args.tile // 2, blend="gaussian", batch_size=args.batch
    )
    image = volume(args.size)
    predictor.predict_batch(
        image[None, : args.tile, : args.tile, : args.tile].repeat(args.batch, 0)
    )
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        probabilities = predictor.predict(image, tile=tile, normalized=True)
        times.append(time.perf_counter() - start)
    assert probabilities.shape == (*image.shape[:-1], 2)
    return {
        "impl": "unetjax",
        "L": args.depth,
        "params": predictor.num_params,
        "times": times,
        "device_peak_mib": harness.own_peak_mib(None),
    }


def run_monai(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from monai.inferers import sliding_window_inference
    from monai.networks.nets import BasicUNetPlusPlus

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = device.type == "cuda"
    filters = tuple(args.base_filters * 2**level for level in range(5))
    net = BasicUNetPlusPlus(
        spatial_dims=3,
        in_channels=1,
        out_channels=2,
        features=(*filters, filters[0]),
        norm="batch",
        act="relu",
        upsample="deconv",
    )
    net = net.to(device).eval()

    def predict(x):
        return torch.softmax(net(x)[-1], dim=1)

    image = torch.from_numpy(volume(args.size)[..., 0][None, None])
    times = []
    with torch.inference_mode():
        tiles = image[..., : args.tile, : args.tile, : args.tile].repeat(args.batch, 1, 1, 1, 1)
        predict(tiles.to(device)).cpu()
        for _ in range(args.repeats):
            start = time.perf_counter()
            probabilities = sliding_window_inference(
                image,
                (args.tile,) * 3,
                args.batch,
                predict,
                overlap=0.5,
                mode="gaussian",
                sigma_scale=0.125,
                sw_device=device,
                device=device,
            ).cpu()
            times.append(time.perf_counter() - start)
    assert tuple(probabilities.shape) == (1, 2, *(args.size,) * 3)
    params = sum(p.numel() for p in net.parameters())
    return {
        "impl": "monai",
        "L": 4,
        "params": params,
        "times": times,
        "torch": torch.__version__,
        "device_peak_mib": torch.cuda.max_memory_allocated() / 2**20
        if device.type == "cuda"
        else None,
    }


def worker(args: argparse.Namespace) -> None:
    """One measurement in this process, printed as one JSON line."""
    row = run_unetjax(args) if args.worker == "unetjax" else run_monai(args)
    row["peak_rss_mib"] = peak_rss_mib()
    print(json.dumps(row))


def spawn(args: argparse.Namespace, impl: str, depth: int) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "benchmarks.volume_inference",
        "--worker",
        impl,
        "--depth",
        str(depth),
        "--size",
        str(args.size),
        "--tile",
        str(args.tile),
        "--base-filters",
        str(args.base_filters),
        "--batch",
        str(args.batch),
        "--repeats",
        str(args.repeats),
    ]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    )
    completed = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"{impl} L{depth} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def tiles_per_volume(size: int, tile: int) -> int:
    """Tiles per volume, as both implementations place them (starts every tile / 2)."""
    return len(range(0, size - tile + 1, tile // 2)) ** 3 if size > tile else 1


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return []
    from benchmarks import harness

    plan = [("unetjax", d) for d in sorted(args.depths)]
    order = [(1, plan)]
    if args.monai:
        order += [(1, [("monai", 4)]), (2, [("monai", 4)])]
    order += [(2, plan[::-1])]
    load_before = uptime()
    print(f"uptime before: {load_before}", flush=True)
    rows = []
    for pass_index, runs in order:
        for impl, depth in runs:
            row = spawn(args, impl, depth)
            seconds = statistics.median(row["times"])
            row.update(
                {
                    "pass": pass_index,
                    "tiles": tiles_per_volume(args.size, args.tile),
                    "s_per_volume": seconds,
                    "volumes_per_s": 1 / seconds,
                }
            )
            rows.append(row)
            print(harness.format_table([row], COLUMNS), flush=True)
    load_after = uptime()
    print(f"uptime after: {load_after}")
    print(harness.format_table(rows, COLUMNS))
    harness.write_json(
        args.json,
        {
            "machine": harness.machine_description(),
            "uptime_before": load_before,
            "uptime_after": load_after,
            "settings": vars(args),
            "rows": rows,
        },
    )
    return rows


if __name__ == "__main__":
    main()
