"""Reading image, mask and volume files into numpy arrays, naming the file on failure."""

import pathlib

import nibabel
import numpy as np
import tifffile
from PIL import ExifTags, Image, ImageOps

from unetjax.data import normalization
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


def exif_orientation(path: pathlib.Path) -> int:
    """The EXIF orientation tag of a PNG or JPEG file (1, upright, when it has none): cameras
    store photos as the sensor saw them and name the turn that shows them upright. For files
    `read_array` has read (it names those it cannot)."""
    if not path.name.lower().endswith((".png", ".jpg", ".jpeg")):
        return 1
    with Image.open(path) as image:
        return int(image.getexif().get(ExifTags.Base.Orientation, 1))


def read_array(path: pathlib.Path) -> np.ndarray:
    """The raw pixel array of a file (any supported format), fully decoded; PNG and JPEG
    files are turned upright by their EXIF orientation tag, as viewers show them."""
    name = path.name.lower()
    try:
        if name.endswith(".npy"):
            return np.load(path, allow_pickle=False)
        if name.endswith((".tif", ".tiff")):
            return tifffile.imread(path)
        if name.endswith((".nii", ".nii.gz")):
            return _read_nifti(path)
        with Image.open(path) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened)
            if image.mode == "P":
                # Palette PNGs are label maps: keep the indices, not the colours.
                return np.asarray(image)
            if image.mode.startswith("I;16"):
                return np.asarray(image).astype(np.uint16)
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


def storage_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype an image is stored in: uint8 and uint16 as they are, anything else float32."""
    return np.dtype(dtype) if np.dtype(dtype) in (np.uint8, np.uint16) else np.dtype(np.float32)


def read_raw_image(path: pathlib.Path, spatial_dims: int, color_mode: str) -> np.ndarray:
    """An image (*spatial, C) in its storage dtype, values unscaled; color_mode "grayscale"
    (the channel mean, rounded for integer images) or "rgb" converts. Non-finite values (in
    float TIFF, .npy or NIfTI files) are a DataError: they would only show as a NaN loss."""
    image = to_channels_last(read_array(path), spatial_dims, path)
    if np.issubdtype(image.dtype, np.inexact) and not np.isfinite(image).all():
        count = int((~np.isfinite(image)).sum())
        raise DataError(
            f"{path}: {count} non-finite values (NaN or inf) of {image.size}; expected finite "
            "intensities: replace them in the file"
        )
    dtype = storage_dtype(image.dtype)
    if color_mode == "grayscale" and image.shape[-1] != 1:
        gray = image[..., :3].astype(np.float64).mean(axis=-1, keepdims=True)
        image = np.round(gray) if np.issubdtype(dtype, np.integer) else gray
    elif color_mode == "rgb" and image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    return image.astype(dtype)


def read_image(path: pathlib.Path, spatial_dims: int, color_mode: str) -> np.ndarray:
    """An image as float32 (*spatial, C) in unit scale (`normalization.to_unit`)."""
    return normalization.to_unit(read_raw_image(path, spatial_dims, color_mode))


def read_label_map(
    path: pathlib.Path, spatial_dims: int, *, grey_from_colour: bool = False
) -> np.ndarray:
    """A mask file as an integer (*spatial) array.

    RGB masks must have equal channels, unless `grey_from_colour` (binary masks thresholded
    by data.mask_threshold) takes their rounded mean, as for a grey mask saved as colour JPEG.
    """
    array = read_array(path)
    if array.ndim == spatial_dims + 1 and array.shape[-1] in (3, 4):
        rgb = array[..., :3]
        if grey_from_colour:
            rgb = np.round(rgb.astype(np.float64).mean(axis=-1, keepdims=True))
        elif not (
            np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])
        ):
            raise DataError(
                f"{path}: colour mask (its RGB channels differ); expected a single-channel "
                "label map; for a binary mask saved in colour set data.mask_threshold=127"
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
