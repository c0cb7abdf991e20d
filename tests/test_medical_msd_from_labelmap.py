"""msd_from_labelmap: an MSD folder from one image and label map, checked with nibabel's own
affine arithmetic and read back by the decathlon scanner."""

import nibabel as nib
import numpy as np

from unetjax.data.volumes import msd_folder, msd_from_labelmap


def test_slabs_keep_their_place_in_the_world_and_one_class(tmp_path):
    rng = np.random.default_rng(0)
    affine = np.array(
        [[0.0, -1.5, 0.2, 40], [2.0, 0.0, 0.0, -10], [0.0, 0.1, 3.0, 5], [0, 0, 0, 1]]
    )
    image = rng.integers(-1000, 1000, (12, 10, 7)).astype(np.int16)
    labels = rng.choice(np.array([0, 3, 5], np.uint8), size=image.shape)
    nib.save(nib.Nifti1Image(image, affine), tmp_path / "ct.nii.gz")
    nib.save(nib.Nifti1Image(labels, affine), tmp_path / "seg.nii.gz")
    nib.save(nib.Nifti1Image(image, affine), tmp_path / "other.nii.gz")
    out = msd_from_labelmap.write_msd(
        tmp_path / "msd",
        tmp_path / "ct.nii.gz",
        tmp_path / "seg.nii.gz",
        keep=5,
        class_name="liver",
        slabs=2,
        test_images=[tmp_path / "other.nii.gz"],
    )
    for index, (start, stop) in enumerate([(0, 4), (4, 7)]):
        slab = nib.load(out / f"imagesTr/case_slab{index}.nii.gz")
        label = nib.load(out / f"labelsTr/case_slab{index}.nii.gz")
        np.testing.assert_array_equal(np.asarray(slab.dataobj), image[:, :, start:stop])
        np.testing.assert_array_equal(np.asarray(label.dataobj), labels[:, :, start:stop] == 5)
        corner = nib.affines.apply_affine(affine, [0, 0, start])
        np.testing.assert_allclose(nib.affines.apply_affine(slab.affine, [0, 0, 0]), corner)
        np.testing.assert_allclose(slab.affine[:3, :3], affine[:3, :3])
        np.testing.assert_allclose(label.affine, slab.affine)
    scanned = msd_folder.scan(out)
    assert scanned.labels == {"background": 0, "liver": 1}
    assert scanned.channel_names == ("CT",)
    assert [c.case_id for c in scanned.training] == ["case_slab0", "case_slab1"]
    assert [c.case_id for c in scanned.test] == ["other"]
