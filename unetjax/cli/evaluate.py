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
import functools
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import jax
import numpy as np

from unetjax import backend, data, inference, rundir
from unetjax.cli import common
from unetjax.evaluation import reports, scoring
from unetjax.evaluation.counts import counts_at_thresholds, summarize_counts
from unetjax.inference import deploy_choice

SWEEP = tuple(round(t, 2) for t in np.arange(0.05, 0.951, 0.05))
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
    parser.add_argument("--output", default=None, help="default: <model>/eval_<split>")
    common.add_verbose_flag(parser)
    return parser.parse_args(argv)


def _counts_fn(
    output_activation: str, thresholds: Sequence[float], *, jit: bool, ignore_index: int | None
) -> Callable:
    """(probabilities, mask) -> counts (B, T, K, 4) at every threshold; jitted for batches of
    one shape, eager for images of varied sizes (a compile per size would cost more)."""
    counts = functools.partial(
        counts_at_thresholds,
        output_activation=output_activation,
        thresholds=tuple(thresholds),
        ignore_index=ignore_index,
    )
    return backend.jit(counts) if jit else counts


def _predict_fn(predictor: inference.Predictor, tile) -> Callable[[np.ndarray], np.ndarray]:
    """(B, *spatial, C) -> probabilities, for any spatial size (sizes that are not multiples
    of 2^D are padded to a size bucket, so a split of varied sizes compiles a few shapes)."""

    def predict(images: np.ndarray) -> np.ndarray:
        aligned = all(s % predictor.align == 0 for s in images.shape[1:-1])
        if tile is None and aligned and len(images) > 1:
            return predictor.predict_batch(images)
        return np.stack([predictor.predict(image, tile=tile, bucket=True) for image in images])

    return predict


def split_batches(dataset: data.Dataset, split: str, batch_size: int):
    """The split as batches: stacked when its images share a size (or are centre-cropped),
    else one full-size image at a time (a batch of one)."""
    if dataset.config.eval_patch_size is None and dataset.info.uniform_size.get(split) is False:
        for example in data.eval_examples(dataset, split):
            yield {key: np.asarray([value]) for key, value in example.items()}
        return
    yield from data.eval_batches(dataset, split, batch_size=batch_size)


def split_pass(predict, dataset: data.Dataset, split: str, counts_fn, batch_size: int, score=None):
    """Counts (N, T, K, 4) over the split's valid images, the first image (for timing), and,
    with `score(probabilities, batch, case_ids)`, the per-case rows it returns."""
    gathered, first, rows, seen = [], None, [], 0
    for batch in split_batches(dataset, split, batch_size):
        probabilities = predict(batch["image"])
        counts = np.asarray(counts_fn(probabilities, batch["mask"]))
        gathered.append(counts[batch["valid"]])
        if score is not None:
            rows += score(np.asarray(probabilities), batch, scoring.case_ids(batch, split, seen))
        seen += int(batch["valid"].sum())
        if first is None:
            first = batch["image"][:1]
    if first is None or not seen:
        raise ValueError(f"split {split!r} has no images")
    return np.concatenate(gathered), first, rows


def latency_ms(predict, image: np.ndarray, repeats: int) -> float:
    """Median wall time of one image's prediction (compiled first; results fetched to host)."""
    predict(image)
    times = []
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        np.asarray(predict(image))
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _scores(counts: np.ndarray, output_activation: str) -> dict[str, float]:
    summary = summarize_counts(counts, output_activation=output_activation)
    return {
        key: float(summary[key])
        for key in ("iou", "iou_std", "dice", "dice_std", "accuracy", "accuracy_std")
    }


def scored_text(data_config, tile: int) -> str:
    """What each case's metrics were computed on, for every table and figure."""
    if data_config.get("eval_patch_size"):
        return f"centre crops of {tuple(data_config.eval_patch_size)}"
    return "full images" + (f", overlap-tiled with {tile}-pixel tiles" if tile else "")


def evaluate(args: argparse.Namespace) -> dict:
    config = rundir.load_config(args.model)
    data_config = config.data
    if args.data_dir:
        data_config.data_dir = os.path.abspath(args.data_dir)
    if args.manual_dir:
        data_config.manual_dir = os.path.abspath(args.manual_dir)
    output_activation = config.model.output_activation
    sigmoid = output_activation == "sigmoid"
    threshold = args.threshold
    if threshold is None:
        threshold = float(config.get("train", {}).get("eval_threshold", 0.5))
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    settings = inference.available_settings(config)
    depths = sorted({d for d, _ in settings})
    if args.depths:
        depths = [int(d) for d in args.depths.split(",")]
    wanted = [(d, m) for d in depths for m in modes if (d, m) in settings]
    missing = [(d, m) for d in depths for m in modes if (d, m) not in settings]
    if missing:
        print(f"evaluate: {args.model} cannot serve {missing}; skipping them", file=sys.stderr)
    if not wanted:
        raise ValueError(f"nothing to evaluate: {args.model} serves {settings}")

    dataset = data.prepare(data_config)
    thresholds = [threshold] + (
        [t for t in SWEEP if t != threshold] if args.sweep and sigmoid else []
    )
    varied = data_config.eval_patch_size is None and (
        dataset.info.uniform_size.get(args.split) is False
        or (args.sweep and dataset.info.uniform_size.get("validation") is False)
    )
    counts_fn = _counts_fn(
        output_activation,
        thresholds if sigmoid else [threshold],
        jit=not varied,
        ignore_index=dataset.info.ignore_index,
    )
    if varied and not args.tile:
        # Whole images of many sizes: tiles of the training patch size, compiled once.
        args.tile = max(int(t) for t in data_config.patch_size)
    tile = common.tile_options(args.tile, batch_size=args.batch_size)
    rows, case_rows = [], []
    for depth, mode in wanted:
        predictor = inference.load_predictor(
            args.model, depth=depth, mode=mode, step=args.step, dtype=args.dtype
        )
        predict = _predict_fn(predictor, tile)
        score = functools.partial(
            scoring.batch_rows,
            split=args.split,
            depth=depth,
            mode=mode,
            output_activation=output_activation,
            threshold=threshold,
            nsd_tolerance=args.nsd_tolerance,
            ignore_index=dataset.info.ignore_index,
        )
        counts, first, setting_cases = split_pass(
            predict,
            dataset,
            args.split,
            counts_fn,
            args.batch_size,
            lambda p, b, ids, score=score: score(p, b, case_ids=ids),
        )
        case_rows += setting_cases
        timing_image = deploy_choice.timing_image(args.image_size, first)
        row = {
            "depth": depth,
            "mode": mode,
            "params": predictor.num_params,
            "num_images": int(counts.shape[0]),
            "threshold": threshold,
            **_scores(counts[:, 0], output_activation),
            "latency_ms": latency_ms(predict, timing_image, args.repeats),
        }
        if len(thresholds) > 1:
            validation = counts
            if args.split != "validation":
                validation, _, _ = split_pass(
                    predict, dataset, "validation", counts_fn, args.batch_size
                )
            sweep_iou = [
                _scores(validation[:, i], output_activation)["iou"] for i in range(len(thresholds))
            ]
            best = int(np.argmax(sweep_iou))
            row["sweep"] = {
                "best_threshold": thresholds[best],
                "validation_iou": sweep_iou[best],
                "validation_iou_by_threshold": dict(
                    zip(map(str, thresholds), sweep_iou, strict=True)
                ),
                "split_scores": _scores(counts[:, best], output_activation),
            }
        print(
            f"evaluate: L{depth} {mode}: IoU {row['iou']:.4f}, Dice {row['dice']:.4f}, "
            f"{row['params']:,} params, {row['latency_ms']:.2f} ms/image"
        )
        rows.append(row)
    swept = {(r["depth"], r["mode"]): r["sweep"]["best_threshold"] for r in rows if "sweep" in r}
    if swept:
        rundir.save_thresholds(args.model, predictor.step, "validation", swept)
    return {
        "model": os.path.abspath(args.model),
        "step": predictor.step,
        "split": args.split,
        "architecture": config.model.architecture,
        "output_activation": output_activation,
        "threshold": threshold,
        "dtype": predictor.spec.dtype.__name__ if predictor.spec.dtype else "float32",
        "device": f"{jax.devices()[0].device_kind} x{jax.device_count()}",
        "tile": args.tile or None,
        "scored": scored_text(config.data, args.tile),
        "latency": f"batch 1, median of {args.repeats} calls after compilation, host transfer "
        "included",
        "latency_image_size": list(timing_image.shape[1:-1]),
        "results": rows,
        "case_rows": case_rows,
    }


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.latency_budget_ms is not None and not args.sweep:
        raise common.UsageError("--latency-budget-ms picks by validation IoU: add --sweep")
    common.configure_logging()
    report = evaluate(args)
    output = args.output or os.path.join(args.model, f"eval_{args.split}")
    written = reports.write(report, output)
    with open(os.path.join(output, reports.TABLE_FILE)) as f:
        print(f.read())
    print(f"evaluate: wrote {', '.join(written)} to {output}")
    if args.latency_budget_ms is not None:
        choice = deploy_choice.choose(report, args.latency_budget_ms, report["latency_image_size"])
        path = deploy_choice.write(args.model, choice)
        print(
            f"evaluate: chose L{choice['depth']} {choice['mode']}: "
            f"{deploy_choice.describe(choice, path)}"
        )
    return common.EXIT_OK


def run(argv: Sequence[str] | None = None) -> int:
    return common.run_command("evaluate", main, argv)


if __name__ == "__main__":
    sys.exit(run())
