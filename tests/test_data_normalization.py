"""Images are stored in their source dtype and normalised by the pipeline, predict and
evaluate with one function, checked against numpy formulas on the user's files."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tifffile

import unetjax.data as data
from tests import user_folders
from unetjax.data import normalization
from unetjax.data.volumes import intensity
from unetjax.inference import preprocessing

SIZES = [(40, 44), (36, 52), (48, 40), (44, 36)]


@pytest.mark.parametrize(
    "image,unit",
    [
        (np.array([[[0], [51], [255]]], np.uint8), [[[0.0], [0.2], [1.0]]]),
        (np.array([[[0], [13107], [65535]]], np.uint16), [[[0.0], [0.2], [1.0]]]),
        (np.array([[[0.0], [0.25], [1.0]]], np.float32), [[[0.0], [0.25], [1.0]]]),
    ],
)
def test_unit_divides_integers_by_their_dtype_maximum_and_keeps_floats(image, unit):
    np.testing.assert_allclose(normalization.normalize(image, "unit"), unit, rtol=1e-6)


def test_zscore_image_standardises_each_channel_of_the_image():
    image = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    unit = image / 255.0
    expected = (unit - unit.mean((0, 1))) / unit.std((0, 1))
    np.testing.assert_allclose(normalization.normalize(image, "zscore_image"), expected, atol=1e-5)


def test_zscore_dataset_uses_the_given_statistics():
    image = np.random.default_rng(1).integers(0, 65536, (5, 6, 2), dtype=np.uint16)
    stats = {"mean": [0.4, 0.6], "std": [0.2, 0.1]}
    expected = (image / 65535.0 - np.array([0.4, 0.6])) / np.array([0.2, 0.1])
    got = normalization.normalize(image, "zscore_dataset", stats)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", normalization.KINDS)
def test_the_same_code_runs_on_jax_arrays_inside_jit(kind):
    image = np.random.default_rng(2).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    stats = {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]}
    expected = normalization.normalize(image, kind, stats)
    jitted = jax.jit(lambda x: normalization.normalize(x, kind, stats))
    np.testing.assert_allclose(np.asarray(jitted(jnp.asarray(image))), expected, atol=1e-6)


def test_a_constant_image_becomes_zeros_not_nan():
    image = np.full((4, 4, 1), 7, np.uint8)
    np.testing.assert_array_equal(normalization.normalize(image, "zscore_image"), 0.0)


def test_a_nearly_flat_image_is_divided_by_its_own_sd_in_training_predict_and_artifacts():
    # One pixel of 5e-6 on zeros: sd 5e-7, between the floors of 1e-8 and 1e-6 that training
    # and exported artifacts once used; every path must divide by the true sd (float64 numpy).
    image = np.zeros((10, 10, 1), np.float32)
    image[3, 4, 0] = 5e-6
    exact = image.astype(np.float64)
    expected = (exact - exact.mean()) / exact.std()
    assert 1e-8 < exact.std() < 1e-6
    trained = normalization.normalize(image, "zscore_image")
    served = preprocessing.normalize(image[None], preprocessing.Normalization("zscore_image"))[0]
    stats = {"mean": [0.0], "std": [float(exact.std())]}
    dataset = preprocessing.Normalization("zscore_dataset", (0.0,), (float(exact.std()),))
    np.testing.assert_allclose(trained, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(served, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        normalization.standardize(image, "zscore_dataset", stats), exact / exact.std(), rtol=1e-4
    )
    np.testing.assert_allclose(
        preprocessing.normalize(image[None], dataset)[0], exact / exact.std(), rtol=1e-4
    )
    assert normalization.MIN_STD == preprocessing.MIN_STD == intensity.MIN_STD


def test_uint16_images_stay_uint16_on_disk_and_come_out_as_unit_floats(tmp_path):
    rng = np.random.default_rng(3)
    root = tmp_path / "src"
    images = {}
    (root / "images").mkdir(parents=True)
    for index, shape in enumerate(SIZES[:2]):
        images[f"{index}"] = rng.integers(0, 65536, (*shape, 1), dtype=np.uint16)
        tifffile.imwrite(root / "images" / f"{index}.tif", images[f"{index}"][..., 0])
        mask = user_folders.blobs(rng, shape)
        user_folders.save(root / "masks" / f"{index}.png", mask)
    config = user_folders.folder_config(tmp_path, root, val_fraction=0.0, test_fraction=0.0)
    dataset = data.prepare(config)
    assert dataset.summary["dtype"] == "uint16"
    for example in dataset.reader.as_data_source(split="train"):
        stem = str(example["id"], "utf-8")
        assert example["image"].dtype == np.uint16
        np.testing.assert_array_equal(example["image"], images[stem])
    for example in data.eval_examples(dataset, "train"):
        np.testing.assert_allclose(example["image"], images[example["id"]] / 65535.0, rtol=1e-6)


def test_images_of_two_bit_depths_are_refused(tmp_path):
    root = tmp_path / "src"
    user_folders.write_folder(root, SIZES[:2])
    (root / "images" / "case001.png").unlink()
    tifffile.imwrite(root / "images" / "case001.tif", np.zeros(SIZES[1], np.uint16))
    config = user_folders.folder_config(tmp_path, root, val_fraction=0.0, test_fraction=0.0)
    with pytest.raises(data.DataError, match=r"different pixel types \(uint8 in .*uint16 in"):
        data.prepare(config)


def test_float_images_outside_0_1_need_a_zscore_normalisation(tmp_path):
    root = tmp_path / "src"
    rng = np.random.default_rng(4)
    (root / "images").mkdir(parents=True)
    for index, shape in enumerate(SIZES[:2]):
        np.save(root / "images" / f"{index}.npy", rng.normal(0, 500, shape).astype(np.float32))
        user_folders.save(root / "masks" / f"{index}.png", user_folders.blobs(rng, shape))
    config = user_folders.folder_config(tmp_path, root, val_fraction=0.0, test_fraction=0.0)
    with pytest.raises(
        data.DataError, match=r"images with values .* \(stored as float32\).*zscore_image"
    ):
        data.prepare(config)
    config.normalize = "zscore_image"
    example = next(data.eval_examples(data.prepare(config), "train"))
    np.testing.assert_allclose(example["image"].mean(), 0.0, atol=1e-5)
    np.testing.assert_allclose(example["image"].std(), 1.0, atol=1e-4)


def stored_order(dataset, split):
    """The stems in the order the pipelines read them."""
    return [str(e["id"], "utf-8") for e in dataset.reader.as_data_source(split=split)]


@pytest.fixture(scope="module")
def rgb_folder(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("rgb")
    written = user_folders.write_folder(tmp_path / "src", [(48, 48)] * 6, channels=3)
    config = user_folders.folder_config(
        tmp_path, tmp_path / "src", val_fraction=0.34, test_fraction=0.0, patch_size=(32, 32)
    )
    return config, written


def test_zscore_dataset_batches_use_the_training_images_mean_and_sd(rgb_folder):
    config, written = rgb_folder
    config = config.copy_and_resolve_references()
    config.normalize = "zscore_dataset"
    dataset = data.prepare(config)
    train = np.concatenate(
        [written[s]["image"].reshape(-1, 3) / 255.0 for s in dataset.split_stems["train"]]
    )
    mean, sd = train.mean(0), train.std(0)
    batch = next(data.eval_batches(dataset, "validation", batch_size=2))
    for index, stem in enumerate(stored_order(dataset, "validation")):
        expected = (written[stem]["image"] / 255.0 - mean) / sd
        np.testing.assert_allclose(batch["image"][index], expected, rtol=1e-4, atol=1e-4)


def test_zscore_image_crops_are_normalised_like_their_whole_image(rgb_folder):
    config, written = rgb_folder
    config = config.copy_and_resolve_references()
    config.normalize, config.eval_patch_size = "zscore_image", (20, 24)
    dataset = data.prepare(config)
    batch = next(data.eval_batches(dataset, "validation", batch_size=2))
    for index, stem in enumerate(stored_order(dataset, "validation")):
        unit = written[stem]["image"] / 255.0
        whole = (unit - unit.mean((0, 1))) / unit.std((0, 1))
        np.testing.assert_allclose(batch["image"][index], whole[14:34, 12:36], atol=1e-4)
    patches = next(data.train_iterator(dataset, batch_size=2, seed=0))["image"]
    assert patches.shape == (2, 32, 32, 3) and patches.min() < -0.5 and np.isfinite(patches).all()
