"""Wall time of validation passes over a folder dataset of many images (the dataset handle's gain).

    python -m benchmarks.eval_pass --images 500 --size 64 --passes 3

Writes `--images` random PNG image/mask pairs into a temporary folder, prepares the `image_folder`
dataset once, then times `--passes` full passes over its validation split as training runs them
at each evaluation. Prints seconds per pass (median) and the first pass separately.
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import statistics
import tempfile
import time

import numpy as np
from PIL import Image

from benchmarks import harness
from unetjax import data


def write_folder(root: pathlib.Path, count: int, size: int) -> None:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for index in range(count):
        image = rng.integers(0, 256, (size, size), dtype=np.uint8)
        mask = (rng.random((size, size)) > 0.7).astype(np.uint8) * 255
        Image.fromarray(image).save(root / "images" / f"{index:04d}.png")
        Image.fromarray(mask).save(root / "masks" / f"{index:04d}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--output", default=None, help="JSON file for the figures")
    args = parser.parse_args()
    logging.disable(logging.INFO)
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        write_folder(root / "folder", args.images, args.size)
        config = data.default_config()
        config.name, config.manual_dir = "image_folder", str(root / "folder")
        config.data_dir = str(root / "tfds")
        config.patch_size = (args.size, args.size)
        start = time.perf_counter()
        dataset = data.prepare(config)
        prepare_seconds = time.perf_counter() - start
        times = []
        for _ in range(args.passes):
            start = time.perf_counter()
            for _batch in data.eval_batches(dataset, "validation", batch_size=8):
                pass
            times.append(time.perf_counter() - start)
    payload = {
        "images": args.images,
        "size": args.size,
        "prepare_s": prepare_seconds,
        "first_pass_s": times[0],
        "median_pass_s": statistics.median(times),
        "machine": harness.machine_description(),
    }
    print(
        f"{args.images} images of {args.size}x{args.size}: prepare {prepare_seconds:.2f} s, "
        f"validation pass {payload['median_pass_s']:.3f} s (median of {args.passes}), "
        f"first {times[0]:.3f} s"
    )
    harness.write_json(args.output, payload)


if __name__ == "__main__":
    main()
