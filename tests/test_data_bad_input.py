"""Each kind of bad input is a DataError naming the file, raised by prepare, leaving nothing."""

import io
import pathlib

import numpy as np
import pytest
from PIL import Image

import unetjax.data as data
from unetjax.data.folders import examples


def write_png(path: pathlib.Path, array: np.ndarray) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


@pytest.fixture
def source(tmp_path):
    """Three good 20x20 image / binary mask pairs."""
    for i in range(3):
        write_png(tmp_path / "src/images" / f"{i}.png", np.full((20, 20), 50 * i, np.uint8))
        write_png(tmp_path / "src/masks" / f"{i}.png", np.zeros((20, 20), np.uint8))
    return tmp_path / "src"


def prepare_fails(tmp_path, source, match, **overrides):
    config = data.default_config()
    config.name, config.manual_dir = "image_folder", str(source)
    config.data_dir = str(tmp_path / "tfds")
    config.patch_size, config.val_fraction, config.test_fraction = (16, 16), 0.0, 0.0
    config.update(overrides)
    with pytest.raises(data.DataError, match=match):
        data.prepare(config)
    leftovers = list((tmp_path / "tfds").rglob("*")) if (tmp_path / "tfds").exists() else []
    assert leftovers == []


def test_unreadable_file(tmp_path, source):
    (source / "images/1.png").write_bytes(b"not an image at all")
    prepare_fails(tmp_path, source, r"images/1\.png: cannot read it")


def test_truncated_file(tmp_path, source):
    encoded = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 20), np.uint8)).save(
        encoded, format="PNG"
    )
    (source / "masks/2.png").write_bytes(encoded.getvalue()[: len(encoded.getvalue()) // 2])
    prepare_fails(tmp_path, source, r"masks/2\.png: cannot read it")


def test_image_without_a_mask(tmp_path, source):
    (source / "masks/0.png").unlink()
    prepare_fails(tmp_path, source, r"images/0\.png: image without a mask; expected .*masks/0\.\*")


def test_image_and_mask_sizes_differ(tmp_path, source):
    write_png(source / "masks/1.png", np.zeros((20, 18), np.uint8))
    prepare_fails(tmp_path, source, r"masks/1\.png: mask of size \(20, 18\); expected .*\(20, 20\)")


def test_mask_values_outside_the_declared_classes(tmp_path, source):
    write_png(source / "masks/2.png", np.full((20, 20), 7, np.uint8))
    prepare_fails(
        tmp_path,
        source,
        r"masks/2\.png: mask values \{7\} are outside the classes 0\.\.2",
        task="multiclass",
        num_classes=3,
    )


def test_binary_mask_with_a_third_value(tmp_path, source):
    write_png(source / "masks/0.png", np.full((20, 20), 128, np.uint8))
    prepare_fails(
        tmp_path,
        source,
        r"masks/0\.png: data.task=binary but its mask values are \{128\}.*mask_threshold=127",
        task="binary",
    )


def test_empty_folder(tmp_path):
    (tmp_path / "empty/images").mkdir(parents=True)
    (tmp_path / "empty/masks").mkdir()
    prepare_fails(tmp_path, tmp_path / "empty", r"images: empty folder")


def test_images_smaller_than_the_patch(tmp_path, source):
    prepare_fails(tmp_path, source, r"smaller than the patch \(32, 32\)", patch_size=(32, 32))


def test_failure_while_writing_leaves_nothing(tmp_path, source, monkeypatch):
    calls = []

    def flaky_load(sample, spec):
        calls.append(sample)
        if len(calls) == 2:
            raise data.DataError(f"{sample.image}: changed while preparing")
        return load(sample, spec)

    load = examples.load_example
    monkeypatch.setattr(examples, "load_example", flaky_load)
    prepare_fails(tmp_path, source, "changed while preparing")


def test_a_float_image_with_nan_or_inf_is_named_before_training(tmp_path, source):
    for index in range(3):  # float images in [0, 1], as normalize="unit" takes them
        (source / f"images/{index}.png").unlink()
        np.save(source / f"images/{index}.npy", np.full((20, 20), 0.5, np.float32))
    image = np.full((20, 20), 0.5, np.float32)
    image[3, 4], image[5, 6], image[7, 8] = np.nan, np.inf, -np.inf
    np.save(source / "images/1.npy", image)
    prepare_fails(tmp_path, source, r"images/1\.npy: 3 non-finite values \(NaN or inf\) of 400")
