"""Whole-volume inference: blended sliding windows against a brute-force weighted mean, NIfTI
cases from files, and predictions for the shared real CT and MR written on their own grids
(checked with nibabel against the input files)."""

import itertools
import json
import pathlib

import nibabel as nib
import numpy as np
import pytest

from configs import decathlon_tiny
from tests.test_inference import make_tiny_run
from unetjax.cli import predict
from unetjax.data.errors import DataError
from unetjax.data.volumes import intensity
from unetjax.data.volumes import preprocessing as volume_preprocessing
from unetjax.inference import tiling, volumes

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "totalsegmentator_ct"


def content_dependent(tiles):
    """(B, *tile, 1) -> (B, *tile, 2): differs between overlapping tiles, as a network does."""
    mean = tiles.mean(axis=(1, 2, 3, 4), keepdims=True)
    return np.concatenate([tiles + mean, tiles * mean], axis=-1)


def brute_force_blend(image, tile, starts_per_axis):
    """Sum over tiles of window * prediction, over the sum of windows: full weight volumes."""
    window = tiling.blend_window(tile)
    total = np.zeros((*image.shape[:-1], 2))
    weight = np.zeros(image.shape[:-1])
    for corner in itertools.product(*starts_per_axis):
        region = tuple(slice(c, c + t) for c, t in zip(corner, tile, strict=True))
        total[region] += content_dependent(image[region][None])[0] * window[..., None]
        weight[region] += window
    return total / weight[..., None]


def test_blended_tiles_are_the_window_weighted_mean_of_every_tile():
    image = np.random.default_rng(0).normal(size=(24, 40, 32, 1)).astype(np.float32)
    tile = (8, 16, 16)
    got = tiling.predict_tiled(
        content_dependent, image, tile=tile, overlap=(4, 8, 8), align=4, batch_size=3
    )
    starts = [
        tiling.tile_starts(s, t, t // 2, 4) for s, t in zip(image.shape[:-1], tile, strict=True)
    ]
    assert all(len(s) > 2 for s in starts)  # tiles overlap on every axis
    np.testing.assert_allclose(got, brute_force_blend(image, tile, starts), rtol=1e-5, atol=1e-5)


def test_an_overlap_the_aligned_grid_cannot_give_is_capped_not_looped_over():
    # Starts are multiples of align = 16, so 16-voxel tiles cannot overlap by 8: the tiles of
    # a 32-voxel axis are [0, 16) and [16, 32), as a direct prediction sees them.
    with pytest.raises(ValueError, match=r"overlap must be in \[0, tile - align\] = \[0, 0\]"):
        tiling.tile_starts(32, 16, 8, align=16)
    image = np.random.default_rng(1).normal(size=(32, 32, 32, 1)).astype(np.float32)
    got = tiling.predict_tiled(content_dependent, image, tile=16, overlap=8, align=16)
    starts = [[0, 16]] * 3
    np.testing.assert_allclose(got, brute_force_blend(image, (16,) * 3, starts), rtol=1e-5)


def test_channel_files_make_one_case_and_other_files_one_each(tmp_path):
    files = [
        tmp_path / "a_0000.nii.gz",
        tmp_path / "b.nii.gz",
        tmp_path / "a_0001.nii.gz",
        tmp_path / "other" / "a_0000.nii.gz",
    ]
    cases = volumes.group_cases(files)
    assert [(c.case_id, c.paths) for c in cases] == [
        ("a", (files[0], files[2])),
        ("b", (files[1],)),
        ("a", (files[3],)),
    ]
    with pytest.raises(DataError, match=r"case c .* channel files \[0, 2\]"):
        volumes.group_cases([tmp_path / "c_0000.nii.gz", tmp_path / "c_0002.nii.gz"])


@pytest.fixture(scope="module")
def random_run(tmp_path_factory):
    """A run with random weights, one input channel (z-scored) and two classes, trained (as it
    were) at an anisotropic spacing unlike the shared files' 3 mm, so every volume is resampled
    on the way in and on the way back."""
    workdir = tmp_path_factory.mktemp("run")
    config = decathlon_tiny.get_config()
    config.model.update(spatial_dims=3, in_channels=1, num_classes=2, output_activation="softmax")
    config.data.patch_size = (16, 32, 32)
    make_tiny_run(workdir, config)
    preprocessing = volume_preprocessing.VolumePreprocessing(
        target_spacing=(4.0, 2.5, 3.5),
        normalisation=intensity.VolumeNormalisation(("zscore",), (None,)),
        channel_names=("CT",),
        class_names=("background", "liver"),
    )
    (workdir / volume_preprocessing.FILE).write_text(json.dumps(preprocessing.to_dict()))
    return workdir


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/totalsegmentator_ct is absent")
def test_predictions_for_the_shared_ct_and_mr_have_the_inputs_shape_affine_and_orientation(
    random_run, tmp_path
):
    inputs = [SHARED / "example_ct_sm.nii.gz", SHARED / "example_mr_sm.nii.gz"]
    status = predict.run(
        ["--model", str(random_run), "--output", str(tmp_path), "--no-progress"]
        + [str(p) for p in inputs]
    )
    assert status == 0
    orientations = set()
    for source in inputs:
        reference = nib.load(source)
        written = nib.load(tmp_path / source.name)
        assert written.shape == reference.shape
        np.testing.assert_allclose(written.affine, reference.affine, atol=1e-6)
        assert nib.aff2axcodes(written.affine) == nib.aff2axcodes(reference.affine)
        for form in ("sform_code", "qform_code"):
            assert written.header[form] == reference.header[form]
        labels = np.asarray(written.dataobj)
        assert np.issubdtype(written.get_data_dtype(), np.integer)
        assert set(np.unique(labels)) <= {0, 1}
        orientations.add(nib.aff2axcodes(reference.affine))
    assert orientations == {("R", "A", "S"), ("L", "P", "S")}


def test_a_volume_with_the_wrong_number_of_channels_is_reported_by_name(
    random_run, tmp_path, capsys
):
    image = nib.Nifti1Image(np.zeros((20, 20, 12, 2), np.float32), np.diag([1, 1, 3, 1.0]))
    path = tmp_path / "two_channels.nii.gz"
    nib.save(image, path)
    output = tmp_path / "out"
    status = predict.run(["--model", str(random_run), "--output", str(output), str(path)])
    assert status == 1
    assert not list(output.glob("*.nii.gz"))
    assert f"{path}: 2 channel(s); the model takes 1 (CT)" in capsys.readouterr().err
