"""Predict image files (PNG, TIFF, JPEG...) with any `inference.Model` and write masks.

Each image is read as in training (`image_io.read_image`, the model's colour mode), its
channels matched to the model's, resized as in training (`data.resize`) and predicted; the
probabilities go back to the image's own size, become labels and are written as PNG, TIFF or
npy, with the probabilities and an overlay when asked. `predict_images` runs the shared
per-file loop (`from_files.predict_from_files`) over a list of files.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import pathlib
from collections.abc import Iterator, Sequence

import numpy as np
import tifffile
from PIL import Image

from unetjax import overlays
from unetjax.data import image_io, resize
from unetjax.inference.from_files import FileResult, predict_from_files, unique_names
from unetjax.inference.model import Model
from unetjax.inference.tiling import TileOptions

FORMATS = ("png", "tiff", "npy")


@dataclasses.dataclass(frozen=True)
class ImageOutputs:
    """Where and what to write per image: masks in `format`, optionally `<name>_probabilities.npy`
    and `overlays/<name>.png` (image + contours)."""

    folder: pathlib.Path
    format: str = "png"
    probabilities: bool = False
    overlay: bool = False


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
    model = f"for the {channels}-channel model"
    if channels == 1 and have in (3, 4):
        gray = image[..., :3].mean(axis=-1, keepdims=True)
        return gray, f"{have}-channel images converted to grayscale {model}"
    if channels == 3 and have == 1:
        return np.repeat(image, 3, axis=-1), f"grayscale images repeated to RGB {model}"
    return image, None  # check_image names the mismatch


def predict_image_file(
    model: Model,
    path: pathlib.Path,
    name: str,
    outputs: ImageOutputs,
    *,
    tile: TileOptions | None = None,
    tta: bool = False,
    threshold: float = 0.5,
    min_size: int = 0,
) -> str | None:
    """Predicts the image at `path` and writes its outputs as `name`; returns a note on its
    channels when they were converted for the model."""
    image = image_io.read_image(path, model.spatial_dims, model.color_mode)
    image, note = match_channels(image, model.in_channels)
    model.check_image(image, str(path))
    # As in training (data.resize); the probabilities go back to the image's own size.
    network_input = resize.resize_image(image, model.training_resize)
    # Size buckets: a folder of varied sizes compiles a few shapes, not one per size.
    probabilities = model.predict(network_input, tile=tile, tta=tta, bucket=True)
    probabilities = resize.resize_image_to(probabilities, image.shape[:2])
    labels = model.postprocess(probabilities, threshold=threshold, min_size=min_size)
    binary = model.output_activation == "sigmoid"
    write_mask(labels, outputs.folder / name, outputs.format, binary=binary)
    if outputs.probabilities:
        np.save(outputs.folder / f"{name}_probabilities.npy", probabilities)
    if outputs.overlay:
        picture = overlays.prediction_overlay(image, labels, model.class_names)
        Image.fromarray(picture).save(outputs.folder / "overlays" / f"{name}.png")
    return note


def predict_images(
    model: Model, files: Sequence[pathlib.Path], outputs: ImageOutputs, **options
) -> Iterator[FileResult]:
    """Predicts every file into `outputs.folder` (names from the file stems, repeats numbered);
    `options` as `predict_image_file`'s (tile, tta, threshold, min_size)."""
    outputs.folder.mkdir(parents=True, exist_ok=True)
    if outputs.overlay:
        (outputs.folder / "overlays").mkdir(exist_ok=True)
    names = unique_names([image_io.file_stem(path) for path in files])
    predict_one = functools.partial(predict_image_file, model, outputs=outputs, **options)
    return predict_from_files(files, names, predict_one)
