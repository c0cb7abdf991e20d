"""Photos stored as the sensor saw them, with an EXIF orientation tag that names the turn a viewer
applies: they are read upright (as Pillow's `ImageOps.exif_transpose` shows them), so upright
masks land on the right pixels, and the dataset summary says how many files were turned."""

import pathlib

import numpy as np
from PIL import Image

import unetjax.data as data
from tests.user_folders import blobs, folder_config, textured_image
from unetjax.data import image_io

ORIENTATION = 0x0112  # the EXIF tag number
ROTATE_90_CLOCKWISE = 6  # its value when the viewer turns the stored pixels 90 deg clockwise


def save_with_orientation(path: pathlib.Path, stored: np.ndarray, orientation: int) -> None:
    """A JPEG (or PNG) of `stored` pixels carrying an EXIF orientation tag."""
    path.parent.mkdir(parents=True, exist_ok=True)
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    Image.fromarray(stored).save(path, exif=exif, quality=95)


def stored_pixels(path: pathlib.Path) -> np.ndarray:
    """The pixels as the file stores them, without applying the tag."""
    with Image.open(path) as image:
        return np.asarray(image)


def test_a_jpeg_with_an_exif_rotation_is_read_upright(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "photo.jpg"
    save_with_orientation(path, rng.integers(0, 256, (20, 30), np.uint8), ROTATE_90_CLOCKWISE)
    upright = np.rot90(stored_pixels(path), k=-1)  # numpy's clockwise quarter turn
    np.testing.assert_array_equal(image_io.read_array(path), upright)
    # predict reads images through read_image: the same upright pixels, in unit scale.
    read = image_io.read_image(path, spatial_dims=2, color_mode="grayscale")
    np.testing.assert_allclose(read[..., 0], upright / 255.0, atol=1e-6)


def test_a_mask_with_an_exif_rotation_is_read_upright(tmp_path):
    path = tmp_path / "mask.png"
    stored = np.zeros((12, 16), np.uint8)
    stored[:3, :5] = 1
    save_with_orientation(path, stored, ROTATE_90_CLOCKWISE)
    np.testing.assert_array_equal(image_io.read_label_map(path, 2), np.rot90(stored, k=-1))


def test_a_file_without_a_tag_is_read_as_stored(tmp_path):
    path = tmp_path / "plain.jpg"
    Image.fromarray(np.full((8, 10), 90, np.uint8)).save(path)
    assert image_io.exif_orientation(path) == 1
    assert image_io.read_array(path).shape == (8, 10)


def test_rotated_photos_with_upright_masks_are_prepared_aligned_and_counted(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "photos"
    for index in range(3):
        mask = blobs(rng, (32, 32))
        upright = textured_image(rng, mask, channels=1)
        (root / "masks").mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save(root / "masks" / f"p{index}.png")
        # Stored a quarter turn counter-clockwise; the tag turns it back clockwise.
        save_with_orientation(
            root / "images" / f"p{index}.jpg", np.rot90(upright, k=1), ROTATE_90_CLOCKWISE
        )
    config = folder_config(tmp_path, root, val_fraction=0.0, patch_size=(32, 32))
    dataset = data.prepare(config)
    for example in dataset.source("train"):
        image, mask = example["image"][..., 0].astype(float), example["mask"] > 0
        # textured_image makes the foreground 60 grey levels brighter.
        assert image[mask].mean() - image[~mask].mean() > 40
    assert dataset.summary["exif_oriented"] == 3
    assert "3 files turned upright by an EXIF orientation tag" in dataset.summary_text()
