"""The synthetic Decathlon generator: the geometry it promises, read back with nibabel, and
the same files for the same seed."""

import json

import nibabel as nib
import numpy as np

from unetjax.data.volumes import synthetic_decathlon


def _arrays(root):
    return {
        path.relative_to(root).as_posix(): np.asarray(nib.load(path).dataobj)
        for path in sorted(root.rglob("*.nii.gz"))
    }


def test_cases_cover_lps_oblique_and_anisotropic_geometry(tmp_path):
    root = synthetic_decathlon.write_dataset(tmp_path, num_training=4, num_test=1)
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "CT", "1": "T2"} and meta["numTraining"] == 4
    paths = sorted((root / "labelsTr").glob("*.nii.gz"))
    labels = [nib.load(p) for p in paths]
    assert ("L", "P", "S") in [nib.aff2axcodes(image.affine) for image in labels]
    directions = [image.affine[:3, :3] / image.header.get_zooms()[:3] for image in labels]
    # Oblique: some direction cosine is neither 0 nor +-1.
    assert any(np.any((np.abs(d) > 0.05) & (np.abs(d) < 0.95)) for d in directions)
    for path, image in zip(paths, labels, strict=True):
        zooms = np.array(image.header.get_zooms()[:3])
        assert zooms.max() / zooms.min() > 2
        assert set(np.unique(np.asarray(image.dataobj))) == {0, 1, 2}
        ct = nib.load(root / "imagesTr" / path.name.replace(".nii.gz", "_0000.nii.gz"))
        assert ct.get_data_dtype() == np.int16 and ct.shape == image.shape
    assert len(list((root / "imagesTs").glob("*_0001.nii.gz"))) == 1


def test_msd_layout_holds_both_modalities_in_one_4d_file(tmp_path):
    root = synthetic_decathlon.write_dataset(tmp_path, num_training=2, num_test=0, layout="msd")
    meta = json.loads((root / "dataset.json").read_text())
    image = nib.load(root / meta["training"][0]["image"])
    label = nib.load(root / meta["training"][0]["label"])
    assert image.shape == (*label.shape, 2)
    assert meta["labels"] == {"0": "background", "1": "organ", "2": "lesion"}


def test_the_same_seed_writes_the_same_volumes_and_another_seed_others(tmp_path):
    first = _arrays(synthetic_decathlon.write_dataset(tmp_path / "a", seed=4))
    again = _arrays(synthetic_decathlon.write_dataset(tmp_path / "b", seed=4))
    other = _arrays(synthetic_decathlon.write_dataset(tmp_path / "c", seed=5))
    assert first.keys() == again.keys()
    for name in first:
        np.testing.assert_array_equal(first[name], again[name])
    assert any(
        first[name].shape != other[name].shape or not np.array_equal(first[name], other[name])
        for name in first
    )
