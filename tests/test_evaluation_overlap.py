"""Overlap counts and scores against per-class numpy formulas and hand-counted cases."""

import numpy as np
import pytest

from unetjax.evaluation import overlap


def numpy_counts(prediction, reference, label):
    predicted, referenced = prediction == label, reference == label
    return [
        np.sum(predicted & referenced),
        np.sum(predicted & ~referenced),
        np.sum(~predicted & referenced),
    ]


@pytest.mark.parametrize("shape", [(17, 23), (5, 7, 9)])
def test_label_counts_match_per_class_numpy_counts_in_2d_and_3d(shape):
    rng = np.random.default_rng(0)
    prediction = rng.integers(0, 4, shape)
    reference = rng.integers(0, 4, shape)
    counts = overlap.label_counts(prediction, reference, 4)
    expected = [numpy_counts(prediction, reference, label) for label in range(4)]
    np.testing.assert_array_equal(counts, expected)


def test_channel_counts_match_per_channel_numpy_counts():
    rng = np.random.default_rng(1)
    prediction = rng.integers(0, 2, (6, 7, 8, 3))
    reference = rng.integers(0, 2, (6, 7, 8, 3))
    counts = overlap.channel_counts(prediction, reference)
    expected = [
        numpy_counts(prediction[..., channel], reference[..., channel], 1) for channel in range(3)
    ]
    np.testing.assert_array_equal(counts, expected)


def test_scores_of_a_hand_counted_case():
    # Reference: 6 voxels of class 1; prediction: 4 of them plus 2 outside.
    reference = np.zeros((4, 4), int)
    reference[0, :3] = reference[1, :3] = 1
    prediction = np.zeros((4, 4), int)
    prediction[0, :2] = prediction[1, :2] = 1
    prediction[3, :2] = 1
    counts = overlap.label_counts(prediction, reference, 2)[1]
    assert counts.tolist() == [4, 2, 2]  # tp, fp, fn
    scores = overlap.overlap_scores(counts)
    assert scores["dice"] == pytest.approx(2 * 4 / (2 * 4 + 2 + 2))
    assert scores["iou"] == pytest.approx(4 / 8)
    assert scores["precision"] == pytest.approx(4 / 6)
    assert scores["recall"] == pytest.approx(4 / 6)


def test_ignored_voxels_count_for_nothing():
    reference = np.zeros((4, 4), int)
    reference[:2, :2] = 1
    prediction = reference.copy()
    prediction[3, 3] = 1  # a false positive, inside the ignored region
    ignore = np.zeros((4, 4), bool)
    ignore[3, 3] = True
    assert overlap.label_counts(prediction, reference, 2, ignore=ignore)[1].tolist() == [4, 0, 0]
    multilabel = overlap.channel_counts(prediction[..., None], reference[..., None], ignore=ignore)
    assert multilabel.tolist() == [[4, 0, 0]]


NAN = float("nan")


@pytest.mark.parametrize(
    ("counts", "with_one", "with_nan"),
    [
        ([0, 0, 0], (1, 1, 1, 1), (NAN, NAN, NAN, NAN)),  # both empty
        ([0, 0, 5], (0, 0, 0, 0), (0, 0, NAN, 0)),  # nothing predicted, a reference
        ([0, 5, 0], (0, 0, 0, 0), (0, 0, 0, NAN)),  # a prediction, an empty reference
    ],
)
def test_empty_cases_follow_the_documented_conventions(counts, with_one, with_nan):
    names = ("dice", "iou", "precision", "recall")
    for empty, expected in (("one", with_one), ("nan", with_nan)):
        scores = overlap.overlap_scores(np.array(counts), empty=empty)
        np.testing.assert_equal([float(scores[name]) for name in names], expected, err_msg=empty)


def test_bad_inputs_raise_naming_the_problem():
    labels = np.array([[0, 1], [2, 3]])
    with pytest.raises(ValueError, match=r"0\.\.2 for num_classes=3, got labels 0\.\.3"):
        overlap.label_counts(labels, labels, 3)
    with pytest.raises(ValueError, match="integer class labels"):
        overlap.label_counts(labels.astype(float), labels, 4)
    with pytest.raises(ValueError, match="same shape"):
        overlap.label_counts(labels, labels[:1], 4)
    with pytest.raises(ValueError, match="spatial shape"):
        overlap.label_counts(labels, labels, 4, ignore=np.zeros((3, 3), bool))
    with pytest.raises(ValueError, match="empty must be one of"):
        overlap.overlap_scores(np.zeros(3), empty="zero")
