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
import glob
import pathlib
import sys
import time
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import tifffile
import tqdm
from PIL import Image

from unetjax import inference, overlays
from unetjax.cli import common, predict_volumes
from unetjax.data import image_io, resize
from unetjax.inference.deploy import artifact_format, artifact_runner, deploy_choice

FORMATS = ("png", "tiff", "npy")


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
    parser.add_argument("--format", choices=FORMATS, default="png", help="mask file format")
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
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    common.add_verbose_flag(parser)
    return parser.parse_args(argv)


def expand_inputs(inputs: Sequence[str]) -> tuple[list[pathlib.Path], list[tuple[str, str]]]:
    """Files named by paths, folders (their image files) and globs; and the inputs matching none."""
    files, failures = [], []
    for item in inputs:
        path = pathlib.Path(item)
        if glob.has_magic(item):
            matches = sorted(pathlib.Path(p) for p in glob.glob(item))
            matches = [p for p in matches if image_io.is_image_file(p)]
            if not matches:
                failures.append((item, "the pattern matches no image file"))
            files += matches
        elif path.is_dir():
            matches = sorted(p for p in path.iterdir() if image_io.is_image_file(p))
            if not matches:
                failures.append((item, f"the folder has no {'/'.join(image_io.IMAGE_SUFFIXES)}"))
            files += matches
        else:
            files.append(path)  # a missing or unreadable file is reported when read
    return files, failures


def unique_names(files: Sequence[pathlib.Path]) -> list[str]:
    """Output names from file stems; repeated stems get _2, _3, ..."""
    names, seen = [], {}
    for path in files:
        stem = image_io.file_stem(path)
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return names


def write_mask(labels: np.ndarray, out: pathlib.Path, fmt: str, *, binary: bool) -> list[str]:
    """Writes labels; binary masks as 0/255 in PNG and TIFF (viewable; the data package reads
    {0, 255} masks back), class indices otherwise. Returns the written paths."""
    if fmt == "npy":
        np.save(out.with_suffix(".npy"), labels)
        return [str(out.with_suffix(".npy"))]
    image = labels * np.uint8(255) if binary else labels
    if fmt == "tiff":
        tifffile.imwrite(out.with_suffix(".tif"), image)
        return [str(out.with_suffix(".tif"))]
    if image.ndim == 3:  # multi-label: one PNG per class
        written = []
        for k in range(image.shape[-1]):
            path = out.with_name(f"{out.name}_class{k}.png")
            Image.fromarray(image[..., k]).save(path)
            written.append(str(path))
        return written
    Image.fromarray(image).save(out.with_suffix(".png"))
    return [str(out.with_suffix(".png"))]


def match_channels(image: np.ndarray, channels: int) -> tuple[np.ndarray, str | None]:
    """The image with the model's channels: RGB(A) to grayscale by the mean of R, G, B, or
    grayscale repeated to RGB; and a note saying so (None when nothing changed)."""
    have = image.shape[-1]
    if have == channels:
        return image, None
    if channels == 1 and have in (3, 4):
        gray = image[..., :3].mean(axis=-1, keepdims=True)
        return gray, f"{have}-channel images converted to grayscale"
    if channels == 3 and have == 1:
        return np.repeat(image, 3, axis=-1), "grayscale images repeated to RGB"
    return image, None  # check_image names the mismatch


class LoadedModel(NamedTuple):
    """A Predictor (run or export) or an ArtifactRunner: both predict, check_image and
    postprocess alike; and what reading inputs and writing masks need from it."""

    model: inference.Predictor | artifact_runner.ArtifactRunner
    spatial_dims: int
    color_mode: str
    threshold: float
    summary: str


def load_model(args: argparse.Namespace) -> LoadedModel:
    """An artifact by its file name, else a run or export at the requested (or deploy.json's)
    setting, with the threshold to apply."""
    if artifact_format.artifact_format(args.model):
        given = [f"--{name}" for name in ("depth", "mode", "step", "dtype") if getattr(args, name)]
        if given:
            raise common.UsageError(
                f"{' '.join(given)} apply to run directories; an artifact is fixed at export"
            )
        try:
            runner = artifact_runner.load_artifact(args.model)
        except ImportError as error:  # onnxruntime (the optional deploy extra) is missing
            raise common.UsageError(str(error)) from None
        threshold = runner.threshold if args.threshold is None else args.threshold
        return LoadedModel(
            runner, runner.spatial_dims, runner.color_mode, threshold, runner.describe()
        )
    setting = deploy_choice.resolve(args.model, args.depth, args.mode)
    predictor = inference.load_predictor(
        args.model, depth=setting.depth, mode=setting.mode, step=args.step, dtype=args.dtype
    )
    print(f"predict: L{predictor.depth} {predictor.mode}: {setting.reason}")
    threshold, source = deploy_choice.resolve_threshold(
        args.model,
        predictor.config,
        setting,
        depth=predictor.depth,
        mode=predictor.mode,
        step=predictor.step,
        given=args.threshold,
    )
    if predictor.output_activation == "sigmoid":
        print(f"predict: threshold {threshold} ({source})")
    color_mode = predictor.config.get("data", {}).get("color_mode", "auto")
    summary = (
        f"{args.model} step {predictor.step}, depth {predictor.depth} ({predictor.mode}), "
        f"{predictor.num_params:,} parameters"
    )
    return LoadedModel(predictor, predictor.spec.spatial_dims, color_mode, threshold, summary)


def default_tile(model) -> list | None:
    """A run's default tile (`inference.predictor.default_tile`); artifacts predict whole images."""
    if isinstance(model, artifact_runner.ArtifactRunner):
        return None
    return model.default_tile


def training_resize(model) -> list | None:
    """The `data.resize` the model was trained with (a run's config or an artifact's sidecar)."""
    if isinstance(model, artifact_runner.ArtifactRunner):
        return model.resize
    return (model.config.get("data") or {}).get("resize")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    common.configure_logging()
    model, spatial_dims, color_mode, threshold, summary = load_model(args)
    if isinstance(model, inference.Predictor) and predict_volumes.takes_volumes(model):
        return predict_volumes.main(args, model)  # NIfTI in and out, with the inputs' geometry
    if spatial_dims == 3 and args.format == "png":
        raise common.UsageError("a 3D model writes volumes; use --format tiff or npy")
    tile = common.tile_options(
        default_tile(model) if args.tile is None else args.tile,
        overlap=args.overlap,
        blend=args.blend,
        batch_size=args.batch_size,
        border=args.border,
    )
    if isinstance(model, artifact_runner.ArtifactRunner):
        model.check_tile(tile)
    binary = model.output_activation == "sigmoid"
    output = pathlib.Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    if args.overlay:
        (output / "overlays").mkdir(exist_ok=True)

    files, failures = expand_inputs(args.inputs)
    print(f"predict: {len(files)} inputs, {summary}")
    resize_setting = training_resize(model)
    if resize_setting is not None:
        print(
            f"predict: images resized as in training ({resize.describe(resize_setting)}), "
            "masks written at each image's own size"
        )
    written, notes = 0, set()
    class_names = getattr(model, "config", {}).get("data", {}).get("class_names")
    # A run's predictor pads whole images to a few size buckets (few compiles for many sizes).
    options = {"bucket": True} if isinstance(model, inference.Predictor) else {}
    start = time.perf_counter()
    progress = tqdm.tqdm(files, unit="image", disable=not args.progress, file=sys.stderr)
    for path, name in zip(progress, unique_names(files), strict=True):
        try:
            image = image_io.read_image(path, spatial_dims, color_mode)
            image, note = match_channels(image, model.in_channels)
            if note and note not in notes:
                notes.add(note)
                progress.write(
                    f"predict: {note} for the {model.in_channels}-channel model",
                    file=sys.stderr,
                )
            model.check_image(image, str(path))
            # As in training (data.resize); the probabilities go back to the image's own size.
            network_input = resize.resize_image(image, resize_setting)
            # A run's predictor takes normalised images; an artifact normalises inside.
            network_input = model.normalize(network_input) if options else network_input
            probabilities = model.predict(network_input, tile=tile, tta=args.tta, **options)
            probabilities = resize.resize_image_to(probabilities, image.shape[:2])
            labels = model.postprocess(probabilities, threshold=threshold, min_size=args.min_size)
            write_mask(labels, output / name, args.format, binary=binary)
            if args.probabilities:
                np.save(output / f"{name}_probabilities.npy", probabilities)
            if args.overlay:
                picture = overlays.prediction_overlay(image, labels, class_names)
                Image.fromarray(picture).save(output / "overlays" / f"{name}.png")
            written += 1
        except (OSError, ValueError) as error:  # DataError is a ValueError
            message = str(error) if str(path) in str(error) else f"{path}: {error}"
            failures.append((str(path), message))
            progress.write(f"failed: {message}", file=sys.stderr)
    seconds = time.perf_counter() - start
    print(f"predict: wrote {written} masks to {output} in {seconds:.1f} s")
    if failures:
        print(f"predict: {len(failures)} inputs failed:", file=sys.stderr)
        for item, message in failures:
            print(
                f"  {message if message.startswith(item) else f'{item}: {message}'}",
                file=sys.stderr,
            )
        return common.EXIT_FAILED
    return common.EXIT_OK if written else common.EXIT_FAILED


def run(argv: Sequence[str] | None = None) -> int:
    return common.run_command("predict", main, argv)


if __name__ == "__main__":
    sys.exit(run())
