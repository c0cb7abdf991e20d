"""Evaluate a run (or an exported model) at every depth L and mode: the paper's pruning table.

    python evaluate.py --model runs/cells --split test --sweep
    python -m unetjax.cli.evaluate --model runs/cells --split validation --depths 1,2 --modes fast

For each depth L = 1..D and each mode, reports IoU, Dice and pixel accuracy (mean and std over
images), the parameter count of the pruned network and its latency per image (batch 1, median of
--repeats timed calls after compilation). `--sweep` tries thresholds 0.05..0.95 on the validation
split, picks the best by IoU per depth and mode, and reports the evaluated split at it too.
Writes into <output>: per_case.csv (one row per case x depth x mode x class, every metric:
Dice, IoU, precision, recall, HD95, ASSD, NSD; object F1 and PQ where the data has instances),
summary.json (mean, sd, median, n and a 95% bootstrap CI per metric, setting and class),
evaluation.json, evaluation.md, and figures as PNG and SVG: pruning (Dice against latency, CI
error bars) and per_case (the distribution per setting).
With --latency-budget-ms (and --sweep), also writes <model>/deploy.json: the most accurate
setting whose latency (at --image-size, default a validation image's) fits the budget, which
export and predict then use by default.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from unetjax import rundir
from unetjax.cli import common

SPLITS = ("train", "validation", "test")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="run directory or exported model")
    parser.add_argument("--split", choices=SPLITS, default="validation")
    parser.add_argument("--depths", default=None, help="comma-separated depths (default: all)")
    parser.add_argument("--modes", default="fast,accurate", help="comma-separated modes")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="sigmoid threshold (default: the run's train.eval_threshold or 0.5)",
    )
    parser.add_argument("--sweep", action="store_true", help="best threshold on validation")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--tile", type=int, default=0, help="overlap-tile size; 0: whole images")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default=None)
    parser.add_argument("--repeats", type=int, default=10, help="timed calls for the latency")
    parser.add_argument(
        "--latency-budget-ms",
        type=float,
        default=None,
        help="with --sweep: write deploy.json, the most accurate setting within this latency",
    )
    parser.add_argument(
        "--image-size", type=int, nargs="+", default=None, help="latency image size, e.g. 512 512"
    )
    parser.add_argument("--data-dir", default=None, help="override config.data.data_dir")
    parser.add_argument(
        "--manual-dir",
        default=None,
        help="override config.data.manual_dir (the source folder, e.g. moved since training)",
    )
    parser.add_argument(
        "--nsd-tolerance",
        type=float,
        default=1.0,
        help="normalised surface Dice tolerance: mm with voxel spacing, else pixels",
    )
    parser.add_argument(
        "--report-cases",
        type=int,
        default=8,
        help="report.html pictures: the worst cases per depth and mode (0: none)",
    )
    parser.add_argument("--output", default=None, help="default: <model>/eval_<split>")
    common.add_progress_flag(parser)
    common.add_verbose_flag(parser)
    return parser.parse_args(argv)


def evaluate(args: argparse.Namespace) -> dict:
    """The report of the command's model and split (`pruning.pruning_table`)."""
    from unetjax.evaluation import pruning

    data_config = rundir.load_config(args.model).data
    if args.data_dir:
        data_config.data_dir = os.path.abspath(args.data_dir)
    if args.manual_dir:
        data_config.manual_dir = os.path.abspath(args.manual_dir)
    return pruning.pruning_table(
        args.model,
        split=args.split,
        depths=[int(d) for d in args.depths.split(",")] if args.depths else None,
        modes=[m.strip() for m in args.modes.split(",") if m.strip()],
        step=args.step,
        threshold=args.threshold,
        sweep=args.sweep,
        batch_size=args.batch_size,
        tile=args.tile,
        dtype=args.dtype,
        repeats=args.repeats,
        image_size=args.image_size,
        data_config=data_config,
        nsd_tolerance=args.nsd_tolerance,
        report_cases=args.report_cases,
        progress=args.progress,
    )


def write_reports(report: dict, args: argparse.Namespace) -> None:
    """Every file the command writes: the reports, the swept thresholds, the deploy choice."""
    from unetjax.evaluation import reports
    from unetjax.inference.deploy import deploy_choice

    output = args.output or os.path.join(args.model, f"eval_{args.split}")
    written = reports.write(report, output)
    with open(os.path.join(output, reports.TABLE_FILE)) as f:
        print(f.read())
    print(f"evaluate: wrote {', '.join(written)} to {output}")
    swept = {
        (r["depth"], r["mode"]): r["sweep"]["best_threshold"]
        for r in report["results"]
        if "sweep" in r
    }
    if swept:
        rundir.save_thresholds(args.model, report["step"], "validation", swept)
    if args.latency_budget_ms is not None:
        choice = deploy_choice.choose(report, args.latency_budget_ms, report["latency_image_size"])
        path = deploy_choice.write(args.model, choice)
        print(
            f"evaluate: chose L{choice['depth']} {choice['mode']}: "
            f"{deploy_choice.describe(choice, path)}"
        )


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.latency_budget_ms is not None and not args.sweep:
        raise common.UsageError("--latency-budget-ms picks by validation IoU: add --sweep")
    common.configure_logging()
    report = evaluate(args)
    if report["skipped"]:
        print(f"evaluate: {args.model} cannot serve {report['skipped']}; skipped them",
              file=sys.stderr)  # fmt: skip
    for row in report["results"]:
        print(
            f"evaluate: L{row['depth']} {row['mode']}: IoU {row['iou']:.4f}, "
            f"Dice {row['dice']:.4f}, {row['params']:,} params, {row['latency_ms']:.2f} ms/image"
        )
    write_reports(report, args)
    return common.EXIT_OK


def run(argv: Sequence[str] | None = None) -> int:
    return common.run_command("evaluate", main, argv)


if __name__ == "__main__":
    sys.exit(run())
