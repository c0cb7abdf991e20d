"""Augmentations keep image and labels aligned, labels in their set, and a seed's result."""

import numpy as np
import pytest

from unetjax.data import transforms

GEOMETRIC = transforms.AugmentOptions(
    flip_prob=0.5,
    rot90_prob=0.5,
    affine_prob=1.0,
    rotation_degrees=30.0,
    scale_range=(0.8, 1.2),
    shift_fraction=0.1,
    elastic_prob=1.0,
    elastic_grid=3,
    elastic_sigma=10.0,
)
GRID_ONLY = transforms.AugmentOptions(flip_prob=0.5, rot90_prob=1.0)


def _blobs(shape, seed):
    """A label map with three classes in smooth blobs (so interpolation has edges to keep)."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape)
    labels = np.zeros(shape, np.int32)
    for value in (3, 5, 3, 5):
        centre = rng.uniform(0, shape[0], len(shape)).reshape(-1, *[1] * len(shape))
        labels[((grid - centre) ** 2).sum(0) < (shape[0] / 5) ** 2] = value
    return labels


@pytest.mark.parametrize("shape,patch", [((64, 64), (48, 48)), ((24, 28, 28), (16, 20, 20))])
def test_deformed_image_still_matches_its_mask(shape, patch):
    labels = _blobs(shape, 0)
    image = (labels > 0).astype(np.float32)[..., None]
    for seed in range(4):
        warped, warped_labels = transforms.spatial_transform(
            image, labels[..., None], patch, GEOMETRIC, np.random.default_rng(seed)
        )
        assert warped.shape == (*patch, 1) and warped_labels.shape == (*patch, 1)
        agreement = ((warped[..., 0] > 0.5) == (warped_labels[..., 0] > 0)).mean()
        assert agreement > 0.97


@pytest.mark.parametrize("shape,patch", [((40, 40), (32, 32)), ((12, 20, 20), (8, 16, 16))])
def test_crops_flips_and_rotations_move_image_and_mask_exactly_together(shape, patch):
    labels = _blobs(shape, 1)
    image = labels.astype(np.float32)[..., None] / 5
    for seed in range(6):
        warped, warped_labels = transforms.spatial_transform(
            image, labels[..., None], patch, GRID_ONLY, np.random.default_rng(seed)
        )
        np.testing.assert_array_equal(warped[..., 0] * 5, warped_labels[..., 0].astype(np.float32))


def test_labels_keep_their_values():
    labels = _blobs((64, 64), 2)
    image = np.random.default_rng(0).random((64, 64, 1)).astype(np.float32)
    for seed in range(5):
        _, warped_labels = transforms.spatial_transform(
            image, labels[..., None], (40, 40), GEOMETRIC, np.random.default_rng(seed)
        )
        assert set(np.unique(warped_labels)) <= {0, 3, 5}
        assert len(np.unique(warped_labels)) >= 2


def test_same_seed_same_result_other_seed_other_result():
    labels = _blobs((48, 48), 3)
    image = np.random.default_rng(1).random((48, 48, 1)).astype(np.float32)

    def run(seed):
        rng = np.random.default_rng(seed)
        warped, warped_labels = transforms.spatial_transform(
            image, labels[..., None], (32, 32), GEOMETRIC, rng
        )
        return transforms.intensity_transform(warped, GEOMETRIC, rng), warped_labels

    first, again, other = run(5), run(5), run(6)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])


def test_resampling_on_a_90_degree_rotation_grid_is_rot90():
    size = 9
    image = np.arange(size * size, dtype=np.float64).reshape(size, size, 1)
    centre = (size - 1) / 2
    offsets = np.indices((size, size)) - centre
    coords = np.einsum("ij,jhw->ihw", transforms.rotation_matrix(2, 90.0), offsets) + centre
    rows, cols = np.indices((size, size))
    expected = image[size - 1 - cols, rows]  # out[i, j] = in[S-1-j, i]
    np.testing.assert_allclose(transforms.resample(image, coords, order=1), expected, atol=1e-9)
    np.testing.assert_array_equal(
        transforms.resample(image.astype(np.int32), coords, order=0), expected
    )


def test_elastic_field_passes_through_the_coarse_grid_displacements():
    coarse = np.random.default_rng(4).normal(0.0, 10.0, size=(2, 3, 3))
    field = transforms.elastic_displacement((33, 33), np.random.default_rng(4), 3, 10.0)
    assert field.shape == (2, 33, 33)
    for node_i, pixel_i in enumerate((0, 16, 32)):
        for node_j, pixel_j in enumerate((0, 16, 32)):
            np.testing.assert_allclose(field[:, pixel_i, pixel_j], coarse[:, node_i, node_j])
    # Smooth: neighbouring pixels move by far less than the node displacements.
    assert np.abs(np.diff(field, axis=1)).max() < 0.25 * np.abs(coarse).max()


def test_crop_pads_with_zeros_outside_the_image():
    image = np.ones((4, 4, 1))
    patch = transforms.crop(image, (-1, 2), (6, 3))
    expected = np.zeros((6, 3, 1))
    expected[1:5, 0:2] = 1
    np.testing.assert_array_equal(patch, expected)


def test_brightness_shifts_every_pixel_by_one_amount():
    options = transforms.AugmentOptions(brightness_prob=1.0, brightness_delta=0.2)
    image = np.full((8, 8, 1), 0.5, np.float32)
    shifted = transforms.intensity_transform(image, options, np.random.default_rng(0))
    delta = shifted - image
    assert np.ptp(delta) < 1e-6 and 0 < abs(delta[0, 0, 0]) <= 0.2
