"""Input pipeline throughput: images/s per augmentation and for the default pipeline.

Augmentation runs on the CPU in grain (numpy / scipy, optionally in worker processes). This
prints how fast that is, to set against the train step (UNet++ depth 4, 96x96, batch 8: about
4 images/s on a 2-core CPU):

    python benchmarks/input_pipeline.py [--batches 20] [--workers 0 2]
"""

import argparse
import tempfile
import time

import unetjax.data as data

OFF = {
    "flip_prob": 0.0,
    "rot90_prob": 0.0,
    "affine_prob": 0.0,
    "elastic_prob": 0.0,
    "brightness_prob": 0.0,
    "contrast_prob": 0.0,
    "gamma_prob": 0.0,
    "noise_prob": 0.0,
}
ALONE = {
    "crop only": {},
    "flip": {"flip_prob": 1.0},
    "rot90": {"rot90_prob": 1.0},
    "affine": {"affine_prob": 1.0},
    "elastic": {"elastic_prob": 1.0},
    "brightness": {"brightness_prob": 1.0},
    "contrast": {"contrast_prob": 1.0},
    "gamma": {"gamma_prob": 1.0},
    "noise": {"noise_prob": 1.0},
    "border weights": {"border_weights": True},
    "all at p=1 + weights": {key: 1.0 for key in OFF} | {"border_weights": True},
}


def images_per_second(config, batch_size: int, batches: int) -> float:
    iterator = data.train_iterator(data.prepare(config), batch_size=batch_size, seed=0)
    next(iterator)  # start-up (workers, first reads) is not throughput
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    rate = batches * batch_size / (time.perf_counter() - start)
    if hasattr(iterator, "close"):
        iterator.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        base = data.default_config()
        base.data_dir = data_dir
        base.image_size, base.patch_size = 128, (96, 96)
        start = time.perf_counter()
        data.prepare(base)
        print(
            f"synthetic_cells 2D 128px, 96 samples prepared in {time.perf_counter() - start:.1f} s"
        )
        print(f"\n| augmentation (2D, 96x96, batch {args.batch_size}, 0 workers) | images/s |")
        print("|---|---:|")
        for name, overrides in ALONE.items():
            config = base.copy_and_resolve_references()
            config.update(OFF | overrides)
            print(f"| {name} | {images_per_second(config, args.batch_size, args.batches):.0f} |")
        print("\n| default config (config.data defaults) | images/s |")
        print("|---|---:|")
        for workers in args.workers:
            config = base.copy_and_resolve_references()
            config.num_workers = workers
            rate = images_per_second(config, args.batch_size, args.batches)
            print(f"| total, {workers} worker processes | {rate:.0f} |")


if __name__ == "__main__":
    main()
