"""image_folder, isbi2012_em and dsb2018_nuclei: real files in, the same arrays out."""

import pathlib

import numpy as np
import pytest
import tensorflow_datasets as tfds
import tifffile
from PIL import Image

import unetjax.data as data
from unetjax.data import datasets

SHARED = pathlib.Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def write(path: pathlib.Path, array: np.ndarray) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".tif", ".tiff"):
        tifffile.imwrite(path, array)
    elif path.suffix == ".npy":
        np.save(path, array)
    else:
        Image.fromarray(array).save(path)
    return path


def folder_config(tmp_path, root, **overrides):
    config = data.default_config()
    config.name = "image_folder"
    config.data_dir = str(tmp_path / "tfds")
    config.manual_dir = str(root)
    config.patch_size = (16, 16)
    config.update(overrides)
    return config


def by_id(config, split):
    reader = datasets.prepare(config).reader
    return {str(e["id"], "utf-8"): e for e in reader.as_data_source(split=split)}


def all_examples(config, info):
    return {k: v for split in info.split_sizes for k, v in by_id(config, split).items()}


def test_binary_png_round_trip_and_fraction_splits(tmp_path):
    rng = np.random.default_rng(0)
    images, masks = {}, {}
    for i in range(10):
        images[f"s{i}"] = rng.integers(0, 256, (20, 24), dtype=np.uint8)
        masks[f"s{i}"] = (rng.random((20, 24)) > 0.5).astype(np.uint8) * 255
        write(tmp_path / "src/images" / f"s{i}.png", images[f"s{i}"])
        write(tmp_path / "src/masks" / f"s{i}.png", masks[f"s{i}"])
    config = folder_config(tmp_path, tmp_path / "src", val_fraction=0.2, test_fraction=0.1)
    info = data.prepare(config).info
    assert (info.task, info.num_classes, info.in_channels) == ("binary", 1, 1)
    assert info.split_sizes == {"train": 7, "validation": 2, "test": 1}
    examples = all_examples(config, info)
    assert sorted(examples) == sorted(images)
    for stem, example in examples.items():
        # Stored as the files hold them: uint8 stays uint8 (the pipeline makes floats).
        assert example["image"].dtype == np.uint8
        np.testing.assert_array_equal(example["image"][..., 0], images[stem])
        np.testing.assert_array_equal(example["mask"], masks[stem] // 255)


def test_rgb_tiff_with_class_index_masks_is_multiclass(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(4):
        write(tmp_path / "src/images" / f"{i}.tif", rng.integers(0, 256, (18, 18, 3), np.uint8))
        mask = np.zeros((18, 18), np.uint8)
        mask[:6], mask[6:12] = 2, 1 + (i % 2)
        write(tmp_path / "src/masks" / f"{i}.tif", mask)
    config = folder_config(tmp_path, tmp_path / "src", val_fraction=0.0, test_fraction=0.0)
    info = data.prepare(config).info
    assert (info.task, info.num_classes, info.in_channels) == ("multiclass", 3, 3)
    assert info.output_activation == "softmax"
    batch = next(data.train_iterator(data.prepare(config), batch_size=2, seed=0))
    assert batch["image"].shape == (2, 16, 16, 3)
    assert set(np.unique(batch["mask"])) <= {0, 1, 2}


def test_per_class_masks_are_multilabel(tmp_path):
    for i in range(3):
        write(tmp_path / "src/images" / f"{i}.png", np.full((16, 16), 40 * i, np.uint8))
        first, second = np.zeros((16, 16), np.uint8), np.zeros((16, 16), np.uint8)
        first[:8], second[4:12] = 255, 1
        write(tmp_path / "src/masks/cell" / f"{i}.png", first)
        write(tmp_path / "src/masks/edge" / f"{i}.png", second)
    config = folder_config(
        tmp_path, tmp_path / "src", mask_layout="per_class", val_fraction=0.0, test_fraction=0.0
    )
    dataset = data.prepare(config)
    info = dataset.info
    assert (info.task, info.num_classes, info.class_names) == ("multilabel", 2, ("cell", "edge"))
    classes = dataset.summary["classes"]
    assert [(c["name"], c["pixel_fraction"]) for c in classes] == [("cell", 0.5), ("edge", 0.5)]
    assert dataset.summary["foreground_fraction"] == 0.75  # rows 0..11 of 16 carry a label
    assert info.output_activation == "sigmoid"
    np.testing.assert_array_equal(
        by_id(config, "train")["1"]["mask"], np.stack([first, second > 0], -1) > 0
    )
    batch = next(data.train_iterator(data.prepare(config), batch_size=2, seed=0))
    assert batch["mask"].shape == (2, 16, 16, 2) and batch["mask"].dtype == np.int32


def test_user_split_lists(tmp_path):
    for stem in "abcde":
        write(tmp_path / "src/images" / f"{stem}.png", np.zeros((16, 16), np.uint8))
        write(tmp_path / "src/masks" / f"{stem}.png", np.zeros((16, 16), np.uint8))
    config = folder_config(
        tmp_path, tmp_path / "src", train_stems=("a", "b"), val_stems=("c",), test_stems=("e",)
    )
    info = data.prepare(config).info
    assert info.split_sizes == {"train": 2, "validation": 1, "test": 1}
    assert sorted(by_id(config, "train")) == ["a", "b"] and list(by_id(config, "test")) == ["e"]


def test_3d_volumes_from_npy_and_multipage_tiff(tmp_path):
    rng = np.random.default_rng(2)
    volumes = {}
    for i, suffix in enumerate((".npy", ".tif", ".npy")):
        volumes[str(i)] = rng.integers(0, 256, (6, 16, 16), dtype=np.uint8)
        write(tmp_path / "src/images" / f"{i}{suffix}", volumes[str(i)])
        write(tmp_path / "src/masks" / f"{i}{suffix}", (volumes[str(i)] > 128).astype(np.uint8))
    config = folder_config(
        tmp_path,
        tmp_path / "src",
        spatial_dims=3,
        patch_size=(4, 8, 8),
        val_fraction=0.0,
        test_fraction=0.0,
    )
    info = data.prepare(config).info
    assert info.spatial_dims == 3 and info.split_sizes == {"train": 3}
    for stem, example in by_id(config, "train").items():
        np.testing.assert_array_equal(example["image"][..., 0], volumes[stem])
        np.testing.assert_array_equal(example["mask"], volumes[stem] > 128)
    batch = next(data.train_iterator(data.prepare(config), batch_size=2, seed=0))
    assert batch["image"].shape == (2, 4, 8, 8, 1) and batch["mask"].shape == (2, 4, 8, 8)


def test_dsb2018_merges_nuclei_and_keeps_instances(tmp_path):
    for sample in ("aa", "bb"):
        write(
            tmp_path / "dsb" / sample / "images" / f"{sample}.png",
            np.full((20, 20, 4), 90, np.uint8),
        )
        for k, rows in enumerate((slice(2, 6), slice(10, 14))):
            nucleus = np.zeros((20, 20), np.uint8)
            nucleus[rows, 3:9] = 255
            write(tmp_path / "dsb" / sample / "masks" / f"n{k}.png", nucleus)
    config = folder_config(
        tmp_path, tmp_path / "dsb", name="dsb2018_nuclei", val_fraction=0.0, test_fraction=0.0
    )
    info = data.prepare(config).info
    assert (info.task, info.in_channels, info.split_sizes) == ("binary", 3, {"train": 2})
    example = by_id(config, "train")["aa"]
    expected = np.zeros((20, 20), np.int32)
    expected[2:6, 3:9], expected[10:14, 3:9] = 1, 2
    np.testing.assert_array_equal(example["instances"], expected)
    np.testing.assert_array_equal(example["mask"], expected > 0)


@pytest.mark.parametrize("foreground", ["membrane", "interior"])
def test_isbi2012_foreground_option(tmp_path, foreground):
    mask = np.full((16, 16), 255, np.uint8)
    mask[:, 7:9] = 0  # a membrane between two cells
    for i in range(2):
        write(tmp_path / "isbi/images" / f"{i:02d}.png", np.zeros((16, 16), np.uint8))
        write(tmp_path / "isbi/masks" / f"{i:02d}.png", mask)
    config = folder_config(
        tmp_path,
        tmp_path / "isbi",
        name="isbi2012_em",
        isbi_foreground=foreground,
        val_fraction=0.0,
        test_fraction=0.0,
    )
    data.prepare(config)
    example = by_id(config, "train")["00"]
    np.testing.assert_array_equal(
        example["mask"], (mask == 0) if foreground == "membrane" else (mask == 255)
    )
    assert example["instances"].max() == 2  # the two cells either side of the membrane


@pytest.mark.skipif(not (SHARED / "isbi2012_membrane").is_dir(), reason="no ../shared/data")
def test_shared_isbi2012_through_image_folder_and_its_builder(tmp_path):
    root = SHARED / "isbi2012_membrane"
    config = folder_config(tmp_path, root, patch_size=(96, 96))
    info = data.prepare(config).info
    assert info.split_sizes == {"train": 24, "validation": 3, "test": 3}
    assert (info.task, info.in_channels) == ("binary", 1)
    example = by_id(config, "test")
    stem, first = sorted(example.items())[0]
    raw_mask = np.asarray(Image.open(root / "masks" / f"{stem}.png"))
    np.testing.assert_array_equal(first["mask"], raw_mask == 255)
    np.testing.assert_array_equal(
        first["image"][..., 0], np.asarray(Image.open(root / "images" / f"{stem}.png"))
    )
    membrane = folder_config(tmp_path, root, name="isbi2012_em", patch_size=(96, 96))
    data.prepare(membrane)
    membrane_example = by_id(membrane, "test")[stem]
    np.testing.assert_array_equal(membrane_example["mask"], raw_mask == 0)


def test_catalog_dataset_without_tensorflow_is_a_clear_error(tmp_path):
    config = data.default_config()
    config.name, config.data_dir = "oxford_iiit_pet", str(tmp_path)
    config.task, config.num_classes = "multiclass", 3
    with pytest.raises(data.DataError, match="TensorFlow"):
        data.prepare(config)


class PetsLikeCatalog(tfds.core.GeneratorBasedBuilder):
    """A catalog-style dataset: other feature names, trimap labels 1..3, an (H, W, 1) mask."""

    VERSION = tfds.core.Version("1.0.0")
    code_path = None  # nothing to download, no checksums file

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "photo": tfds.features.Tensor(shape=(12, 12, 3), dtype=np.uint8),
                    "trimap": tfds.features.Tensor(shape=(12, 12, 1), dtype=np.uint8),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(3), "test": self._generate_examples(1)}

    def _generate_examples(self, count):
        for i in range(count):
            trimap = np.ones((12, 12, 1), np.uint8)
            trimap[4:8], trimap[8:] = 2, 3
            yield i, {"photo": np.full((12, 12, 3), 60 * i, np.uint8), "trimap": trimap}


def test_prepared_catalog_dataset_is_read_without_tensorflow(tmp_path):
    PetsLikeCatalog(data_dir=tmp_path, file_format="array_record").download_and_prepare(
        download_dir=tmp_path / "downloads"
    )
    config = data.default_config()
    config.name, config.data_dir = "pets_like_catalog", str(tmp_path)
    config.image_key, config.mask_key, config.label_offset = "photo", "trimap", 1
    config.task, config.num_classes, config.patch_size = "multiclass", 3, (8, 8)
    info = data.prepare(config).info
    assert (info.in_channels, info.split_sizes) == (3, {"train": 3, "test": 1})
    batch = next(data.eval_batches(data.prepare(config), "test", batch_size=1))
    expected = np.zeros((12, 12), np.int32)
    expected[4:8], expected[8:] = 1, 2
    np.testing.assert_array_equal(batch["mask"][0], expected)
    assert batch["image"].shape == (1, 12, 12, 3) and batch["image"].max() == 0.0
    assert set(
        np.unique(next(data.train_iterator(data.prepare(config), batch_size=2, seed=0))["mask"])
    ) <= {
        0,
        1,
        2,
    }
