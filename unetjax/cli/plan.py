"""Plan training for a dataset: `unetjax-plan DATA [--memory-gb N] [--hours H] [--output DIR]`.

DATA is a Decathlon / nnU-Net folder (dataset.json; 3D), an image folder (images/, masks/;
2D) or "synthetic_cells". The dataset's fingerprint (spacings, shapes, intensities, classes,
a hash of the files) decides the target spacing, patch, depth, filters, augmentation and
how validation is scored; the batch and patch are fitted to the memory budget by compiling the real
train step, and the steps to the time budget by timing it. Writes DIR/plans.json (default:
beside the data) and prints each choice with its reason. Train from it with

    python train.py --config configs/auto.py --config.data.manual_dir=DATA

Exit codes: 0 planned; 2 a user's mistake (no such folder, a budget too small, too few cases),
one line on stderr.
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import sys
from collections.abc import Sequence

from unetjax.cli import common

PROG = "plan"
# The layer options the memory fit builds the network with: configs/default.py's model
# section, with the planned norm.
MODEL_OPTIONS = {
    "deep_supervision": True,
    "activation": "relu",
    "dropout": 0.0,
    "upsample": "transpose",
    "cat_channels": 64,
    "dtype": "float32",
}


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", help='dataset folder, or "synthetic_cells"')
    parser.add_argument(
        "--memory-gb",
        type=float,
        default=None,
        help="memory budget of the train step (default: what the accelerator reports, or "
        "4 GB on a CPU)",
    )
    parser.add_argument("--hours", type=float, default=1.0, help="training time budget")
    parser.add_argument("--output", default=None, help="folder for plans.json (default: DATA)")
    parser.add_argument(
        "--architecture",
        default="unet_plusplus",
        help="unet, wide_unet, unet_plus, unet_plusplus (default) or unet_3plus",
    )
    common.add_verbose_flag(parser)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    common.configure_logging(logging.WARNING)
    from unetjax.planning import fingerprint, planner, plans_file  # after parsing: --help is quick

    wanted = plans_file.budget(args.memory_gb, args.hours)
    output = args.output
    if output is None:
        source = fingerprint.SOURCES.get(args.data)
        if source is not None and source.generated:
            raise common.UsageError(f"{args.data} has no folder; give --output DIR")
        output = args.data
    if not plans_file.writable(output):  # before the work
        raise common.UsageError(f"cannot write plans.json in {output}; give --output DIR")
    fp = fingerprint.fingerprint(args.data)
    import jax
    import ml_collections

    base = ml_collections.ConfigDict({"architecture": args.architecture, **MODEL_OPTIONS})
    plan = planner.make_plan(fp, wanted, base, devices=jax.device_count())
    try:
        path = plans_file.save(plan, pathlib.Path(output))
    except OSError as error:
        raise common.UsageError(
            f"cannot write plans.json in {output} ({error.strerror}); give --output DIR"
        ) from None
    print(planner.describe(plan))
    print(f"wrote {path}")
    return common.EXIT_OK


def run(argv: Sequence[str] | None = None) -> int:
    return common.run_command(PROG, main, argv)


if __name__ == "__main__":
    sys.exit(run())
