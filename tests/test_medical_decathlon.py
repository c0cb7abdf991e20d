"""Scanning MSD / nnU-Net folders: both dataset.json dialects, MSD 4D and per-channel files,
and a DataError naming the case for each kind of broken input."""

import json
import pathlib
import shutil

import nibabel as nib
import numpy as np
import pytest

from unetjax.data.errors import DataError
from unetjax.data.volumes import msd_folder, synthetic_decathlon


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """One pristine dataset per layout; tests break copies of them."""
    base = tmp_path_factory.mktemp("sources")
    return {
        layout: synthetic_decathlon.write_dataset(
            base / layout, num_training=3, num_test=2, layout=layout
        )
        for layout in ("msd", "nnunet")
    }


@pytest.fixture
def copy_of(sources, tmp_path):
    def copy(layout: str) -> pathlib.Path:
        return pathlib.Path(shutil.copytree(sources[layout], tmp_path / layout))

    return copy


@pytest.mark.parametrize("layout", ["msd", "nnunet"])
def test_both_layouts_give_the_same_cases_channels_and_labels(sources, layout):
    dataset = msd_folder.scan(sources[layout])
    assert dataset.channel_names == ("CT", "T2")
    assert dataset.labels == {"background": 0, "organ": 1, "lesion": 2}
    assert [c.case_id for c in dataset.training] == ["case_000", "case_001", "case_002"]
    assert [c.case_id for c in dataset.test] == ["case_003", "case_004"]
    assert all(c.label is None for c in dataset.test)
    files_per_case = 1 if layout == "msd" else 2
    assert all(len(c.images) == files_per_case for c in (*dataset.training, *dataset.test))
    for case in dataset.training:
        header, label = dataset.headers[case.case_id], nib.load(case.label)
        assert header.shape == label.shape[::-1] and header.num_channels == 2
        np.testing.assert_array_equal(header.affine, label.affine)


def test_an_msd_dataset_json_over_nnunet_v1_channel_files_finds_the_channels(copy_of):
    root = copy_of("nnunet")
    meta = {
        "modality": {"0": "CT", "1": "T2"},
        "labels": {"0": "background", "1": "organ", "2": "lesion"},
        "training": [
            {"image": f"./imagesTr/case_00{i}.nii.gz", "label": f"./labelsTr/case_00{i}.nii.gz"}
            for i in range(3)
        ],
        "test": [],
    }
    (root / "dataset.json").write_text(json.dumps(meta))
    dataset = msd_folder.scan(root)
    assert [pathlib.Path(p).name for p in dataset.training[1].images] == [
        "case_001_0000.nii.gz",
        "case_001_0001.nii.gz",
    ]


def _rewrite(path: pathlib.Path, data=None, affine=None) -> None:
    image = nib.load(path)
    data = np.asarray(image.dataobj) if data is None else data
    nib.save(nib.Nifti1Image(data, image.affine if affine is None else affine), path)


def test_a_missing_label_names_the_case(copy_of):
    root = copy_of("nnunet")
    (root / "labelsTr/case_001.nii.gz").unlink()
    with pytest.raises(DataError, match="case case_001: missing label"):
        msd_folder.scan(root)


def test_a_missing_channel_file_names_the_case(copy_of):
    root = copy_of("nnunet")
    (root / "imagesTr/case_002_0001.nii.gz").unlink()
    with pytest.raises(DataError, match=r"case case_002: 1 image channel\(s\)"):
        msd_folder.scan(root)


def test_a_label_of_another_shape_names_the_case(copy_of):
    root = copy_of("msd")
    path = root / "labelsTr/case_000.nii.gz"
    _rewrite(path, data=np.asarray(nib.load(path).dataobj)[:-1])
    with pytest.raises(DataError, match=r"case case_000: .* has shape"):
        msd_folder.scan(root)


def test_channels_of_different_shapes_name_the_case(copy_of):
    root = copy_of("nnunet")
    path = root / "imagesTr/case_001_0001.nii.gz"
    _rewrite(path, data=np.asarray(nib.load(path).dataobj)[:, :-2])
    with pytest.raises(DataError, match=r"case case_001: .*case_001_0001\.nii\.gz has shape"):
        msd_folder.scan(root)


@pytest.mark.parametrize(("shift_mm", "fails"), [(1e-2, True), (1e-4, False)])
def test_affines_must_agree_within_a_thousandth_of_a_millimetre(copy_of, shift_mm, fails):
    root = copy_of("nnunet")
    path = root / "labelsTr/case_002.nii.gz"
    affine = nib.load(path).affine.copy()
    affine[1, 3] += shift_mm
    _rewrite(path, affine=affine)
    if fails:
        with pytest.raises(DataError, match=r"case case_002: the affine of .* differs"):
            msd_folder.scan(root)
    else:
        msd_folder.scan(root)


def test_label_values_not_in_dataset_json_name_the_case_and_the_value(copy_of):
    root = copy_of("msd")
    path = root / "labelsTr/case_001.nii.gz"
    labels = np.asarray(nib.load(path).dataobj).copy()
    labels[0, 0, 0] = 5
    _rewrite(path, data=labels)
    with pytest.raises(DataError, match=r"case case_001: .* label value\(s\) \[5\]"):
        msd_folder.scan(root)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({"background": 0, "tumour": [1, 2]}, "Region-based"),
        ({"background": 0, "organ": 2}, "expected 0..1"),
    ],
)
def test_unsupported_label_declarations_are_refused(copy_of, labels, message):
    root = copy_of("nnunet")
    meta = json.loads((root / "dataset.json").read_text())
    (root / "dataset.json").write_text(json.dumps({**meta, "labels": labels}))
    with pytest.raises(DataError, match=message):
        msd_folder.scan(root)


def test_a_wrong_case_count_in_dataset_json_is_reported(copy_of):
    root = copy_of("nnunet")
    meta = json.loads((root / "dataset.json").read_text())
    (root / "dataset.json").write_text(json.dumps({**meta, "numTraining": 5}))
    with pytest.raises(DataError, match="numTraining=5 but imagesTr holds 3"):
        msd_folder.scan(root)


def test_a_missing_msd_image_names_the_case(copy_of):
    root = copy_of("msd")
    (root / "imagesTr/case_000.nii.gz").unlink()
    with pytest.raises(DataError, match="case case_000: missing image file"):
        msd_folder.scan(root)
