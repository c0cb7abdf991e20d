"""Rows of case_metrics: one per foreground class, hand-built values, and the empty conventions."""

import math

import numpy as np
import pytest

from unetjax.evaluation.case_metrics import case_metrics

NAN = float("nan")


def square(shape, corner, side):
    mask = np.zeros(shape, bool)
    mask[tuple(slice(start, start + side) for start in corner)] = True
    return mask


def multiclass_case():
    """(16, 20) labels: class 1 shifted by 2 columns, class 2 absent, class 3 predicted only."""
    reference = np.zeros((16, 20), np.int32)
    prediction = np.zeros((16, 20), np.int32)
    reference[square((16, 20), (2, 2), 6)] = 1
    prediction[square((16, 20), (2, 4), 6)] = 1
    prediction[square((16, 20), (10, 10), 4)] = 3
    return prediction, reference


def test_multiclass_gives_one_row_per_foreground_class_with_hand_computed_values():
    rows = case_metrics(*multiclass_case(), kind="multiclass", num_classes=4, nsd_tolerance=2.0)
    assert [row["class"] for row in rows] == [1, 2, 3]
    shifted = rows[0]
    # Two 6x6 squares overlapping in a 6x4 block.
    assert (shifted["reference_voxels"], shifted["prediction_voxels"]) == (36, 36)
    assert shifted["dice"] == pytest.approx(2 * 24 / 72)
    assert shifted["iou"] == pytest.approx(24 / 48)
    assert shifted["precision"] == shifted["recall"] == pytest.approx(24 / 36)
    assert shifted["hd95"] == pytest.approx(2.0)
    assert shifted["nsd"] == 1.0


def test_the_empty_conventions_of_the_module_docstring():
    prediction, reference = multiclass_case()
    diagonal = math.hypot(15, 19)
    expected = {
        "one": {
            2: dict(dice=1, iou=1, precision=1, recall=1, hd95=NAN, assd=NAN, nsd=1),
            3: dict(dice=0, iou=0, precision=0, recall=0, hd95=diagonal, assd=diagonal, nsd=0),
        },
        "nan": {
            2: dict(dice=NAN, iou=NAN, precision=NAN, recall=NAN, hd95=NAN, assd=NAN, nsd=NAN),
            3: dict(dice=0, iou=0, precision=0, recall=NAN, hd95=NAN, assd=NAN, nsd=0),
        },
    }
    for empty, by_class in expected.items():
        rows = case_metrics(prediction, reference, kind="multiclass", num_classes=4, empty=empty)
        for row in rows[1:]:
            scores = {name: row[name] for name in by_class[row["class"]]}
            np.testing.assert_equal(scores, by_class[row["class"]], err_msg=f"{empty} {row}")


def test_a_missed_structure_scores_precision_zero_or_nan():
    reference = square((10, 10), (2, 2), 4).astype(np.uint8)
    prediction = np.zeros_like(reference)
    (row,) = case_metrics(prediction, reference, kind="binary", spacing=(2.0, 1.0))
    assert (row["dice"], row["precision"], row["recall"], row["nsd"]) == (0, 0, 0, 0)
    assert row["hd95"] == row["assd"] == pytest.approx(math.hypot(9 * 2.0, 9 * 1.0))
    (strict,) = case_metrics(prediction, reference, kind="binary", empty="nan")
    assert strict["recall"] == 0 and np.isnan([strict["precision"], strict["hd95"]]).all()


def test_the_nsd_tolerance_is_in_mm_or_in_voxels():
    reference = square((20, 20), (5, 5), 6)
    prediction = np.roll(reference, 1, axis=0)  # 1 voxel along an axis of 3 mm
    options = {"kind": "binary", "spacing": (3.0, 1.0), "nsd_tolerance": 1.0}
    (in_mm,) = case_metrics(prediction, reference, **options)
    (in_voxels,) = case_metrics(prediction, reference, nsd_unit="voxels", **options)
    assert in_mm["hd95"] == in_voxels["hd95"] == pytest.approx(3.0)
    assert in_mm["nsd"] < 1.0
    assert in_voxels["nsd"] == 1.0


def test_multilabel_channels_are_classes_from_zero():
    first = square((12, 12, 12), (2, 2, 2), 5)
    second = square((12, 12, 12), (6, 6, 6), 4)
    reference = np.stack([first, second], axis=-1)
    prediction = np.stack([first, np.zeros_like(second)], axis=-1)
    rows = case_metrics(prediction, reference, kind="multilabel")
    assert [(row["class"], row["dice"]) for row in rows] == [(0, 1.0), (1, 0.0)]
    assert rows[0]["hd95"] == rows[0]["assd"] == 0.0


def test_ignored_voxels_change_nothing():
    reference = square((20, 20), (3, 3), 6)
    prediction = reference.copy()
    prediction[15:18, 15:18] = True  # a false positive, inside the ignored region
    ignore = square((20, 20), (14, 14), 5)
    (ignored,) = case_metrics(prediction, reference, kind="binary", ignore=ignore, instances=True)
    assert ignored["dice"] == ignored["nsd"] == ignored["pq"] == 1.0
    assert ignored["hd95"] == 0.0
    (counted,) = case_metrics(prediction, reference, kind="binary", instances=True)
    assert counted["dice"] < 1.0 and counted["pq"] < 1.0


def test_instance_maps_are_used_instead_of_connected_components():
    # Two touching objects in the reference: one component, but two instances.
    reference = np.zeros((10, 20), np.int32)
    reference[2:8, 2:8] = 1
    reference[2:8, 8:14] = 2
    prediction = reference > 0
    (components,) = case_metrics(prediction, reference > 0, kind="binary", instances=True)
    assert components["f1_instance"] == components["pq"] == 1.0
    (labelled,) = case_metrics(
        prediction, reference > 0, kind="binary", reference_instances=reference
    )
    # The single predicted object matches neither half (IoU 0.5 is not > 0.5): TP 0, FP 1, FN 2.
    assert labelled["f1_instance"] == labelled["pq"] == 0.0
    assert "f1_instance" not in case_metrics(prediction, reference > 0, kind="binary")[0]


def test_bad_inputs_raise_naming_the_fix():
    mask = square((8, 8), (2, 2), 3).astype(np.uint8)
    with pytest.raises(ValueError, match="threshold it first"):
        case_metrics(mask * 255, mask, kind="binary")
    with pytest.raises(ValueError, match="num_classes"):
        case_metrics(mask, mask, kind="multiclass")
    with pytest.raises(ValueError, match="kind must be one of"):
        case_metrics(mask, mask, kind="softmax")
    with pytest.raises(ValueError, match="2 or 3 spatial axes"):
        case_metrics(mask[None, None], mask[None, None], kind="binary")
    with pytest.raises(ValueError, match="spatial shape"):
        case_metrics(mask, mask, kind="binary", ignore=np.zeros((4, 4), bool))
    with pytest.raises(ValueError, match="2 channels, but num_classes=3"):
        case_metrics(
            np.stack([mask, mask], -1), np.stack([mask, mask], -1), kind="multilabel", num_classes=3
        )
