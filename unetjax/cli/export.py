"""Export a run pruned to depth L: an Orbax model directory or one StableHLO / ONNX file.

    python -m unetjax.cli.export --model runs/cells --depth 2 --mode fast --output models/cells_l2
    python -m unetjax.cli.export --model runs/cells --format stablehlo --output cells.stablehlo
    python -m unetjax.cli.export --model runs/cells --format onnx --image-size 512 512 \\
        --output cells.onnx

orbax (default): a directory in a run's layout (config.json, checkpoints/<step>/) that works
wherever a run does (`predict.py --model models/cells_l2`, `evaluate.py`).
stablehlo / onnx: one file with the run's input normalisation in front and probabilities (and
with --labels the hard mask) behind, plus a JSON sidecar `<output>.json`; running it needs only
jax or onnxruntime (`predict.py --model cells.stablehlo`, or docs/inference.md's snippet).
StableHLO takes any batch and spatial sizes that are multiples of 2^D; ONNX any batch at the one
--image-size it was exported for (default: deploy.json's latency size, else the training patch).

Without --depth and --mode, the setting in the run's deploy.json (written by
`evaluate --sweep --latency-budget-ms`) is used when present, else the deepest, fast.

    python -m unetjax.cli.export --model runs/cells --package cells_model [--with-artifacts]

--package: a model package to share (`unetjax.inference.package`): the whole model's weights as
safetensors, config, preprocessing, thresholds, class and channel names, the run's evaluation,
a README.md model card; it loads with `unetjax.load_pretrained(DIR)` (or from a Hugging Face
Hub repository it was uploaded to) and `predict.py --model DIR`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from unetjax import inference
from unetjax.cli import common
from unetjax.inference import package
from unetjax.inference.deploy import artifact, artifact_format, artifact_runner, deploy_choice

FORMATS = ("orbax", *artifact_format.FORMATS)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="run directory")
    parser.add_argument("--depth", type=int, default=None, help="prune to depth L")
    parser.add_argument("--mode", choices=inference.MODES, default=None, help="default: fast")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    parser.add_argument("--format", choices=FORMATS, default="orbax")
    parser.add_argument(
        "--output", default=None, help="new directory (orbax) or file (.stablehlo, .onnx)"
    )
    parser.add_argument("--package", default=None, help="write a model package to this folder")
    parser.add_argument(
        "--with-artifacts",
        action="store_true",
        help="--package: add the default setting as a StableHLO artifact",
    )
    parser.add_argument(
        "--license", default="other", help="--package: the weights' licence id for the card"
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="sigmoid threshold recorded (and applied by --labels); default: as predict "
        "--model RUN: deploy.json's, evaluate --sweep's, train.eval_threshold, else 0.5",
    )
    parser.add_argument("--labels", action="store_true", help="also output the hard mask")
    parser.add_argument(
        "--image-size", type=int, nargs="+", default=None, help="onnx: the spatial size"
    )
    parser.add_argument(
        "--platforms",
        default=",".join(artifact.STABLEHLO_PLATFORMS),
        help="stablehlo: comma-separated platforms to lower for (cpu, cuda, rocm, tpu)",
    )
    parser.add_argument("--opset", type=int, default=artifact.ONNX_OPSET, help="onnx opset")
    common.add_progress_flag(parser)
    common.add_verbose_flag(parser)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.package:
        return _package(args)
    if args.output is None:
        raise common.UsageError("--output (or --package DIR) is required")
    if args.format != "orbax" and artifact_format.artifact_format(args.output) != args.format:
        raise common.UsageError(
            f"--format {args.format} writes a file: --output NAME.{args.format}"
        )
    if args.format != "onnx" and args.image_size:
        raise common.UsageError("--image-size applies to --format onnx (StableHLO takes any size)")
    common.configure_logging()
    setting = deploy_choice.resolve(args.model, args.depth, args.mode)
    predictor = inference.load_predictor(
        args.model, depth=setting.depth, mode=setting.mode, step=args.step
    )
    print(f"export: L{predictor.depth} {predictor.mode}: {setting.reason}")
    if args.format == "orbax":
        inference.export(
            args.model, args.output, depth=predictor.depth, mode=predictor.mode, step=args.step
        )
        exported = inference.load_predictor(args.output, depth=predictor.depth, mode=predictor.mode)
        print(
            f"export: wrote {args.output}: depth {exported.depth} ({exported.mode}), step "
            f"{exported.step}, {exported.num_params:,} parameters"
        )
        return common.EXIT_OK
    threshold, _ = deploy_choice.resolve_threshold(
        args.model, predictor, setting, given=args.threshold
    )
    if args.format == "stablehlo":
        platforms = [p.strip() for p in args.platforms.split(",") if p.strip()]
        sidecar = artifact.export_stablehlo(
            predictor, args.output, threshold=threshold, labels=args.labels, platforms=platforms
        )
        multiple = artifact_runner.align_text(predictor.align)
        shape = f"any batch, spatial sizes multiples of {multiple}, for {platforms}"
    else:
        image_size = args.image_size or _default_image_size(args.model, predictor)
        try:
            sidecar = artifact.export_onnx(
                predictor,
                args.output,
                spatial_shape=image_size,
                threshold=threshold,
                labels=args.labels,
                opset=args.opset,
            )
        except ImportError as error:  # the optional deploy extra is missing
            raise common.UsageError(str(error)) from None
        shape = f"any batch at {'x'.join(map(str, image_size))}, opset {args.opset}"
    if args.format == "stablehlo" and not artifact_runner.runs_here(platforms):
        check = "not run here (this machine is none of its platforms)"
    else:
        difference = artifact.verify(predictor, args.output)
        check = f"checked with its runtime: max difference {difference:.1e} from the predictor"
    print(
        f"export: wrote {args.output} ({os.path.getsize(args.output):,} bytes) and "
        f"{artifact_format.sidecar_path(args.output)}: depth {predictor.depth} "
        f"({predictor.mode}), step {predictor.step}, {predictor.num_params:,} parameters, "
        f"{shape}, threshold {sidecar['output']['threshold']:g}; {check}"
    )
    return common.EXIT_OK


def _package(args: argparse.Namespace) -> int:
    """--package: the whole run (every depth and mode) as one folder to share."""
    given = [f"--{name}" for name in ("depth", "mode", "output") if getattr(args, name)]
    if given:
        raise common.UsageError(
            f"{' '.join(given)}: not for --package (a package holds every depth and mode)"
        )
    common.configure_logging()
    manifest = package.write(
        args.model,
        args.package,
        step=args.step,
        with_artifacts=args.with_artifacts,
        license=args.license,
        show_progress=args.progress,
    )
    evaluated = ", ".join(manifest["evaluations"]) or "none (no evaluate output)"
    print(
        f"export: wrote package {args.package}: step {manifest['step']}, "
        f"{manifest['weights']['tensors']} tensors, evaluation: {evaluated}, "
        f"artifacts: {', '.join(manifest['artifacts']) or 'none'}; load it with "
        f"unetjax.load_pretrained({args.package!r})"
    )
    return common.EXIT_OK


def _default_image_size(model_dir: str, predictor: inference.Predictor) -> list[int]:
    """deploy.json's latency size (what the choice was timed at), else the training patch."""
    choice = deploy_choice.read(model_dir)
    if choice and choice.get("image_size"):
        return list(choice["image_size"])
    patch = predictor.default_tile
    if not patch:
        raise common.UsageError(
            "--format onnx needs --image-size (the run records no training patch or import tile)"
        )
    return patch


def run(argv: Sequence[str] | None = None) -> int:
    return common.run_command("export", main, argv)


if __name__ == "__main__":
    sys.exit(run())
