"""Reading image, mask and volume files into numpy arrays, naming the file on failure."""

import pathlib

import nibabel
import numpy as np
import tifffile
from PIL import Image

from unetjax.data.errors import DataError

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".npy", ".nii", ".nii.gz")


def file_stem(path: pathlib.Path) -> str:
    """The name without its (possibly double, as in .nii.gz) suffix."""
    name = path.name
    for suffix in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def is_image_file(path: pathlib.Path) -> bool:
    return path.is_file() and path.name.lower().endswith(IMAGE_SUFFIXES)


def read_array(path: pathlib.Path) -> np.ndarray:
    """The raw pixel array of a file (any supported format), fully decoded."""
    name = path.name.lower()
    try:
        if name.endswith(".npy"):
            return np.load(path, allow_pickle=False)
        if name.endswith((".tif", ".tiff")):
            return tifffile.imread(path)
        if name.endswith((".nii", ".nii.gz")):
            return _read_nifti(path)
        with Image.open(path) as image:
            image.load()
            if image.mode == "P":
                # Palette PNGs are label maps: keep the indices, not the colours.
                return np.asarray(image)
            if image.mode in ("I;16", "I;16B", "I"):
                return np.asarray(image).astype(np.int32)
            return np.asarray(image)
    except DataError:
        raise
    except Exception as error:
        raise DataError(
            f"{path}: cannot read it as an image ({type(error).__name__}: {error}); "
            "expected a complete PNG, TIFF, JPEG, .npy or NIfTI file"
        ) from error


def _read_nifti(path: pathlib.Path) -> np.ndarray:
    # NIfTI stores (x, y, z); we use (D, H, W) = (z, y, x), as `nifti_io` does.
    volume = np.asarray(nibabel.load(path).dataobj)
    return np.moveaxis(volume, (0, 1, 2), (2, 1, 0)) if volume.ndim >= 3 else volume


def to_channels_last(array: np.ndarray, spatial_dims: int, path: pathlib.Path) -> np.ndarray:
    """(*spatial, C): adds a channel axis to grayscale, drops alpha from RGBA."""
    if array.ndim == spatial_dims:
        return array[..., None]
    if array.ndim == spatial_dims + 1 and array.shape[-1] in (1, 2, 3, 4):
        return array[..., :3] if array.shape[-1] == 4 else array
    raise DataError(
        f"{path}: shape {array.shape} is not a {spatial_dims}D image; expected "
        f"{'(H, W)' if spatial_dims == 2 else '(D, H, W)'} with an optional channel axis"
    )


def normalise(array: np.ndarray) -> np.ndarray:
    """float32 in [0, 1]: uint8 divided by 255, anything else min-max scaled per image."""
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    array = array.astype(np.float32)
    low, high = float(array.min()), float(array.max())
    return (array - low) / (high - low) if high > low else np.zeros_like(array)


def read_image(path: pathlib.Path, spatial_dims: int, color_mode: str) -> np.ndarray:
    """An image as float32 (*spatial, C) in [0, 1]; color_mode "grayscale"/"rgb" converts."""
    image = normalise(to_channels_last(read_array(path), spatial_dims, path))
    if color_mode == "grayscale" and image.shape[-1] != 1:
        image = image[..., :3].mean(axis=-1, keepdims=True)
    elif color_mode == "rgb" and image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    return image


def read_label_map(path: pathlib.Path, spatial_dims: int) -> np.ndarray:
    """A mask file as an integer (*spatial) array; RGB masks must have equal channels."""
    array = read_array(path)
    if array.ndim == spatial_dims + 1 and array.shape[-1] in (3, 4):
        rgb = array[..., :3]
        if not (
            np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])
        ):
            raise DataError(
                f"{path}: colour mask; expected a single-channel label map (or equal RGB channels)"
            )
        array = rgb[..., 0]
    elif array.ndim == spatial_dims + 1 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != spatial_dims:
        raise DataError(f"{path}: mask of shape {array.shape}; expected {spatial_dims}D")
    if array.dtype == bool:
        return array.astype(np.int32)
    if not np.issubdtype(array.dtype, np.integer) and not np.array_equal(array, np.round(array)):
        raise DataError(f"{path}: mask has non-integer values; expected class indices")
    return array.astype(np.int32)


def binarise(labels: np.ndarray, path: pathlib.Path) -> np.ndarray:
    """A binary mask from {0, 1} or {0, 255} values as uint8 {0, 1}."""
    values = np.unique(labels)
    if np.isin(values, (0, 1)).all():
        return labels.astype(np.uint8)
    if np.isin(values, (0, 255)).all():
        return (labels == 255).astype(np.uint8)
    raise DataError(
        f"{path}: binary mask has values {_preview(values)}; expected {{0, 1}} or {{0, 255}}"
    )


def _preview(values: np.ndarray) -> str:
    shown = ", ".join(str(v) for v in values[:8])
    return "{" + shown + (", ..." if len(values) > 8 else "") + "}"
