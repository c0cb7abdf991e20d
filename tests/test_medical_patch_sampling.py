"""Foreground oversampling: the share of patches that see foreground against the closed-form
expectation (binomial bounds), the class choice, padding, and determinism."""

import numpy as np
import pytest

from unetjax.data.volumes import patch_sampling

SHAPE, PATCH = (40, 40, 40), (8, 8, 8)


def binomial_bound(expected: float, n: int, sds: float = 4.0) -> float:
    return sds * np.sqrt(expected * (1 - expected) / n) + 1e-9


def tiny_foreground_volume():
    labels = np.zeros(SHAPE, np.uint8)
    voxel = (5, 30, 12)
    labels[voxel] = 1
    image = np.zeros((*SHAPE, 1), np.float32)
    return image, labels, voxel


def uniform_hit_probability(voxel) -> float:
    """Share of the 33^3 uniform origins whose 8^3 patch holds the voxel, counted per axis."""
    origins = np.arange(SHAPE[0] - PATCH[0] + 1)
    per_axis = [np.mean((origins <= v) & (v < origins + PATCH[0])) for v in voxel]
    return float(np.prod(per_axis))


@pytest.mark.parametrize("foreground_prob", [0.0, 0.33, 1.0])
def test_share_of_patches_with_foreground_matches_the_setting(foreground_prob):
    image, labels, voxel = tiny_foreground_volume()
    rng = np.random.default_rng(0)
    locations = patch_sampling.class_locations(labels, rng)
    n = 3000
    hits = sum(
        patch_sampling.sample_patch(
            image, labels, PATCH, rng, foreground_prob=foreground_prob, locations=locations
        )[1].any()
        for _ in range(n)
    )
    q = uniform_hit_probability(voxel)
    expected = foreground_prob + (1 - foreground_prob) * q
    assert abs(hits / n - expected) <= binomial_bound(expected, n)


def test_centred_patches_draw_the_class_first_so_a_one_voxel_class_gets_half():
    labels = np.zeros(SHAPE, np.uint8)
    labels[10:20, 10:20, 10:20] = 1  # 1000 voxels
    labels[30, 30, 30] = 2  # one voxel
    rng = np.random.default_rng(1)
    locations = patch_sampling.class_locations(labels, rng)
    n = 2000
    centres = [
        labels[tuple(origin + np.array(PATCH) // 2)]
        for origin in (
            patch_sampling.patch_origin(SHAPE, PATCH, rng, foreground_prob=1.0, locations=locations)
            for _ in range(n)
        )
    ]
    assert set(centres) == {1, 2}
    assert abs(np.mean(np.array(centres) == 2) - 0.5) <= binomial_bound(0.5, n)


def test_a_volume_smaller_than_the_patch_is_padded_around_its_centre():
    image = np.arange(1, 36, dtype=np.float32).reshape(5, 7, 1)
    labels = np.ones((5, 7), np.uint8)
    patch_image, patch_labels = patch_sampling.sample_patch(
        image, labels, (8, 8), np.random.default_rng(0), foreground_prob=0.5, pad_value=-9.0
    )
    # nnU-Net's split of the padding: (patch - size) // 2 before, the rest after.
    expected = np.pad(image, [(1, 2), (0, 1), (0, 0)], constant_values=-9.0)
    np.testing.assert_array_equal(patch_image, expected)
    np.testing.assert_array_equal(patch_labels, np.pad(labels, [(1, 2), (0, 1)]))


def test_a_case_without_foreground_falls_back_to_uniform_patches():
    labels = np.zeros((12, 12), np.uint8)
    image = np.random.default_rng(2).normal(size=(12, 12, 2)).astype(np.float32)
    patch, patch_labels = patch_sampling.sample_patch(
        image, labels, (4, 6), np.random.default_rng(0), foreground_prob=1.0
    )
    assert patch.shape == (4, 6, 2) and not patch_labels.any()


def test_the_same_generator_state_gives_the_same_patches():
    labels = np.random.default_rng(3).integers(0, 3, SHAPE).astype(np.uint8)

    def origins(seed):
        rng = np.random.default_rng(seed)
        locations = patch_sampling.class_locations(labels, rng, max_per_class=50)
        return [
            tuple(
                patch_sampling.patch_origin(
                    SHAPE, PATCH, rng, foreground_prob=0.5, locations=locations
                )
            )
            for _ in range(20)
        ]

    assert origins(7) == origins(7)
    assert origins(7) != origins(8)


def test_class_locations_are_voxels_of_their_class_capped_per_class():
    labels = np.zeros((20, 20, 20), np.uint8)
    labels[:10] = 1
    labels[15, 15, 15] = 4
    locations = patch_sampling.class_locations(labels, np.random.default_rng(0), max_per_class=100)
    assert locations.dtype == np.int32 and locations.shape[1] == 4
    classes, counts = np.unique(locations[:, 0], return_counts=True)
    assert classes.tolist() == [1, 4] and counts.tolist() == [100, 1]
    np.testing.assert_array_equal(labels[tuple(locations[:, 1:].T)], locations[:, 0])
