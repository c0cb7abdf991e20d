"""Prediction over images of varied sizes: how many compiled shapes a folder costs.

    python -m benchmarks.predict_sizes --images 20 --min-size 40 --max-size 300 --tile 128

Saves a randomly initialised UNet++ (depth 4, filters 16..256, batch norm) as a run, then
predicts `--images` random images of random sizes one by one, three ways, each with a fresh
predictor: whole images padded to the next multiple of 2^4 (a new compiled shape for most
sizes); whole images padded to a size bucket (`tiling.bucket_size`); fixed-shape tiles of
`--tile` pixels (images smaller than a tile padded up to it: predict's default for a run).
Wall time includes compilation, as a user's first pass does.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time

import jax
import numpy as np
from flax import nnx

from benchmarks import harness
from configs import default
from unetjax import checkpoint, inference, models, rundir


def save_random_run(workdir: str) -> None:
    config = default.get_config()
    config.model.base_filters = 16
    config.model.update(in_channels=1, num_classes=1, output_activation="sigmoid", spatial_dims=2)
    model = models.from_config(config.model)
    _, params, model_state = nnx.split(model, nnx.Param, ...)
    manager = checkpoint.CheckpointManager(rundir.checkpoint_dir(workdir))
    manager.save(0, {"step": np.int32(0), "params": params, "model_state": model_state}, {})
    manager.wait_until_finished()
    manager.close()
    rundir.save_config(workdir, config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--min-size", type=int, default=40)
    parser.add_argument("--max-size", type=int, default=300)
    parser.add_argument("--tile", type=int, default=128, help="tile size of the tiled way")
    parser.add_argument("--output", default=None, help="JSON file for the figures")
    args = parser.parse_args()
    logging.disable(logging.INFO)
    rng = np.random.default_rng(0)
    shapes = [tuple(rng.integers(args.min_size, args.max_size + 1, 2)) for _ in range(args.images)]
    images = [rng.random((*shape, 1), dtype=np.float32) for shape in shapes]
    results = {}
    with tempfile.TemporaryDirectory() as workdir:
        save_random_run(workdir)
        tiles = inference.TileOptions(args.tile)
        ways = {
            "whole, multiple of 2^D": dict(bucket=False),
            "whole, size buckets": dict(bucket=True),
            f"fixed {args.tile}-pixel tiles": dict(tile=tiles, bucket=True),
        }
        for name, options in ways.items():
            predictor = inference.load_predictor(workdir)  # a fresh predictor: nothing compiled
            start = time.perf_counter()
            for image in images:
                predictor.predict(image, **options)
            seconds = time.perf_counter() - start
            results[name] = {"seconds": seconds, "images_per_second": len(images) / seconds}
            print(f"{name}: {len(images) / seconds:.2f} images/s ({seconds:.1f} s)", flush=True)
    harness.write_json(
        args.output,
        {
            "shapes": [list(map(int, s)) for s in shapes],
            "results": results,
            "device": jax.devices()[0].device_kind,
            "machine": harness.machine_description(),
        },
    )


if __name__ == "__main__":
    main()
