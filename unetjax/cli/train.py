"""Train a U-Net family model: `unetjax-train --config configs/unetpp_l4.py [--workdir DIR]`.

Override any config field with `--config.train.batch_size=16`; a mistyped key is an error;
`--config.data.eval_patch_size=None` unsets a field (a tuple too).
Rerunning the same command continues from the latest checkpoint in --workdir (default
runs/<config name>). One training at a time per --workdir: another is refused (exit 2, naming
its pid and host), or waited for with --wait_for_lock. The logic lives in `unetjax.train`; this
file only parses and reports.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Sequence

import ml_collections
from absl import flags
from ml_collections import config_flags

from unetjax.cli import common

PROG = "train"


def parse_args(argv: Sequence[str]) -> tuple[ml_collections.ConfigDict, str, bool] | None:
    """The config (with overrides), the run directory and whether to wait for its lock; None
    when help was asked for."""
    flag_values = flags.FlagValues()
    config_flags.DEFINE_config_file(
        "config", None, "Path to a config file.", flag_values=flag_values, lock_config=True
    )
    flags.DEFINE_string(
        "workdir", None, "Run directory (default: runs/<config name>).", flag_values=flag_values
    )
    flags.DEFINE_bool(
        "wait_for_lock",
        False,
        "If another training runs in --workdir, wait for it to end instead of refusing.",
        flag_values=flag_values,
    )
    flags.DEFINE_bool("verbose", False, "Tracebacks for errors.", flag_values=flag_values)
    if {"-h", "--help", "--helpfull"} & set(argv):
        print(__doc__)
        print(flag_values.main_module_help() or flag_values.get_help())
        return None
    try:
        rest = flag_values([PROG, *argv])
    except (flags.Error, AttributeError, KeyError, TypeError) as error:
        # ml_collections reports an unknown key as an AttributeError whose text is the repr of
        # a KeyError's message, with literal quotes and "\n" in it: say it plainly.
        text = str(error.args[0] if error.args else error)
        text = re.sub(r"(\\n|\n)+", "; ", text).replace("\\'", "").replace("'", "")
        raise common.UsageError(f"config override: {text}") from None
    if len(rest) > 1:
        raise common.UsageError(
            f"unexpected arguments {rest[1:]}; options are --config, --workdir, --wait_for_lock"
        )
    if flag_values.config is None:
        raise common.UsageError("--config is required, e.g. --config configs/tiny.py")
    config_path = flag_values["config"].config_filename
    for key in none_overrides(argv):  # ml_collections reads None for a tuple field as (None,)
        *parents, leaf = key.split(".")
        section = flag_values.config
        for name in parents:
            section = section[name]
        section[leaf] = None
    if "plan" in flag_values.config:  # a planned config: the keys given here win over the plan
        flag_values.config.plan.overrides = override_keys(argv)
    workdir = flag_values.workdir or os.path.join(
        "runs", os.path.splitext(os.path.basename(config_path))[0]
    )
    return flag_values.config, workdir, flag_values.wait_for_lock


def _config_arguments(argv: Sequence[str]) -> list[tuple[str, str]]:
    """(key, value) of each --config.a.b=v or --config.a.b v on the command line."""
    prefix, pairs = "--config.", []
    for index, arg in enumerate(argv):
        if arg.startswith(prefix):
            key, equals, value = arg[len(prefix) :].partition("=")
            if not equals:
                value = argv[index + 1] if index + 1 < len(argv) else ""
            pairs.append((key, value))
    return pairs


def override_keys(argv: Sequence[str]) -> tuple[str, ...]:
    """The config keys set on the command line: --config.a.b=v or --config.a.b v."""
    return tuple(key for key, _ in _config_arguments(argv))


def none_overrides(argv: Sequence[str]) -> tuple[str, ...]:
    """The config keys set to None on the command line: --config.a.b=None or --config.a.b None."""
    return tuple(key for key, value in _config_arguments(argv) if value == "None")


def main(argv: list[str]) -> int:
    parsed = parse_args(argv)
    if parsed is None:
        return common.EXIT_OK
    config, workdir, wait_for_lock = parsed
    common.configure_logging(logging.INFO, stream=sys.stdout)
    # Imported after parsing, so `--help` and argument errors answer at once.
    import tensorflow_datasets as tfds

    from unetjax import stopping, train
    from unetjax.evaluation.tables import validation_table

    tfds.disable_progress_bar()
    try:
        result = train.train_and_evaluate(config, workdir, wait_for_lock=wait_for_lock)
    except stopping.NonFiniteLossError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return common.EXIT_FAILED
    if result.complete and result.stopped_early:
        print(
            f"{workdir} stopped early at step {result.step} (train.early_stopping_patience); "
            "raise --config.train.early_stopping_patience to train on, or use another --workdir"
        )
    elif result.complete:
        print(
            f"{workdir} is complete: trained to step {result.step} (train.num_steps); "
            "raise --config.train.num_steps to train on, or use another --workdir"
        )
    elif result.resumed_from is not None:
        print(f"resumed from step {result.resumed_from}")
    if result.eval_metrics:
        print(validation_table(result.eval_metrics, result.head_depths))
    print(f"run directory: {workdir}")
    # Stopped by a signal: the shell's 128 + signal number, after the checkpoint was written.
    return 128 + result.stop_signal if result.stop_signal else common.EXIT_OK


def run(argv: Sequence[str] | None = None) -> int:
    return common.run_command(PROG, main, argv)


if __name__ == "__main__":
    sys.exit(run())
