"""The synthetic_cells builder: counts, shapes, dtypes, value ranges, determinism."""

import numpy as np
import pytest

import unetjax.data as data
from unetjax.data import datasets


def _config(data_dir, **overrides):
    config = data.default_config()
    config.data_dir = str(data_dir)
    config.image_size, config.num_train, config.num_val, config.num_test = 40, 5, 2, 3
    config.patch_size = (32, 32)
    config.update(overrides)
    return config


def _split(config, split):
    reader = datasets.prepare(config).reader
    return list(reader.as_data_source(split=split))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_counts_shapes_dtypes_and_ranges(tmp_path, spatial_dims):
    size = 40 if spatial_dims == 2 else 24
    patch = (32, 32) if spatial_dims == 2 else (16, 16, 16)
    config = _config(tmp_path, spatial_dims=spatial_dims, image_size=size, patch_size=patch)
    info = data.prepare(config).info
    assert info.split_sizes == {"train": 5, "validation": 2, "test": 3}
    assert (info.task, info.num_classes, info.in_channels) == ("binary", 1, 1)
    assert (info.output_activation, info.spatial_dims) == ("sigmoid", spatial_dims)
    for example in _split(config, "test"):
        assert example["image"].shape == (size,) * spatial_dims + (1,)
        assert example["image"].dtype == np.float32
        assert example["image"].min() >= 0.0 and example["image"].max() <= 1.0
        assert example["mask"].shape == example["instances"].shape == (size,) * spatial_dims
        assert set(np.unique(example["mask"])) <= {0, 1}
        np.testing.assert_array_equal(example["mask"], example["instances"] > 0)
        # Nuclei-like: several objects covering a real but minority share of the image.
        assert example["instances"].max() >= 2
        assert 0.03 < example["mask"].mean() < 0.7


def test_nuclei_are_brighter_than_background(tmp_path):
    config = _config(tmp_path)
    data.prepare(config)
    for example in _split(config, "train"):
        image, mask = example["image"][..., 0], example["mask"].astype(bool)
        assert image[mask].mean() > image[~mask].mean() + 0.1


def test_same_seed_same_data_other_seed_other_data(tmp_path):
    first = _split(_config(tmp_path / "a"), "train")
    again = _split(_config(tmp_path / "b"), "train")
    other = _split(_config(tmp_path / "c", dataset_seed=1), "train")
    for a, b, c in zip(first, again, other, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["instances"], b["instances"])
        assert not np.array_equal(a["image"], c["image"])
