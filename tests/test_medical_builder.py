"""The decathlon builder: built into a temporary folder, read back through TFDS's array_record
source, and checked against the raw files read with nibabel."""

import json

import nibabel as nib
import numpy as np
import pytest
import tensorflow_datasets as tfds

from unetjax.data import local_builder
from unetjax.data.volumes import builder as volume_builder
from unetjax.data.volumes import intensity, medical_case, synthetic_decathlon


def build(tmp_path, root, name, **options):
    config = volume_builder.make_config(root, name=name, **options)
    builder = volume_builder.Decathlon(
        data_dir=tmp_path / "tfds", config=config, file_format="array_record"
    )
    builder.download_and_prepare(download_dir=tmp_path / "downloads")
    return tfds.builder_from_directory(
        tmp_path / "tfds" / "decathlon" / name / str(local_builder.VERSION)
    )


def by_id(reader, split):
    return {str(e["id"], "utf-8"): e for e in reader.as_data_source(split=split)}


def canonical(path):
    """nibabel's own RAS reorientation, in our (D, H, W) layout, and its zooms likewise."""
    image = nib.as_closest_canonical(nib.load(path))
    data = np.asarray(image.dataobj)
    return data.transpose(2, 1, 0, *range(3, data.ndim)), image.header.get_zooms()[:3][::-1]


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    return synthetic_decathlon.write_dataset(
        tmp_path_factory.mktemp("raw"), num_training=5, num_test=1, layout="msd"
    )


@pytest.fixture(scope="module")
def built(raw, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("built")
    case_lists = {
        "train": ["case_000", "case_001", "case_003", "case_004"],
        "validation": ["case_002"],
    }
    return build(tmp_path, raw, "syn", case_lists=case_lists)


def test_splits_features_and_geometry_match_the_raw_files(raw, built):
    assert {name: split.num_examples for name, split in built.info.splits.items()} == {
        "train": 4,
        "validation": 1,
    }
    metadata = built.info.metadata
    assert (metadata["task"], metadata["num_classes"], metadata["in_channels"]) == (
        "multiclass",
        3,
        2,
    )
    assert metadata["class_names"] == ["background", "organ", "lesion"]
    spacing = np.array(metadata["target_spacing"])
    train_spacings = [canonical(raw / f"labelsTr/case_00{i}.nii.gz")[1] for i in (0, 1, 3, 4)]
    np.testing.assert_allclose(spacing, np.median(train_spacings, axis=0), rtol=1e-6)
    for case_id, example in {**by_id(built, "train"), **by_id(built, "validation")}.items():
        source = nib.load(raw / f"imagesTr/{case_id}.nii.gz")
        data, zooms = canonical(raw / f"imagesTr/{case_id}.nii.gz")
        expected = tuple(
            round(n * z / t) for n, z, t in zip(data.shape[:3], zooms, spacing, strict=True)
        )
        assert example["image"].shape == (*expected, 2) and example["image"].dtype == np.float32
        assert example["mask"].shape == expected and example["mask"].dtype == np.uint8
        assert set(np.unique(example["mask"])) <= {0, 1, 2}
        np.testing.assert_allclose(example["spacing"], spacing, rtol=1e-6)
        np.testing.assert_array_equal(example["original_affine"], source.affine)
        np.testing.assert_array_equal(example["original_shape"], source.shape[:3][::-1])
        locations = example["locations"]
        assert set(np.unique(locations[:, 0])) == set(np.unique(example["mask"])) - {0}
        np.testing.assert_array_equal(example["mask"][tuple(locations[:, 1:].T)], locations[:, 0])


def test_stored_masks_map_back_onto_the_label_files(raw, built):
    for case_id, example in by_id(built, "train").items():
        mapping = medical_case.GridMapping(
            tuple(example["original_shape"]), example["original_affine"], tuple(example["spacing"])
        )
        restored = medical_case.labels_to_original_grid(example["mask"], mapping)
        truth = np.asarray(nib.load(raw / f"labelsTr/{case_id}.nii.gz").dataobj)
        # Same bound as the resampling round trip (test_medical_resample).
        assert np.mean(restored.transpose(2, 1, 0) == truth) >= 0.96, case_id


def test_statistics_and_summary_are_written_beside_the_data(raw, built):
    data_dir = built.data_path
    stats = json.loads((data_dir / volume_builder.STATS_FILE).read_text())
    assert stats == built.info.metadata["normalisation"]
    normalisation = intensity.VolumeNormalisation.from_dict(stats)
    # Only the train split's foreground: the validation case is left out of the statistics.
    train_foreground = sum(
        int((np.asarray(nib.load(raw / f"labelsTr/case_00{i}.nii.gz").dataobj) > 0).sum())
        for i in (0, 1, 3, 4)
    )
    assert normalisation.stats[0].num_voxels == train_foreground
    summary = json.loads((data_dir / volume_builder.SUMMARY_FILE).read_text())
    examples = {**by_id(built, "train"), **by_id(built, "validation")}
    for case in summary["cases"]:
        data, zooms = canonical(raw / f"imagesTr/{case['id']}.nii.gz")
        assert case["spacing_before"] == pytest.approx(zooms, abs=1e-4)
        assert case["shape_before"] == list(data.shape[:3])
        assert case["shape_after"] == list(examples[case["id"]]["mask"].shape)
        assert case["orientation"] == "".join(
            nib.aff2axcodes(nib.load(raw / "imagesTr" / f"{case['id']}.nii.gz").affine)
        )
    assert summary["target_spacing"] == built.info.metadata["target_spacing"]


def test_a_case_at_the_target_spacing_is_stored_exactly_reoriented_and_normalised(raw, tmp_path):
    """With the target spacing set to an LPS case's own, nothing is interpolated: the stored
    arrays are nibabel's canonical arrays, the CT channel through the nnU-Net formula."""
    image, zooms = canonical(raw / "imagesTr/case_000.nii.gz")
    labels, _ = canonical(raw / "labelsTr/case_000.nii.gz")
    assert nib.aff2axcodes(nib.load(raw / "imagesTr/case_000.nii.gz").affine) == ("L", "P", "S")
    reader = build(
        tmp_path, raw, "own_spacing", target_spacing=zooms, case_lists={"train": ["case_000"]}
    )
    example = by_id(reader, "train")["case_000"]
    np.testing.assert_array_equal(example["mask"], labels)
    foreground = image[..., 0][labels > 0].astype(np.float64)
    low, high = np.percentile(foreground, [0.5, 99.5])
    expected_ct = (np.clip(image[..., 0], low, high) - foreground.mean()) / foreground.std()
    np.testing.assert_allclose(example["image"][..., 0], expected_ct, rtol=1e-5, atol=1e-5)
    t2 = image[..., 1]
    np.testing.assert_allclose(
        example["image"][..., 1], (t2 - t2.mean()) / t2.std(), rtol=1e-4, atol=1e-4
    )
