"""The report's pictures: errors coloured by hand-built cases, the K worst kept per setting, and
a volume's slice named by its index in the file (a marker voxel placed in a NIfTI-style grid of
every orientation comes back to its file index through the training grid)."""

import io
import math

import numpy as np
import pytest
from PIL import Image

from unetjax.data.volumes import intensity, medical_case, synthetic_decathlon
from unetjax.evaluation import case_pictures


def test_false_positives_and_negatives_are_the_voxels_each_mask_has_alone():
    prediction = np.array([[1, 1, 0], [0, 0, 0]], bool)
    reference = np.array([[1, 0, 1], [0, 0, 0]], bool)
    reference_fg, correct, fp, fn = case_pictures.foreground_and_errors(
        prediction, reference, "binary"
    )
    assert reference_fg.tolist() == reference.tolist()
    assert correct.tolist() == [[True, False, False], [False, False, False]]
    assert fp.tolist() == [[False, True, False], [False, False, False]]
    assert fn.tolist() == [[False, False, True], [False, False, False]]


def test_a_voxel_given_the_wrong_class_counts_as_missed_not_as_a_false_positive():
    reference = np.array([0, 1, 2, 2, 0])
    prediction = np.array([1, 1, 1, 2, 0])
    _, correct, fp, fn = case_pictures.foreground_and_errors(prediction, reference, "multiclass")
    assert fp.tolist() == [True, False, False, False, False]  # background called class 1
    assert fn.tolist() == [False, False, True, False, False]  # class 2 called class 1
    assert correct.tolist() == [False, True, False, True, False]


def test_the_2d_picture_shows_false_positives_in_yellow_and_misses_in_sky_blue():
    image = np.zeros((40, 40, 1), np.float32)
    prediction = np.zeros((40, 40), bool)
    reference = np.zeros((40, 40), bool)
    prediction[:20, :20] = True  # a block predicted alone: false positives
    reference[20:, 20:] = True  # a block missed: false negatives
    masks = case_pictures.foreground_and_errors(prediction, reference, "binary")
    png = case_pictures.render_2d(image, masks, "case at L1 fast")
    for colour in (case_pictures.FALSE_POSITIVE, case_pictures.FALSE_NEGATIVE):
        assert _colour_pixels(png, colour) > 100, colour


def _colour_pixels(png: bytes, colour) -> int:
    """Pixels of `colour` blended at ERROR_ALPHA over black (the test images are black)."""
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).reshape(-1, 3).astype(int)
    expected = np.round(np.asarray(colour) * case_pictures.ERROR_ALPHA * 255)
    return int((np.abs(pixels - expected).max(axis=1) <= 3).sum())


def test_voxels_left_out_of_scoring_are_never_drawn_as_errors():
    image = np.zeros((40, 40, 1), np.float32)
    prediction = np.zeros((40, 40), bool)
    prediction[:20, :20] = True
    ignore = prediction[..., None].copy()  # (H, W, 1), as a binary mask's ignore comes
    collector = case_pictures.Collector(keep=1)
    collector.offer(
        "a", 1, "fast", image, prediction, np.zeros_like(prediction), kind="binary",
        rows=[{"dice": 0.0}], ignore=ignore,
    )  # fmt: skip
    (picture,) = collector.pictures()
    assert _colour_pixels(picture.png, case_pictures.FALSE_POSITIVE) == 0


def test_the_slice_goes_through_the_widest_part_of_the_largest_component():
    mask = np.zeros((10, 12, 14), bool)
    mask[1:3, 1:3, 1:3] = True  # small
    mask[5:9, 6:10, 2:12] = True  # large
    mask[7, 6:10, 2:13] = True  # its widest cross-section along axis 0 is slice 7
    point = case_pictures.largest_component_point(mask)
    assert point[0] == 7 and 6 <= point[1] < 10 and 2 <= point[2] < 12
    assert case_pictures.largest_component_point(np.zeros((3, 3), bool)) is None


def _offer(collector, case, dice, depth=1, mode="fast"):
    image = np.zeros((8, 8, 1), np.float32)
    labels = np.zeros((8, 8), bool)
    collector.offer(
        case, depth, mode, image, labels, labels, kind="binary",
        rows=[{"dice": dice, "iou": dice, "hd95": math.nan}],
    )  # fmt: skip


def test_the_collector_keeps_the_k_lowest_dice_per_setting_worst_first():
    collector = case_pictures.Collector(keep=2)
    for case, dice in [("a", 0.9), ("b", 0.2), ("c", math.nan), ("d", 0.5), ("e", 0.7)]:
        _offer(collector, case, dice)
    _offer(collector, "a", 0.1, depth=2)
    kept = [(p.case, p.depth) for p in collector.pictures()]
    assert kept == [("b", 1), ("d", 1), ("a", 2)]  # NaN (both masks empty) counts as perfect
    none = case_pictures.Collector(keep=0)
    _offer(none, "a", 0.1)
    assert none.pictures() == []


@pytest.mark.parametrize("orientation", synthetic_decathlon.ORIENTATIONS)
@pytest.mark.parametrize("zoom", [1.0, 0.5])
def test_a_marker_voxel_comes_back_to_its_file_index_through_the_training_grid(orientation, zoom):
    rng = np.random.default_rng(3)
    shape, affine = synthetic_decathlon.random_geometry(rng, orientation)
    marker = (shape[0] // 3, shape[1] // 2, shape[2] - 2)  # file (i, j, k)
    labels = np.zeros(shape[::-1], np.uint8)  # our layout (k, j, i)
    labels[marker[::-1]] = 1
    spacing = tuple(s * zoom for s in medical_case.nifti_io.ras_spacing(affine))
    normalisation = intensity.VolumeNormalisation(("zscore",), (None,))
    _, training = medical_case.to_training_grid(
        labels[..., None].astype(np.float32), labels, affine,
        spacing=spacing, normalisation=normalisation, image_order=1, label_order=0,
    )  # fmt: skip
    mapping = medical_case.GridMapping(labels.shape, affine, spacing)
    assert medical_case.training_shape(mapping) == training.shape
    found = np.argwhere(training == 1)
    assert len(found) == round(1 / zoom) ** 3
    for point in found:
        assert medical_case.file_index(point, mapping) == marker
