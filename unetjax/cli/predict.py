"""Predict masks for images or volumes with a trained run, an exported model or an artifact.

    python predict.py --model runs/cells --output masks/ images/ "more/*.png" one.tif
    python -m unetjax.cli.predict --model runs/cells --output masks/ --depth 2 --mode fast \\
        --tile 256 --tta --overlay images/
    python predict.py --model cells.stablehlo --output masks/ --tta images/   # or cells.onnx

With a run and neither --depth nor --mode, the run's deploy.json (from `evaluate
--latency-budget-ms`) picks the setting and threshold when present. A .stablehlo or .onnx
artifact (from `export --format`) runs with jax or onnxruntime alone, at its own depth, mode
and threshold (--threshold overrides it), with the same tiling, TTA and output files.

Every input that cannot be read or does not fit the model is reported and skipped; the others
are still written. The exit status is 1 when any input failed.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Sequence

from unetjax import inference
from unetjax.cli import common, predict_volumes
from unetjax.data import resize
from unetjax.inference import images
from unetjax.inference.model import load_model


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="predict", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("inputs", nargs="+", help="image files, folders or glob patterns")
    parser.add_argument(
        "--model", required=True, help="run directory, exported model, .stablehlo or .onnx"
    )
    parser.add_argument("--output", required=True, help="folder for the masks")
    parser.add_argument("--depth", type=int, default=None, help="prune to depth L (default: all)")
    parser.add_argument("--mode", choices=inference.MODES, default=None, help="default: fast")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="sigmoid outputs only (default: the artifact's, deploy.json's, the one "
        "`evaluate --sweep` chose for this setting, train.eval_threshold, else 0.5)",
    )
    parser.add_argument("--min-size", type=int, default=0, help="drop smaller components")
    parser.add_argument("--format", choices=images.FORMATS, default="png", help="mask file format")
    parser.add_argument(
        "--tile",
        type=int,
        default=None,
        help="tile size (default for a run: its training patch size; for an imported model: "
        "its import --tile, else whole images; for an artifact: whole images); 0 predicts "
        "whole images",
    )
    parser.add_argument("--overlap", type=int, default=None, help="tile overlap (default: half)")
    parser.add_argument("--blend", choices=("gaussian", "constant"), default="gaussian")
    parser.add_argument("--border", type=int, default=0, help="mirrored context around images")
    parser.add_argument("--batch-size", type=int, default=4, help="tiles per network call")
    parser.add_argument("--tta", action="store_true", help="average over mirrored inputs")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default=None)
    parser.add_argument("--overlay", action="store_true", help="also write image + contour PNGs")
    parser.add_argument(
        "--probabilities", action="store_true", help="also write .npy probabilities"
    )
    common.add_progress_flag(parser)
    common.add_verbose_flag(parser)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    common.configure_logging()
    loaded = load_model(
        args.model,
        depth=args.depth,
        mode=args.mode,
        step=args.step,
        dtype=args.dtype,
        threshold=args.threshold,
    )
    for note in loaded.notes:
        print(f"predict: {note}")
    model = loaded.model
    if model.takes_volumes:
        return predict_volumes.main(args, model)  # NIfTI in and out, with the inputs' geometry
    if model.spatial_dims == 3 and args.format == "png":
        raise common.UsageError("a 3D model writes volumes; use --format tiff or npy")
    tile = common.tile_options(
        model.default_tile if args.tile is None else args.tile,
        overlap=args.overlap,
        blend=args.blend,
        batch_size=args.batch_size,
        border=args.border,
    )
    model.check_tile(tile)
    files, failures = images.expand_inputs(args.inputs)
    print(f"predict: {len(files)} inputs, {model.describe()}")
    if model.training_resize is not None:
        print(
            f"predict: images resized as in training ({resize.describe(model.training_resize)}), "
            "masks written at each image's own size"
        )
    output = pathlib.Path(args.output)
    outputs = images.ImageOutputs(output, args.format, args.probabilities, args.overlay)
    results = images.predict_images(
        model,
        files,
        outputs,
        tile=tile,
        tta=args.tta,
        threshold=loaded.threshold,
        min_size=args.min_size,
    )
    return common.report_results(
        "predict",
        results,
        total=len(files),
        failures=failures,
        unit="image",
        written="masks",
        output=output,
        progress=args.progress,
    )


def run(argv: Sequence[str] | None = None) -> int:
    return common.run_command("predict", main, argv)


if __name__ == "__main__":
    sys.exit(run())
