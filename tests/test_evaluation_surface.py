"""HD95, ASSD and NSD against hand-built cases, a brute-force reference, MONAI and DeepMind's code.

The brute-force reference finds boundary voxels by comparing each voxel with its padded face
neighbours and measures every pair of boundary voxels with scipy's cdist: neither the erosion
nor the k-d tree of the code under test.
"""

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.distance import cdist

from unetjax.evaluation import surface


def square(shape, corner, side):
    mask = np.zeros(shape, bool)
    mask[tuple(slice(start, start + side) for start in corner)] = True
    return mask


def ball(shape, spacing, center, radius):
    grid = np.indices(shape, dtype=float)
    squared = sum((grid[axis] * spacing[axis] - center[axis]) ** 2 for axis in range(len(shape)))
    return squared <= radius**2


def smooth_blob(rng, shape, sigma=3.0, fill=0.35):
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return field > np.quantile(field, 1 - fill)


def brute_force_boundary(mask):
    padded = np.pad(mask, 1, constant_values=False)
    inner = tuple(slice(1, -1) for _ in range(mask.ndim))
    all_neighbours_inside = np.ones_like(mask)
    for axis in range(mask.ndim):
        for step in (-1, 1):
            all_neighbours_inside &= np.roll(padded, step, axis=axis)[inner]
    return mask & ~all_neighbours_inside


def brute_force_distances(prediction, reference, spacing):
    prediction_points = np.argwhere(brute_force_boundary(prediction)) * np.asarray(spacing)
    reference_points = np.argwhere(brute_force_boundary(reference)) * np.asarray(spacing)
    pairwise = cdist(prediction_points, reference_points)
    return pairwise.min(axis=1), pairwise.min(axis=0)


def brute_force_scores(prediction, reference, spacing, tolerance):
    forward, backward = brute_force_distances(prediction, reference, spacing)
    both = np.concatenate([forward, backward])
    return {
        "hd95": max(np.percentile(forward, 95), np.percentile(backward, 95)),
        "assd": both.mean(),
        "nsd": np.mean(both <= tolerance),
    }


def random_pairs(seed):
    """Smooth blobs and a perturbed copy, plus speckle noise, in 2D and 3D, with spacings."""
    rng = np.random.default_rng(seed)
    cases = []
    for shape, spacing in (
        ((40, 48), (1.0, 1.0)),
        ((40, 48), (2.5, 0.7)),
        ((14, 16, 18), (3.0, 0.8, 1.1)),
    ):
        reference = smooth_blob(rng, shape)
        shifted = np.roll(reference, 2, axis=len(shape) - 1)
        prediction = (shifted & smooth_blob(rng, shape, fill=0.8)) | (rng.random(shape) < 0.01)
        cases.append((prediction, reference, spacing))
    return cases


@pytest.mark.parametrize("shift", [1, 2, 3, 5])
def test_a_square_shifted_by_k_pixels_has_hd95_k(shift):
    reference = square((40, 40), (10, 10), 12)
    prediction = square((40, 40), (10, 10 + shift), 12)
    assert surface.hd95(prediction, reference) == pytest.approx(shift)


def test_nsd_at_tolerance_zero_of_a_shifted_square_is_the_share_of_shared_boundary_voxels():
    # Side s, shift k along the columns: only the top and bottom rows overlap, s - k voxels each,
    # on both masks, out of 4 s - 4 boundary voxels per square: NSD(0) = (s - k) / (2 s - 2).
    side, shift = 10, 2
    reference = square((30, 30), (5, 5), side)
    prediction = square((30, 30), (5, 5 + shift), side)
    assert surface.nsd(prediction, reference, 0.0) == pytest.approx((side - shift) / (2 * side - 2))


@pytest.mark.parametrize("shift", [1, 3])
def test_nsd_at_a_tolerance_of_at_least_the_shift_is_one(shift):
    reference = square((30, 30, 30), (8, 8, 8), 10)
    prediction = square((30, 30, 30), (8 + shift, 8, 8), 10)
    assert surface.nsd(prediction, reference, float(shift)) == 1.0
    assert surface.nsd(prediction, reference, shift - 0.5) < 1.0


def test_two_single_voxels_are_their_distance_apart_in_mm():
    reference = np.zeros((10, 10), bool)
    prediction = np.zeros((10, 10), bool)
    reference[1, 1] = prediction[4, 5] = True
    spacing = (2.0, 1.0)
    distance = np.hypot(3 * 2.0, 4 * 1.0)
    distances = surface.surface_distances(prediction, reference, spacing)
    assert distances.hd95() == pytest.approx(distance)
    assert distances.assd() == pytest.approx(distance)
    assert distances.nsd(distance) == 1.0
    assert distances.nsd(distance - 1e-6) == 0.0


@pytest.mark.parametrize(("axis", "expected"), [(0, 2.5 * 2), (1, 1.0 * 2), (2, 0.5 * 2)])
def test_anisotropic_spacing_scales_the_distances_along_the_shifted_axis(axis, expected):
    spacing = (2.5, 1.0, 0.5)
    reference = square((24, 24, 24), (6, 6, 6), 8)
    prediction = np.roll(reference, 2, axis=axis)
    assert surface.hd95(prediction, reference, spacing) == pytest.approx(expected)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.0, 1.0, 1.0), (1.0, 0.7, 1.3)])
def test_concentric_spheres_are_the_radius_difference_apart_within_a_voxel(spacing):
    shape = tuple(int(48 / step) for step in spacing)
    inner = ball(shape, spacing, (24.0, 24.0, 24.0), 10.0)
    outer = ball(shape, spacing, (24.0, 24.0, 24.0), 14.0)
    distances = surface.surface_distances(inner, outer, spacing)
    # Boundary voxel centres lie up to about half a voxel diagonal off the true sphere.
    discretisation = 0.5 * np.linalg.norm(spacing)
    assert distances.hd95() == pytest.approx(4.0, abs=discretisation)
    assert distances.assd() == pytest.approx(4.0, abs=discretisation)
    assert distances.nsd(4.0 + 2 * discretisation) == 1.0


@pytest.mark.parametrize("seed", [0, 1])
def test_random_masks_agree_with_the_brute_force_reference(seed):
    for prediction, reference, spacing in random_pairs(seed):
        distances = surface.surface_distances(prediction, reference, spacing)
        forward, backward = brute_force_distances(prediction, reference, spacing)
        np.testing.assert_allclose(np.sort(distances.prediction_to_reference), np.sort(forward))
        np.testing.assert_allclose(np.sort(distances.reference_to_prediction), np.sort(backward))
        expected = brute_force_scores(prediction, reference, spacing, tolerance=1.5)
        assert distances.hd95() == pytest.approx(expected["hd95"])
        assert distances.assd() == pytest.approx(expected["assd"])
        assert distances.nsd(1.5) == pytest.approx(expected["nsd"])


def test_objects_touching_the_image_edge_have_a_surface_there():
    mask = np.zeros((6, 6), bool)
    mask[:3, :3] = True
    expected = np.zeros((6, 6), bool)
    expected[:3, :3] = True
    expected[1, 1] = False  # the only voxel whose four neighbours are all foreground
    np.testing.assert_array_equal(surface.boundary(mask), expected)
    np.testing.assert_array_equal(surface.boundary(mask), brute_force_boundary(mask))


def test_full_connectivity_also_marks_voxels_with_only_a_diagonal_background_neighbour():
    mask = np.ones((5, 5), bool)
    mask[0, 0] = False
    face = surface.boundary(mask, connectivity=1)
    full = surface.boundary(mask, connectivity=2)
    assert not face[1, 1] and full[1, 1]
    assert np.count_nonzero(full) == np.count_nonzero(face) + 1


def test_empty_masks_give_nan_distances_and_the_documented_nsd():
    empty = np.zeros((8, 8), bool)
    full = square((8, 8), (2, 2), 3)
    for prediction, reference in ((empty, full), (full, empty)):
        distances = surface.surface_distances(prediction, reference)
        assert np.isnan(distances.hd95()) and np.isnan(distances.assd())
        assert distances.nsd(1.0) == 0.0
    both = surface.surface_distances(empty, empty)
    assert np.isnan(both.hd95()) and np.isnan(both.assd()) and np.isnan(both.nsd(1.0))


def test_bad_inputs_raise_naming_the_problem():
    mask = square((8, 8), (2, 2), 3)
    with pytest.raises(ValueError, match="threshold it first"):
        surface.hd95(mask * 255, mask)
    with pytest.raises(ValueError, match="one positive size per axis"):
        surface.hd95(mask, mask, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="same shape"):
        surface.hd95(mask, mask[:4])
    with pytest.raises(ValueError, match="tolerance must be >= 0"):
        surface.nsd(mask, mask, -1.0)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # MONAI's own deprecations
@pytest.mark.parametrize("seed", [0, 1])
def test_random_masks_agree_with_monai_exactly(seed):
    torch = pytest.importorskip("torch")
    metrics = pytest.importorskip("monai.metrics")
    for prediction, reference, spacing in random_pairs(seed):
        one_hot = [
            torch.from_numpy(mask[None, None].astype(np.float32))
            for mask in (prediction, reference)
        ]
        options = {"include_background": True, "spacing": spacing}
        monai_hd95 = metrics.compute_hausdorff_distance(*one_hot, percentile=95, **options)
        monai_assd = metrics.compute_average_surface_distance(*one_hot, symmetric=True, **options)
        monai_nsd = metrics.compute_surface_dice(*one_hot, class_thresholds=[1.5], **options)
        assert surface.hd95(prediction, reference, spacing) == pytest.approx(
            float(monai_hd95), rel=1e-5
        )
        assert surface.assd(prediction, reference, spacing) == pytest.approx(
            float(monai_assd), rel=1e-5
        )
        assert surface.nsd(prediction, reference, 1.5, spacing) == pytest.approx(
            float(monai_nsd), rel=1e-5
        )


@pytest.mark.filterwarnings("ignore:Please import:DeprecationWarning")  # scipy 2.0 namespaces
@pytest.mark.parametrize("seed", [0, 1])
def test_smooth_masks_agree_with_deepmind_surface_distance_within_a_voxel(seed):
    # DeepMind's code measures between surface elements on the voxel corners, weighted by area,
    # so the two definitions differ by up to a voxel; axis order or spacing mistakes exceed that.
    deepmind = pytest.importorskip("surface_distance")
    rng = np.random.default_rng(seed)
    for shape, spacing in (((48, 40), (2.5, 0.7)), ((16, 20, 18), (3.0, 0.8, 1.1))):
        reference = smooth_blob(rng, shape, sigma=4.0)
        prediction = ndimage.binary_dilation(reference, iterations=2) & smooth_blob(
            rng, shape, sigma=4.0, fill=0.9
        )
        theirs = deepmind.compute_surface_distances(reference, prediction, spacing)
        ours = surface.surface_distances(prediction, reference, spacing)
        voxel = max(spacing)
        assert ours.hd95() == pytest.approx(
            deepmind.compute_robust_hausdorff(theirs, 95), abs=voxel
        )
        assert ours.assd() == pytest.approx(
            np.mean(deepmind.compute_average_surface_distance(theirs)), abs=voxel / 2
        )
