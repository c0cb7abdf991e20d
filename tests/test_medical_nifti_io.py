"""NIfTI geometry: our axis order, RAS reorientation against nibabel, predictions written on
the input's grid (synthetic files and the shared real CT and MR), all checked with nibabel."""

import pathlib

import nibabel as nib
import numpy as np
import pytest

from unetjax.data.volumes import intensity, medical_case, nifti_io, synthetic_decathlon

SHARED = pathlib.Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
TOTALSEG = SHARED / "totalsegmentator_ct"
needs_shared = pytest.mark.skipif(
    not (TOTALSEG / "example_ct_sm.nii.gz").is_file(), reason="../shared/data is absent"
)
ZSCORE = intensity.VolumeNormalisation(("zscore",), (None,))


def save(path: pathlib.Path, data: np.ndarray, affine: np.ndarray, qform_code: int = 1):
    image = nib.Nifti1Image(data, affine)
    image.header.set_sform(affine, code=1)
    image.header.set_qform(affine, code=qform_code)
    nib.save(image, path)
    return path


def test_our_axes_are_the_files_k_j_i_with_spacing_in_the_same_order(tmp_path):
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    affine = np.diag([0.5, 0.7, 2.0, 1.0])
    volume = nifti_io.read_nifti(save(tmp_path / "v.nii.gz", data, affine))
    assert volume.array.shape == (6, 5, 4)
    for i, j, k in [(0, 0, 0), (3, 1, 5), (2, 4, 1)]:
        assert volume.array[k, j, i] == data[i, j, k]
    assert volume.spacing == pytest.approx((2.0, 0.7, 0.5))
    assert volume.array.dtype == np.int16 and volume.axcodes == ("R", "A", "S")


@pytest.mark.parametrize("kind", synthetic_decathlon.ORIENTATIONS)
def test_to_ras_matches_nibabels_closest_canonical_and_inverts_exactly(tmp_path, kind):
    shape, affine = synthetic_decathlon.random_geometry(np.random.default_rng(1), kind)
    data = np.random.default_rng(2).normal(size=(*shape, 2)).astype(np.float32)
    path = save(tmp_path / "v.nii.gz", data, affine)
    volume = nifti_io.read_nifti(path)
    ras, ras_affine = nifti_io.to_ras(volume.array, volume.affine)
    canonical = nib.as_closest_canonical(nib.load(path))
    np.testing.assert_array_equal(ras, np.asarray(canonical.dataobj).transpose(2, 1, 0, 3))
    np.testing.assert_allclose(ras_affine, canonical.affine, atol=1e-6)
    assert nib.aff2axcodes(ras_affine) == ("R", "A", "S")
    assert nifti_io.ras_shape(volume.array.shape[:3], volume.affine) == ras.shape[:3]
    zooms = canonical.header.get_zooms()[:3]
    assert nifti_io.ras_spacing(volume.affine) == pytest.approx(zooms[::-1], abs=1e-5)
    np.testing.assert_array_equal(nifti_io.from_ras(ras, volume.affine), volume.array)


def test_every_voxel_keeps_its_world_position_in_ras(tmp_path):
    shape, affine = synthetic_decathlon.random_geometry(np.random.default_rng(3), "permuted")
    data = np.random.default_rng(4).integers(0, 1000, shape).astype(np.int16)
    volume = nifti_io.read_nifti(save(tmp_path / "v.nii.gz", data, affine))
    ras, ras_affine = nifti_io.to_ras(volume.array, volume.affine)
    for ijk in [(0, 0, 0), (shape[0] - 1, 2, 3), (1, shape[1] - 1, shape[2] - 1)]:
        world = affine @ [*ijk, 1]
        i, j, k = np.round(np.linalg.inv(ras_affine) @ world)[:3].astype(int)
        assert ras[k, j, i] == data[ijk]


def test_label_map_keeps_the_references_affine_header_codes_and_is_integer(tmp_path):
    shape, affine = synthetic_decathlon.random_geometry(np.random.default_rng(5), "oblique")
    image = np.random.default_rng(6).normal(size=(*shape, 2)).astype(np.float32)
    reference = nifti_io.read_nifti(save(tmp_path / "in.nii.gz", image, affine, qform_code=0))
    labels = (reference.array[..., 0] > 0).astype(np.int64)
    nifti_io.write_prediction(tmp_path / "out.nii.gz", labels, reference)
    written, source = nib.load(tmp_path / "out.nii.gz"), nib.load(tmp_path / "in.nii.gz")
    assert written.shape == source.shape[:3]
    np.testing.assert_allclose(written.affine, source.affine, atol=1e-6)
    assert int(written.header["sform_code"]) == 1 and int(written.header["qform_code"]) == 0
    assert written.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asarray(written.dataobj), labels.transpose(2, 1, 0))
    with pytest.raises(ValueError, match="integer"):
        nifti_io.write_prediction(tmp_path / "bad.nii.gz", labels.astype(float), reference)
    with pytest.raises(ValueError, match="shape"):
        nifti_io.write_prediction(tmp_path / "bad.nii.gz", labels[1:], reference)


def _predict_through_training_grid(volume, labels, spacing, tmp_path, name):
    """What predict will do: to the training grid and back, written with the input's header."""
    image = volume.array[..., None].astype(np.float32)
    _, on_grid = medical_case.to_training_grid(
        image, labels, volume.affine, spacing=spacing, normalisation=ZSCORE
    )
    mapping = medical_case.mapping_for(volume, spacing)
    restored = medical_case.labels_to_original_grid(on_grid, mapping)
    return nifti_io.write_prediction(tmp_path / name, restored, volume)


def _assert_same_grid(written_path, input_path):
    written, source = nib.load(written_path), nib.load(input_path)
    assert written.shape == source.shape
    np.testing.assert_allclose(written.affine, source.affine, atol=1e-6)
    assert nib.aff2axcodes(written.affine) == nib.aff2axcodes(source.affine)
    for code in ("sform_code", "qform_code"):
        assert int(written.header[code]) == int(source.header[code])
    assert np.issubdtype(written.get_data_dtype(), np.integer)
    return np.asarray(written.dataobj)


@needs_shared
def test_prediction_for_the_shared_ct_has_its_shape_affine_and_orientation(tmp_path):
    ct_path, seg_path = TOTALSEG / "example_ct_sm.nii.gz", TOTALSEG / "example_seg.nii.gz"
    volume = nifti_io.read_nifti(ct_path)
    labels = nifti_io.read_nifti(seg_path).array
    written = _predict_through_training_grid(volume, labels, (4.5, 2.0, 2.0), tmp_path, "ct.nii.gz")
    data = _assert_same_grid(written, ct_path)
    # 3 mm -> (4.5, 2, 2) mm -> 3 mm moves thin organ borders; most voxels survive.
    agreement = np.mean(data == np.asarray(nib.load(seg_path).dataobj))
    assert agreement >= 0.97


@needs_shared
def test_prediction_for_the_shared_lps_mr_has_its_shape_affine_and_orientation(tmp_path):
    mr_path = TOTALSEG / "example_mr_sm.nii.gz"
    volume = nifti_io.read_nifti(mr_path)
    assert volume.axcodes == ("L", "P", "S")
    labels = (volume.array > np.percentile(volume.array, 70)).astype(np.uint8)
    own_spacing = nifti_io.ras_spacing(volume.affine)
    written = _predict_through_training_grid(volume, labels, own_spacing, tmp_path, "same.nii.gz")
    data = _assert_same_grid(written, mr_path)
    # On its own spacing nothing is resampled: only the reorientation, undone exactly.
    np.testing.assert_array_equal(data, labels.transpose(2, 1, 0))
    written = _predict_through_training_grid(
        volume, labels, (2.0, 2.0, 2.0), tmp_path, "2mm.nii.gz"
    )
    data = _assert_same_grid(written, mr_path)
    assert np.mean(data == labels.transpose(2, 1, 0)) >= 0.95
