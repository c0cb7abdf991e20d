"""The decathlon dataset through `data.prepare` and the grain pipelines: what the model is told,
the training patches (foreground oversampling at data.foreground_prob, fixed-shape batches) and
the evaluation batches (spacing and case ids for per-case metrics in mm)."""

import itertools

import nibabel as nib
import numpy as np
import pytest

from configs import decathlon_tiny
from unetjax import data
from unetjax.data import transforms
from unetjax.data.volumes import synthetic_decathlon
from unetjax.data.volumes import transforms as volume_transforms

TRAIN = ("case_000", "case_001", "case_003")
VALIDATION = ("case_002", "case_004")


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    return synthetic_decathlon.write_dataset(
        tmp_path_factory.mktemp("raw"), num_training=5, num_test=1, layout="nnunet"
    )


def data_config(raw, data_dir, **fields):
    config = decathlon_tiny.get_config().data
    config.manual_dir = str(raw)
    config.data_dir = str(data_dir)
    config.train_stems, config.val_stems, config.test_stems = TRAIN, VALIDATION, ()
    config.num_threads = 1
    for key, value in fields.items():
        config[key] = value
    return config


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tfds")


@pytest.fixture(scope="module")
def dataset(raw, data_dir):
    return data.prepare(data_config(raw, data_dir))


def test_prepare_refuses_a_second_normalisation_of_the_stored_volumes(raw, data_dir):
    # The volumes are z-scored when built; zscore_image on top would silently rescale them.
    with pytest.raises(data.DataError, match=r"data\.normalize='zscore_image'.*leave"):
        data.prepare(data_config(raw, data_dir, normalize="zscore_image"))


def test_the_summary_counts_the_label_voxels_of_the_volumes(dataset, raw):
    present = set()
    for stem in TRAIN + VALIDATION:
        label = np.asarray(nib.load(raw / "labelsTr" / f"{stem}.nii.gz").dataobj)
        present |= {int(k) for k in np.unique(label)}
    fractions = [entry["pixel_fraction"] for entry in dataset.summary["classes"]]
    assert dataset.summary["spatial_dims"] == 3 and dataset.summary["dtype"] == "float32"
    assert len(fractions) == 3 and sum(fractions) == pytest.approx(1.0)
    assert {k for k, f in enumerate(fractions) if f > 0} == present


def canonical_spacing(path):
    """nibabel's own RAS zooms, in our (D, H, W) = (k, j, i) order."""
    return nib.as_closest_canonical(nib.load(path)).header.get_zooms()[:3][::-1]


def test_prepare_describes_the_volumes_for_the_model(dataset):
    info = dataset.info
    assert (info.task, info.num_classes, info.in_channels, info.spatial_dims) == (
        "multiclass",
        3,
        2,
        3,
    )
    assert info.output_activation == "softmax"
    assert info.class_names == ("background", "organ", "lesion")
    assert info.split_sizes == {"train": 3, "validation": 2}


def test_training_batches_are_fixed_shape_patches_without_the_case_geometry(dataset):
    batches = data.train_iterator(dataset, batch_size=2, seed=0)
    for _ in range(3):
        batch = next(batches)
        assert set(batch) == {"image", "mask"}
        assert batch["image"].shape == (2, 8, 16, 16, 2)
        assert batch["mask"].shape == (2, 8, 16, 16)
        assert set(np.unique(batch["mask"])) <= {0, 1, 2}


def uniform_foreground_share(mask, patch):
    """The share of all patch positions (volumes larger than the patch) whose patch holds
    foreground, by brute force over every position."""
    positions = itertools.product(
        *(range(n - p + 1) for n, p in zip(mask.shape, patch, strict=True))
    )
    hits = [
        mask[tuple(slice(o, o + p) for o, p in zip(origin, patch, strict=True))].any()
        for origin in positions
    ]
    return float(np.mean(hits))


@pytest.mark.parametrize("foreground_prob", [0.0, 0.5, 1.0])
def test_the_share_of_patches_with_foreground_follows_foreground_prob(
    raw, data_dir, dataset, foreground_prob
):
    patch = (2, 4, 4)  # small, so that many uniform patches miss the organ
    config = data_config(raw, data_dir, patch_size=patch, augment=False)
    config.foreground_prob = foreground_prob
    opened = data.prepare(config)
    masks = [np.asarray(e["mask"]) for e in dataset.source("train")]
    assert all(m.shape[a] > patch[a] for m in masks for a in range(3))
    uniform = np.mean([uniform_foreground_share(m, patch) for m in masks])
    assert 0.2 < uniform < 0.8  # so the test can tell the settings apart
    expected = foreground_prob + (1 - foreground_prob) * uniform
    batch_size, num_batches = 3, 80  # whole epochs: every case equally often
    batches = data.train_iterator(opened, batch_size=batch_size, seed=1)
    seen = np.concatenate([next(batches)["mask"] for _ in range(num_batches)])
    share = float(np.mean(seen.reshape(len(seen), -1).max(axis=1) > 0))
    if foreground_prob == 1.0:
        assert share == 1.0
    else:
        sd = np.sqrt(expected * (1 - expected) / len(seen))
        assert abs(share - expected) < 4 * sd, (share, expected)


def test_evaluation_batches_carry_the_case_ids_and_the_training_spacing(raw, dataset):
    expected_spacing = np.median(
        [canonical_spacing(raw / f"labelsTr/{case}.nii.gz") for case in TRAIN], axis=0
    )
    ids = []
    for batch in data.eval_batches(dataset, "validation", batch_size=2):
        assert batch["image"].shape == (2, 16, 32, 32, 2)  # eval_patch_size holds every case
        for index in np.flatnonzero(batch["valid"]):
            np.testing.assert_allclose(batch["spacing"][index], expected_spacing, rtol=1e-6)
            ids.append(batch["id"][index].decode())
    assert sorted(ids) == sorted(VALIDATION)


def test_volume_intensity_augmentation_works_in_z_scores_without_clipping():
    rng = np.random.default_rng(0)
    image = rng.normal(0.0, 2.0, (6, 6, 6, 1)).astype(np.float32)  # far outside [0, 1]
    off = transforms.AugmentOptions()
    np.testing.assert_array_equal(
        volume_transforms.normalised_intensity_transform(image, off, rng), image
    )
    contrast = transforms.AugmentOptions(contrast_prob=1.0, contrast_range=(1.5, 1.5))
    stretched = volume_transforms.normalised_intensity_transform(image, contrast, rng)
    mean = image.mean()
    expected = np.clip(mean + 1.5 * (image - mean), image.min(), image.max())
    np.testing.assert_allclose(stretched, expected, rtol=1e-5, atol=1e-6)
    gamma = transforms.AugmentOptions(gamma_prob=1.0, gamma_range=(2.0, 2.0))
    curved = volume_transforms.normalised_intensity_transform(image, gamma, rng)
    low, high = image.min(), image.max()
    np.testing.assert_allclose(
        curved, low + (high - low) * ((image - low) / (high - low)) ** 2, rtol=1e-5, atol=1e-5
    )
    assert curved.min() == pytest.approx(low) and curved.max() == pytest.approx(high)


def test_a_volume_smaller_than_the_patch_is_padded_with_each_channels_minimum():
    rng = np.random.default_rng(0)
    image = np.stack([rng.uniform(1, 2, (2, 4, 4)), rng.uniform(-3, -1, (2, 4, 4))], -1)
    mask = np.zeros((2, 4, 4), np.uint8)
    mask[1, 2, 2] = 1
    element = {
        "image": image.astype(np.float32),
        "mask": mask,
        "locations": np.array([[1, 1, 2, 2]]),
    }
    config = decathlon_tiny.get_config().data
    config.update(patch_size=(4, 6, 6), augment=False, foreground_prob=1.0)
    patch = volume_transforms.VolumeTrainTransform(config).random_map(element, rng)
    inside = (slice(1, 3), slice(1, 5), slice(1, 5))  # the volume, centred in the patch
    np.testing.assert_array_equal(patch["image"][inside], element["image"])
    np.testing.assert_array_equal(patch["mask"][inside], mask)
    outside = np.ones((4, 6, 6), bool)
    outside[inside] = False
    np.testing.assert_array_equal(
        patch["image"][outside],
        np.tile(image.min(axis=(0, 1, 2)), (outside.sum(), 1)).astype(np.float32),
    )
    assert not patch["mask"][outside].any()


def test_the_summary_says_the_volumes_were_normalised_at_preparation_not_unit(dataset):
    stats = dataset.reader.info.metadata["normalisation"]["stats"][0]
    lines = dataset.summary_text().splitlines()
    normalize = [line for line in lines if line.startswith("  normalize")]
    assert len(normalize) == 1 and "unit" not in normalize[0]
    assert normalize[0].startswith("  normalize   at preparation: CT: clipped to ")
    assert f"{stats['percentile_00_5']:g}..{stats['percentile_99_5']:g}" in normalize[0]
    assert f"mean {stats['mean']:.4g}, sd {stats['std']:.4g}" in normalize[0]
    assert "T2: z-scored per case" in normalize[0]
    assert any(line.strip().startswith("in training: none") for line in lines)
