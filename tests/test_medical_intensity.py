"""Intensity normalisation against numpy reimplementations of nnU-Net's formulas, on the
synthetic training set read with nibabel directly."""

import json

import nibabel as nib
import numpy as np
import pytest

from unetjax.data.volumes import builder as volume_builder
from unetjax.data.volumes import intensity, msd_folder, synthetic_decathlon


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = synthetic_decathlon.write_dataset(
        tmp_path_factory.mktemp("raw"), num_training=4, num_test=0, layout="nnunet"
    )
    return msd_folder.scan(root)


def nnunet_ct(image: np.ndarray, pooled_foreground: np.ndarray) -> np.ndarray:
    """nnU-Net v2: percentiles, mean and sd of the pooled, unclipped foreground; clip, z-score."""
    low, high = np.percentile(pooled_foreground, [0.5, 99.5])
    mean, sd = pooled_foreground.mean(), pooled_foreground.std()
    return (np.clip(image, low, high) - mean) / max(sd, 1e-8)


def test_ct_normalisation_equals_the_numpy_formula_on_the_training_set(dataset):
    ct_files = [case.images[0] for case in dataset.training]
    labels = [np.asarray(nib.load(case.label).dataobj) for case in dataset.training]
    images = [np.asarray(nib.load(path).dataobj).astype(np.float64) for path in ct_files]
    pooled = np.concatenate([im[lab > 0] for im, lab in zip(images, labels, strict=True)])
    normalisation = volume_builder.compute_normalisation(dataset.training, dataset.channel_names)
    assert normalisation.schemes == ("ct", "zscore")
    stats = normalisation.stats[0]
    assert stats.num_voxels == len(pooled)
    assert stats.percentile_00_5 == pytest.approx(np.percentile(pooled, 0.5))
    assert stats.mean == pytest.approx(pooled.mean()) and stats.std == pytest.approx(pooled.std())
    # The CT channel of a case, in file axes, normalised both ways.
    case_image = np.stack([images[0], np.zeros_like(images[0])], axis=-1)
    ours = normalisation(case_image)[..., 0]
    np.testing.assert_allclose(ours, nnunet_ct(images[0], pooled), rtol=1e-5, atol=1e-5)
    # Clipping happened: the synthetic HU reach beyond the foreground's percentiles.
    assert images[0].min() < stats.percentile_00_5


def test_large_cases_contribute_a_seeded_sample_of_their_foreground(dataset):
    kwargs = {"max_values_per_case": 20, "seed": 3}
    first = volume_builder.compute_normalisation(dataset.training, dataset.channel_names, **kwargs)
    again = volume_builder.compute_normalisation(dataset.training, dataset.channel_names, **kwargs)
    assert first.stats[0].num_voxels == 20 * len(dataset.training)
    assert first == again


def test_zscore_case_uses_the_whole_volume_or_only_its_nonzero_voxels():
    rng = np.random.default_rng(0)
    volume = rng.normal(300, 40, size=(6, 7, 8))
    volume[:2] = 0
    whole = intensity.zscore_case(volume)
    np.testing.assert_allclose(whole, (volume - volume.mean()) / volume.std(), atol=1e-4)
    inside = volume[volume != 0]
    masked = intensity.zscore_case(volume, nonzero_only=True)
    np.testing.assert_allclose(
        masked[volume != 0], (inside - inside.mean()) / inside.std(), atol=1e-4
    )
    assert np.all(masked[volume == 0] == 0) and masked.dtype == np.float32


def test_a_constant_volume_does_not_divide_by_zero():
    assert np.all(intensity.zscore_case(np.full((3, 3, 3), 7.0)) == 0)


def test_statistics_round_trip_through_json(dataset):
    normalisation = volume_builder.compute_normalisation(
        dataset.training, dataset.channel_names, nonzero_only=True
    )
    restored = intensity.VolumeNormalisation.from_dict(
        json.loads(json.dumps(normalisation.to_dict()))
    )
    assert restored == normalisation


@pytest.mark.parametrize(("name", "scheme"), [("CT", "ct"), (" ct", "ct"), ("T2", "zscore")])
def test_ct_channels_get_the_dataset_scheme_and_the_others_zscores(name, scheme):
    assert intensity.scheme_for_channel(name) == scheme


def test_statistics_for_a_zscore_channel_are_refused():
    stats = intensity.ForegroundStats(0.0, 1.0, -1.0, 1.0, 10)
    with pytest.raises(ValueError, match="only for"):
        intensity.VolumeNormalisation(("zscore",), (stats,))
    with pytest.raises(ValueError, match="channels"):
        intensity.VolumeNormalisation(("ct",), (stats,))(np.zeros((2, 2, 2, 3)))
