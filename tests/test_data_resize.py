"""data.resize: images as PIL resizes them (bilinear), masks by nearest neighbour, applied at
preparation and recorded; the same functions serve predict."""

import numpy as np
import pytest
from PIL import Image

import unetjax.data as data
from tests import user_folders
from unetjax.data import resize

SIZES = [(40, 52), (300, 280), (120, 130), (64, 200), (90, 90)]


def test_images_resize_as_pil_resizes_them():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (61, 83), dtype=np.uint8)
    rgb = rng.integers(0, 256, (61, 83, 3), dtype=np.uint8)
    for size in [(30, 41), (120, 90)]:
        expected = np.asarray(Image.fromarray(grey).resize(size[::-1], Image.BILINEAR))
        got = resize.resize_image_to(grey[..., None], size)[..., 0]
        assert got.dtype == np.uint8 and np.abs(got.astype(int) - expected).max() <= 1
        expected = np.asarray(Image.fromarray(rgb).resize(size[::-1], Image.BILINEAR))
        got = resize.resize_image_to(rgb, size)
        assert np.abs(got.astype(int) - expected).max() <= 1


def assert_nearest_like_pil(got: np.ndarray, labels: np.ndarray, size) -> None:
    """Equal to PIL's NEAREST, except in rows / columns whose pixel centres fall exactly on a
    source pixel edge (PIL accumulates its coordinates and may land just below the edge)."""
    expected = np.asarray(Image.fromarray(labels).resize(size[::-1], Image.NEAREST))
    clear = []
    for axis in (0, 1):
        centres = (np.arange(size[axis]) + 0.5) * labels.shape[axis] / size[axis]
        clear.append(np.abs(centres - np.round(centres)) > 1e-9)
    keep = clear[0][:, None] & clear[1][None, :]
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got[keep], expected[keep])


def test_masks_resize_by_nearest_neighbour_as_pil_does():
    labels = np.random.default_rng(1).choice([0, 3, 7], (40, 52)).astype(np.uint8)
    for size in [(20, 23), (74, 90), (50, 31), (32, 42)]:
        got = resize.resize_mask_to(labels, size)
        assert_nearest_like_pil(got, labels, size)
        assert set(np.unique(got)) <= {0, 3, 7}


def test_shorter_side_keeps_the_aspect_ratio():
    assert resize.target_size((300, 150), ("shorter_side", 64)) == (128, 64)
    assert resize.target_size((40, 52), ("shorter_side", 32)) == (32, 42)  # 41.6 rounds up
    assert resize.target_size((40, 52), (24, 24)) == (24, 24)
    assert resize.target_size((40, 52), None) == (40, 52)


def test_probabilities_go_back_to_the_original_size():
    probabilities = np.random.default_rng(2).random((32, 42, 3)).astype(np.float32)
    back = resize.resize_image_to(probabilities, (40, 52))
    assert back.shape == (40, 52, 3) and back.dtype == np.float32
    assert probabilities.min() <= back.min() and back.max() <= probabilities.max()


@pytest.mark.parametrize("setting", [("shorter_side", 32), (36, 44)])
def test_preparation_stores_resized_images_and_records_the_setting(tmp_path, setting):
    written = user_folders.write_folder(tmp_path / "src", SIZES, channels=3)
    config = user_folders.folder_config(
        tmp_path, tmp_path / "src", val_fraction=0.2, test_fraction=0.0, resize=setting
    )
    dataset = data.prepare(config)
    summary = dataset.summary
    assert summary["resize"] == list(setting)
    train = summary["splits"]["train"]
    originals = np.array([written[s]["image"].shape[:2] for s in dataset.split_stems["train"]])
    assert train["source_size_min"] == originals.min(0).tolist()
    assert train["source_size_max"] == originals.max(0).tolist()
    for split in dataset.info.split_sizes:
        for example in dataset.reader.as_data_source(split=split):
            original = written[str(example["id"], "utf-8")]
            height, width = original["image"].shape[:2]
            if setting[0] == "shorter_side":
                scale = 32 / min(height, width)
                expected = (round(height * scale), round(width * scale))
            else:
                expected = setting
            assert example["image"].shape == (*expected, 3) and example["image"].dtype == np.uint8
            assert_nearest_like_pil(example["mask"] * 255, original["mask"], expected)
    assert dataset.info.uniform_size["train"] == (setting[0] != "shorter_side")
    assert "resized     " in dataset.summary_text()


def test_a_fixed_resize_lets_varied_images_be_batched(tmp_path):
    user_folders.write_folder(tmp_path / "src", SIZES)
    config = user_folders.folder_config(
        tmp_path, tmp_path / "src", val_fraction=0.4, test_fraction=0.0, resize=(24, 28)
    )
    batch = next(data.eval_batches(data.prepare(config), "validation", batch_size=2))
    assert batch["image"].shape == (2, 24, 28, 1) and batch["valid"].all()


def pil_resize(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, C) float32 resized channel by channel with PIL's bilinear filter."""
    channels = [
        np.asarray(Image.fromarray(array[..., c]).resize(size[::-1], Image.Resampling.BILINEAR))
        for c in range(array.shape[-1])
    ]
    return np.stack(channels, axis=-1)


def test_predict_resizes_as_in_training_and_writes_masks_at_each_images_size(tmp_path, capsys):
    from tests.test_inference import make_tiny_run, tiny_config
    from unetjax import inference
    from unetjax.cli import predict

    config = tiny_config()
    config.data.resize = (32, 32)
    make_tiny_run(tmp_path / "run", config)
    rng = np.random.default_rng(4)
    images = {}
    for index, shape in enumerate([(40, 52), (64, 48)]):
        images[f"image{index}"] = (rng.random(shape) * 255).astype(np.uint8)
        Image.fromarray(images[f"image{index}"]).save(tmp_path / f"image{index}.png")
    argv = ["--model", str(tmp_path / "run"), "--output", str(tmp_path / "out"), "--no-progress"]
    assert predict.main([*argv, str(tmp_path / "image0.png"), str(tmp_path / "image1.png")]) == 0
    assert "images resized as in training (32x32)" in capsys.readouterr().out

    predictor = inference.load_predictor(tmp_path / "run")
    for name, image in images.items():
        written = np.asarray(Image.open(tmp_path / "out" / f"{name}.png"))
        assert written.shape == image.shape
        small = pil_resize(image[..., None].astype(np.float32) / 255, (32, 32))
        probabilities = pil_resize(predictor.predict(small), image.shape)
        expected = probabilities[..., 0] > 0.5
        assert np.mean((written > 0) == expected) > 0.999
