"""Image / mask folders as users have them, written with PIL: lossy JPEG masks, anti-aliased
masks, a stray value, varied sizes, 1- and 3-channel images."""

import pathlib

import numpy as np
from PIL import Image

import unetjax.data as data


def blobs(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A binary {0, 255} uint8 mask of a few ellipses (polyp-like foreground)."""
    rows, cols = np.indices(shape)
    mask = np.zeros(shape, bool)
    for _ in range(3):
        centre = rng.uniform(0.2, 0.8, 2) * shape
        radii = rng.uniform(0.08, 0.25, 2) * min(shape)
        mask |= ((rows - centre[0]) / radii[0]) ** 2 + ((cols - centre[1]) / radii[1]) ** 2 < 1
    return mask.astype(np.uint8) * 255


def textured_image(rng: np.random.Generator, mask: np.ndarray, channels: int) -> np.ndarray:
    """uint8 (H, W[, 3]) tissue-like texture, brighter inside the mask."""
    base = rng.normal(90, 20, (*mask.shape, channels)) + (mask[..., None] > 0) * 60
    image = np.clip(base, 0, 255).astype(np.uint8)
    return image[..., 0] if channels == 1 else image


def antialiased(mask: np.ndarray) -> np.ndarray:
    """The mask drawn at twice the size and shrunk with a bilinear filter: grey edges."""
    big = Image.fromarray(mask).resize((mask.shape[1] * 2, mask.shape[0] * 2), Image.NEAREST)
    return np.asarray(big.resize((mask.shape[1], mask.shape[0]), Image.BILINEAR))


def save(path: pathlib.Path, array: np.ndarray, quality: int = 75) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        image.save(path, quality=quality)
    else:
        image.save(path)
    return path


def write_folder(
    root: pathlib.Path,
    sizes,
    *,
    channels: int = 1,
    mask_suffix: str = ".png",
    image_suffix: str = ".png",
    mask_of=None,
    seed: int = 0,
) -> dict[str, dict[str, np.ndarray]]:
    """images/<stem> and masks/<stem>, one pair per (H, W) in `sizes`; `mask_of(stem, mask)`
    turns the binary {0, 255} mask into what is saved. Returns the arrays as written."""
    rng = np.random.default_rng(seed)
    written = {}
    for index, shape in enumerate(sizes):
        stem = f"case{index:03d}"
        mask = blobs(rng, tuple(shape))
        image = textured_image(rng, mask, channels)
        saved_mask = mask if mask_of is None else mask_of(stem, mask)
        save(root / "images" / f"{stem}{image_suffix}", image)
        save(root / "masks" / f"{stem}{mask_suffix}", saved_mask)
        written[stem] = {"image": image, "mask": saved_mask}
    return written


def folder_config(tmp_path: pathlib.Path, root: pathlib.Path, **overrides):
    config = data.default_config()
    config.name = "image_folder"
    config.data_dir = str(tmp_path / "tfds")
    config.manual_dir = str(root)
    config.patch_size = (16, 16)
    config.update(overrides)
    return config


def read_back(path: pathlib.Path) -> np.ndarray:
    """What a user's file holds, as PIL decodes it."""
    with Image.open(path) as image:
        return np.asarray(image)
