"""Object F1 and panoptic quality against hand-computed cases and a Hungarian-matching reference."""

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from unetjax.evaluation.instances import instance_scores, label_instances


def hand_built_case():
    """Three 10x10 reference objects, covered 80%, 60% and 40% by predictions, and one spurious.

    Each prediction lies inside its reference object, so IoU = covered share: 0.8 and 0.6 match,
    0.4 does not (FP and FN), and the spurious object is an FP. TP 2, FP 2, FN 1.
    """
    reference = np.zeros((40, 60), np.int32)
    prediction = np.zeros((40, 60), np.int32)
    for number, (column, rows) in enumerate(((0, 8), (20, 6), (40, 4)), start=1):
        reference[5:15, column : column + 10] = number
        prediction[5 : 5 + rows, column : column + 10] = 10 + number
    prediction[30:35, 30:35] = 99
    return prediction, reference


def test_pq_and_f1_of_a_hand_built_case():
    scores = instance_scores(*hand_built_case())
    assert (scores.tp, scores.fp, scores.fn) == (2, 2, 1)
    assert scores.f1 == pytest.approx(2 / (2 + 2 / 2 + 1 / 2))
    assert scores.rq == scores.f1
    assert scores.sq == pytest.approx((0.8 + 0.6) / 2)
    assert scores.pq == pytest.approx((0.8 + 0.6) / (2 + 2 / 2 + 1 / 2))
    assert scores.pq == pytest.approx(scores.sq * scores.rq)


def test_the_iou_threshold_is_strict_and_can_be_raised():
    prediction, reference = hand_built_case()
    assert instance_scores(prediction, reference, iou_threshold=0.6).tp == 1  # 0.6 is not > 0.6
    assert instance_scores(prediction, reference, iou_threshold=0.79).tp == 1
    with pytest.raises(ValueError, match="no longer unique"):
        instance_scores(prediction, reference, iou_threshold=0.3)


def hungarian_reference(prediction, reference):
    """TP and the sum of matched IoUs from the full IoU matrix and an optimal assignment."""
    predicted_ids = [i for i in np.unique(prediction) if i]
    reference_ids = [i for i in np.unique(reference) if i]
    ious = np.zeros((len(predicted_ids), len(reference_ids)))
    for row, p in enumerate(predicted_ids):
        for column, r in enumerate(reference_ids):
            intersection = np.sum((prediction == p) & (reference == r))
            ious[row, column] = intersection / np.sum((prediction == p) | (reference == r))
    rows, columns = linear_sum_assignment(ious, maximize=True)
    matched = ious[rows, columns]
    matched = matched[matched > 0.5]
    return len(predicted_ids), len(reference_ids), matched.size, matched.sum()


def random_instances(rng, shape, count):
    """Overlapping-free random discs (2D) or balls (3D) as an instance map."""
    labels = np.zeros(shape, np.int32)
    grid = np.indices(shape)
    for number in range(1, count + 1):
        center = rng.uniform(0, shape)
        radius = rng.uniform(3, 6)
        inside = sum((grid[axis] - center[axis]) ** 2 for axis in range(len(shape))) <= radius**2
        labels[inside & (labels == 0)] = number
    return labels


@pytest.mark.parametrize("shape", [(64, 64), (24, 24, 24)])
def test_random_instance_maps_agree_with_hungarian_matching(shape):
    rng = np.random.default_rng(0)
    for _ in range(3):
        reference = random_instances(rng, shape, 12)
        # A jittered copy with 3 objects dropped, plus new objects, renumbered.
        shifted = np.roll(reference, tuple(rng.integers(-1, 2, len(shape))), range(len(shape)))
        shifted[np.isin(shifted, rng.choice(np.arange(1, 13), 3, replace=False))] = 0
        extra = random_instances(rng, shape, 4)
        prediction = np.where(shifted > 0, shifted * 7 + 3, np.where(extra > 0, extra + 500, 0))
        num_predicted, num_reference, tp, iou_sum = hungarian_reference(prediction, reference)
        scores = instance_scores(prediction, reference)
        assert (scores.tp, scores.fp, scores.fn) == (tp, num_predicted - tp, num_reference - tp)
        denominator = tp + (num_predicted - tp) / 2 + (num_reference - tp) / 2
        assert scores.pq == pytest.approx(iou_sum / denominator)
        assert scores.f1 == pytest.approx(tp / denominator)


def test_huge_and_non_consecutive_ids_score_like_consecutive_ones():
    prediction, reference = hand_built_case()
    renumbered = np.where(prediction > 0, prediction.astype(np.int64) * 10**12 + 7, 0)
    assert instance_scores(renumbered, reference) == instance_scores(prediction, reference)


def test_connected_components_follow_the_connectivity():
    mask = np.zeros((6, 6), bool)
    mask[1:3, 1:3] = True
    mask[3:5, 3:5] = True  # touches the first square at a corner only
    assert label_instances(mask, connectivity=1).max() == 2
    assert label_instances(mask, connectivity=2).max() == 1
    np.testing.assert_array_equal(label_instances(mask) > 0, mask)


def test_a_hand_built_3d_case_from_connected_components():
    reference = np.zeros((20, 20, 20), bool)
    reference[2:8, 2:8, 2:8] = True  # 216 voxels
    reference[12:18, 12:18, 12:18] = True
    prediction = np.zeros_like(reference)
    prediction[2:8, 2:8, 3:8] = True  # inside the first cube: IoU 180 / 216
    scores = instance_scores(label_instances(prediction), label_instances(reference))
    assert (scores.tp, scores.fp, scores.fn) == (1, 0, 1)
    assert scores.pq == pytest.approx((180 / 216) / (1 + 1 / 2))


def test_empty_cases_follow_the_documented_conventions():
    empty = np.zeros((8, 8), np.int32)
    objects = np.zeros((8, 8), np.int32)
    objects[2:4, 2:4] = 1
    both = instance_scores(empty, empty)
    assert (both.f1, both.sq, both.pq) == (1.0, 1.0, 1.0)
    strict = instance_scores(empty, empty, empty="nan")
    assert np.isnan([strict.f1, strict.sq, strict.pq]).all()
    for prediction, reference in ((empty, objects), (objects, empty)):
        scores = instance_scores(prediction, reference)
        assert (scores.f1, scores.sq, scores.pq) == (0.0, 0.0, 0.0)
        strict = instance_scores(prediction, reference, empty="nan")
        assert (strict.f1, strict.pq) == (0.0, 0.0) and np.isnan(strict.sq)


def test_bad_instance_maps_raise_naming_the_fix():
    mask = np.zeros((4, 4), bool)
    with pytest.raises(ValueError, match="label_instances"):
        instance_scores(mask, mask.astype(int))
    with pytest.raises(ValueError, match=">= 0"):
        instance_scores(-np.ones((4, 4), int), np.zeros((4, 4), int))
    with pytest.raises(ValueError, match="integer instance map"):
        instance_scores(np.zeros((4, 4)), np.zeros((4, 4), int))
