"""The dataset fingerprint against numpy on files read back with nibabel / PIL."""

import shutil

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from unetjax.data.volumes import synthetic_decathlon
from unetjax.planning import fingerprint


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return synthetic_decathlon.write_dataset(
        tmp_path_factory.mktemp("msd"), num_training=3, num_test=0
    )


@pytest.fixture(scope="module")
def printed(folder):
    return fingerprint.fingerprint(str(folder))


def _cases(folder):
    for label_path in sorted((folder / "labelsTr").glob("*.nii.gz")):
        stem = label_path.name[: -len(".nii.gz")]
        channels = [
            nib.load(folder / "imagesTr" / f"{stem}_{c:04d}.nii.gz").get_fdata() for c in (0, 1)
        ]
        yield stem, nib.load(label_path), channels


def test_spacing_and_shape_per_case_are_the_files_in_ras_order(folder, printed):
    by_id = {case["id"]: case for case in printed["cases"]}
    for stem, label, _ in _cases(folder):
        canonical = nib.as_closest_canonical(label)  # (R, A, S); ours is (S, A, R)
        assert by_id[stem]["shape_before"] == list(canonical.shape[::-1])
        np.testing.assert_allclose(
            by_id[stem]["spacing"], canonical.header.get_zooms()[::-1], rtol=1e-4
        )


def test_shape_after_resampling_keeps_each_case_extent(printed):
    target = np.array(printed["target_spacing"])
    for case in printed["cases"]:
        extent = np.array(case["shape_before"]) * np.array(case["spacing"])
        expected = np.maximum(1, np.round(extent / target)).astype(int)
        assert case["shape_after"] == expected.tolist()
    shapes = np.array([case["shape_after"] for case in printed["cases"]])
    assert printed["median_shape"] == np.median(shapes, axis=0).tolist()
    assert printed["max_shape"] == shapes.max(axis=0).tolist()


def test_foreground_intensities_and_class_fractions_match_numpy(folder, printed):
    labels = [np.asarray(label.dataobj) for _, label, _ in _cases(folder)]
    for channel in (0, 1):
        values = np.concatenate(
            [c[channel][lab > 0] for (_, _, c), lab in zip(_cases(folder), labels, strict=True)]
        )
        stats = printed["intensity"][channel]
        assert stats["num_voxels"] == len(values)
        np.testing.assert_allclose(stats["mean"], values.mean(), rtol=1e-9)
        np.testing.assert_allclose(stats["std"], values.std(), rtol=1e-6)
        np.testing.assert_allclose(
            [stats["percentile_00_5"], stats["median"], stats["percentile_99_5"]],
            np.percentile(values, (0.5, 50, 99.5)),
        )
    counts = np.bincount(np.concatenate([lab.ravel() for lab in labels]).astype(int))
    np.testing.assert_allclose(
        [printed["class_fractions"][str(k)] for k in range(3)], counts / counts.sum()
    )


def test_the_hash_follows_the_bytes_not_the_folder(folder, printed, tmp_path):
    copy = shutil.copytree(folder, tmp_path / "copy")
    assert fingerprint.data_hash(str(copy)) == printed["data_hash"]
    label = next((copy / "labelsTr").glob("*.nii.gz"))
    image = nib.load(label)
    array = np.asarray(image.dataobj).copy()
    array.flat[0] = 1 - array.flat[0] % 2
    nib.save(nib.Nifti1Image(array, image.affine, image.header), label)
    assert fingerprint.data_hash(str(copy)) != printed["data_hash"]


def test_a_2d_folder_of_varied_sizes_is_fingerprinted_at_spacing_one(tmp_path):
    rng = np.random.default_rng(0)
    sizes = [(40, 60), (52, 48), (30, 90)]
    for folder_name in ("images", "masks"):
        (tmp_path / folder_name).mkdir()
    for index, size in enumerate(sizes):
        mask = (rng.random(size) > 0.7).astype(np.uint8) * 255
        image = rng.integers(0, 256, size, dtype=np.uint8)
        Image.fromarray(image).save(tmp_path / "images" / f"s{index}.png")
        Image.fromarray(mask).save(tmp_path / "masks" / f"s{index}.png")
    printed = fingerprint.fingerprint(str(tmp_path))
    assert printed["kind"] == "image_folder" and printed["spatial_dims"] == 2
    assert printed["target_spacing"] == [1.0, 1.0]
    assert printed["median_shape"] == np.median(np.array(sizes), axis=0).tolist()
    assert set(printed["class_fractions"]) == {"0", "255"}


def test_a_folder_that_is_no_dataset_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"neither dataset\.json"):
        fingerprint.fingerprint(str(tmp_path))
