"""Instance metrics: object-level F1 at IoU 0.5 and panoptic quality (Kirillov et al. 2019).

Instances come from label maps (0 background, each other value one object; values need not be
consecutive) or, for a binary mask, from its connected components (`label_instances`).

A predicted and a reference object match when their IoU exceeds `iou_threshold` (0.5). Above 0.5
a match is unique (two objects cannot both overlap one object by more than half of their union),
so no assignment problem is solved. Matches are true positives (TP), unmatched predicted objects
false positives (FP), unmatched reference objects false negatives (FN):

    F1 = RQ = TP / (TP + FP / 2 + FN / 2)
    SQ = mean IoU of the matched pairs
    PQ = SQ x RQ = sum of matched IoUs / (TP + FP / 2 + FN / 2)

Empty cases (`empty` as in `overlap`): no object on either side scores F1 = SQ = PQ = 1 with
"one", NaN with "nan"; objects but no match make F1 = PQ = 0, and SQ (0 / 0) 0 with "one", NaN
with "nan".
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from unetjax.evaluation.overlap import Empty, check_empty


@dataclasses.dataclass(frozen=True)
class InstanceScores:
    """Matching counts and scores of one pair of instance maps."""

    tp: int
    fp: int
    fn: int
    f1: float
    sq: float
    pq: float

    @property
    def rq(self) -> float:
        """Recognition quality, the F1 score of the matching."""
        return self.f1


def label_instances(mask: np.ndarray, *, connectivity: int = 1) -> np.ndarray:
    """int32 connected components of a binary mask, 1..n (0 background).

    `connectivity` 1 joins voxels that share a face (4-connected in 2D, 6 in 3D); up to ndim
    joins across corners too (8 in 2D, 26 in 3D).
    """
    mask = np.asarray(mask).astype(np.bool_)
    if not 1 <= connectivity <= mask.ndim:
        raise ValueError(f"connectivity must be 1 .. {mask.ndim} for a {mask.ndim}D mask")
    structure = ndimage.generate_binary_structure(mask.ndim, connectivity)
    labels, _ = ndimage.label(mask, structure=structure, output=np.int32)
    return labels


def instance_scores(
    prediction: np.ndarray,
    reference: np.ndarray,
    *,
    iou_threshold: float = 0.5,
    empty: Empty = "one",
) -> InstanceScores:
    """F1, SQ and PQ of two instance label maps of the same shape (see the module docstring)."""
    check_empty(empty)
    if not 0.5 <= iou_threshold < 1:
        raise ValueError(
            f"iou_threshold must be in [0.5, 1): below 0.5 a match is no longer unique, got "
            f"{iou_threshold}"
        )
    prediction = _instance_ids(prediction, "prediction")
    reference = _instance_ids(reference, "reference")
    if prediction.shape != reference.shape:
        raise ValueError(
            f"prediction and reference instance maps must have the same shape, got "
            f"{prediction.shape} and {reference.shape}"
        )
    prediction_areas = np.bincount(prediction.ravel())
    reference_areas = np.bincount(reference.ravel())
    num_predicted = np.count_nonzero(prediction_areas[1:])
    num_reference = np.count_nonzero(reference_areas[1:])

    both = (prediction > 0) & (reference > 0)
    # Each overlapping pair of objects as one integer, counted over the shared voxels only.
    pair_codes = prediction[both] * reference_areas.size + reference[both]
    codes, intersections = np.unique(pair_codes, return_counts=True)
    predicted_ids, reference_ids = np.divmod(codes, reference_areas.size)
    unions = prediction_areas[predicted_ids] + reference_areas[reference_ids] - intersections
    ious = intersections / unions
    matched_ious = ious[ious > iou_threshold]

    tp = matched_ious.size
    fp, fn = num_predicted - tp, num_reference - tp
    if tp + fp + fn == 0:
        value = 1.0 if empty == "one" else float("nan")
        return InstanceScores(0, 0, 0, value, value, value)
    denominator = tp + fp / 2 + fn / 2
    unmatched_sq = 0.0 if empty == "one" else float("nan")
    sq = float(matched_ious.mean()) if tp else unmatched_sq
    return InstanceScores(
        tp=int(tp),
        fp=int(fp),
        fn=int(fn),
        f1=float(tp / denominator),
        sq=sq,
        pq=float(matched_ious.sum() / denominator),
    )


def _instance_ids(labels: np.ndarray, name: str) -> np.ndarray:
    """`labels` as int64 ids >= 0; raises for floats, negatives and ids too large to count."""
    labels = np.asarray(labels)
    if labels.dtype == np.bool_:
        raise ValueError(
            f"{name} is a bool mask, not an instance map: pass label_instances({name}) to score "
            "its connected components"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name} must be an integer instance map, got dtype {labels.dtype}")
    if labels.size == 0:
        return labels.astype(np.int64)
    low, high = labels.min(), labels.max()
    if low < 0:
        raise ValueError(f"{name} instance ids must be >= 0 (0 is background), got {low}")
    if high > max(labels.size, 2**16):
        # Ids far beyond the voxel count (hashes, random ids): renumber so bincount stays small.
        labels = np.unique(labels, return_inverse=True)[1].reshape(labels.shape)
        return labels.astype(np.int64) if low == 0 else labels.astype(np.int64) + 1
    return labels.astype(np.int64)
