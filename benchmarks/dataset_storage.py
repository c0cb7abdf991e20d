"""Disk size of a prepared image_folder dataset against its source files (polyp-like set).

Writes N RGB JPEG images of 332 to 1920 px (Kvasir-SEG-like sizes: most about 530x620, some
1072x1920) with JPEG masks, prepares them with `data.prepare`, and prints the source and
stored sizes and the preparation time:

    python -m benchmarks.dataset_storage [--images 200] [--json PATH]

The content is smooth colour fields with sensor noise, so compression ratios are those of
photographs rather than of random noise; the stored/source ratio is the figure to compare.
"""

import argparse
import json
import pathlib
import tempfile
import time

import numpy as np
from PIL import Image
from scipy import ndimage

import unetjax.data as data

# (share, (height range), (width range)): Kvasir-SEG's sizes run from 332x487 to 1072x1920.
SIZE_MIX = [
    (0.60, (529, 626), (573, 720)),
    (0.25, (900, 1080), (1000, 1350)),
    (0.10, (1064, 1080), (1280, 1920)),
    (0.05, (332, 400), (487, 560)),
]


def polyp_like(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """An RGB uint8 tissue-like image and its {0, 255} mask (one polyp-like ellipse)."""
    coarse = ndimage.gaussian_filter(rng.normal(size=(shape[0] // 16, shape[1] // 16, 3)), 2)
    field = ndimage.zoom(
        coarse, (shape[0] / coarse.shape[0], shape[1] / coarse.shape[1], 1), order=1
    )
    rows, cols = np.indices(shape)
    centre = rng.uniform(0.3, 0.7, 2) * shape
    radii = rng.uniform(0.1, 0.25, 2) * min(shape)
    mask = ((rows - centre[0]) / radii[0]) ** 2 + ((cols - centre[1]) / radii[1]) ** 2 < 1
    tint = np.array([170.0, 80.0, 70.0])
    image = tint + 40 * field[: shape[0], : shape[1]] + mask[..., None] * [30, 15, 5]
    image += rng.normal(0, 3, image.shape)  # sensor noise
    return np.clip(image, 0, 255).astype(np.uint8), mask.astype(np.uint8) * 255


def sample_shape(rng: np.random.Generator) -> tuple[int, int]:
    shares = [share for share, _, _ in SIZE_MIX]
    _, heights, widths = SIZE_MIX[rng.choice(len(SIZE_MIX), p=shares)]
    return int(rng.integers(*heights)), int(rng.integers(*widths))


def folder_bytes(path: pathlib.Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write the figures to this file")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as workdir:
        root = pathlib.Path(workdir) / "polyps"
        (root / "images").mkdir(parents=True)
        (root / "masks").mkdir()
        for index in range(args.images):
            image, mask = polyp_like(rng, sample_shape(rng))
            Image.fromarray(image).save(root / "images" / f"{index:04d}.jpg", quality=90)
            Image.fromarray(mask).save(root / "masks" / f"{index:04d}.jpg", quality=75)
        config = data.default_config()
        config.name, config.manual_dir = "image_folder", str(root)
        config.data_dir = str(pathlib.Path(workdir) / "tfds")
        if "mask_threshold" in config:  # the JPEG masks are binary masks with JPEG noise
            config.mask_threshold = 127
        start = time.perf_counter()
        data.prepare(config)
        seconds = time.perf_counter() - start
        figures = {
            "images": args.images,
            "source_mb": folder_bytes(root) / 1e6,
            "stored_mb": folder_bytes(pathlib.Path(config.data_dir)) / 1e6,
            "prepare_s": seconds,
        }
    figures["stored_over_source"] = figures["stored_mb"] / figures["source_mb"]
    print(
        f"{figures['images']} images: source {figures['source_mb']:.1f} MB, stored "
        f"{figures['stored_mb']:.1f} MB ({figures['stored_over_source']:.2f} x), prepared in "
        f"{seconds:.1f} s"
    )
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
