"""Trains a U-Net family model: `python train.py --config configs/unetpp_l4.py`.

Override any config field with `--config.train.batch_size=16`; a mistyped key is an error.
Rerunning the same command continues from the latest checkpoint in --workdir.
This file is intentionally kept short: the logic lives in `unetjax.train`.
"""

import logging
import os
import sys

import tensorflow_datasets as tfds
from absl import app, flags
from ml_collections import config_flags

from unetjax import train
from unetjax.report import results_table

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to a config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Run directory (default: runs/<config name>).")
flags.mark_flags_as_required(["config"])


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stdout,
        force=True,
    )
    for noisy in ("absl", "jax._src", "orbax", "tensorflow_datasets", "grain"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    tfds.disable_progress_bar()
    config_path = flags.FLAGS["config"].config_filename
    workdir = FLAGS.workdir or os.path.join(
        "runs", os.path.splitext(os.path.basename(config_path))[0]
    )
    try:
        result = train.train_and_evaluate(FLAGS.config, workdir)
    except train.NonFiniteLossError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if result.resumed_from is not None:
        print(f"resumed from step {result.resumed_from}")
    if result.eval_metrics:
        print(results_table(result.eval_metrics, result.head_depths))
    print(f"run directory: {workdir}")
    # Stopped by a signal: the shell's 128 + signal number, after the checkpoint was written.
    return 128 + result.stop_signal if result.stop_signal else 0


if __name__ == "__main__":
    app.run(main)
