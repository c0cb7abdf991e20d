"""Overlap scores per class from hard labels: Dice, IoU, precision and recall.

Counts per class k over the voxels of one case: tp (predicted k, reference k), fp (predicted k,
reference not k), fn (reference k, predicted not k). Then

    Dice = 2 tp / (2 tp + fp + fn)      IoU = tp / (tp + fp + fn)
    precision = tp / (tp + fp)          recall = tp / (tp + fn)

A score whose denominator is 0 follows `empty` (see `case_metrics` for the reasons):

- both reference and prediction empty: every score is 1 with `empty="one"`, NaN with "nan";
- nothing predicted but a reference (precision 0 / 0), or a prediction on an empty reference
  (recall 0 / 0): 0 with "one", a failure scored at its worst; NaN with "nan".
  Dice and IoU are 0 there either way (their denominators are not 0).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Empty = Literal["one", "nan"]
EMPTY_POLICIES = ("one", "nan")


def check_empty(empty: str) -> None:
    if empty not in EMPTY_POLICIES:
        raise ValueError(f"empty must be one of {EMPTY_POLICIES}, got {empty!r}")


def label_counts(
    prediction: np.ndarray,
    reference: np.ndarray,
    num_classes: int,
    *,
    ignore: np.ndarray | None = None,
) -> np.ndarray:
    """int64 (num_classes, 3) [tp, fp, fn] per class from two integer label maps.

    Labels must lie in 0..num_classes-1 (class 0 is counted too: callers drop background).
    Voxels where `ignore` is True are left out.
    """
    prediction, reference = np.asarray(prediction), np.asarray(reference)
    if prediction.shape != reference.shape:
        raise ValueError(
            f"prediction and reference label maps must have the same shape, got "
            f"{prediction.shape} and {reference.shape}"
        )
    if ignore is not None:
        keep = ~_ignore_mask(ignore, prediction.shape)
        prediction, reference = prediction[keep], reference[keep]
    for name, labels in (("prediction", prediction), ("reference", reference)):
        if not np.issubdtype(labels.dtype, np.integer) and labels.dtype != np.bool_:
            raise ValueError(f"{name} must hold integer class labels, got dtype {labels.dtype}")
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(
                f"{name} labels must lie in 0..{num_classes - 1} for num_classes={num_classes}, "
                f"got labels {labels.min()}..{labels.max()}"
            )
    pairs = reference.astype(np.int64).ravel() * num_classes + prediction.astype(np.int64).ravel()
    confusion = np.bincount(pairs, minlength=num_classes**2).reshape(num_classes, num_classes)
    tp = np.diag(confusion)
    return np.stack([tp, confusion.sum(0) - tp, confusion.sum(1) - tp], axis=-1)


def channel_counts(
    prediction: np.ndarray, reference: np.ndarray, *, ignore: np.ndarray | None = None
) -> np.ndarray:
    """int64 (K, 3) [tp, fp, fn] per channel from two {0, 1} arrays (*spatial, K).

    A single binary mask is one channel: pass `mask[..., None]`. `ignore` is (*spatial).
    """
    prediction = np.asarray(prediction).astype(np.bool_)
    reference = np.asarray(reference).astype(np.bool_)
    if prediction.shape != reference.shape:
        raise ValueError(
            f"prediction and reference must have the same shape (*spatial, channels), got "
            f"{prediction.shape} and {reference.shape}"
        )
    if ignore is not None:
        keep = ~_ignore_mask(ignore, prediction.shape[:-1])
        prediction, reference = prediction[keep], reference[keep]
    axes = tuple(range(prediction.ndim - 1))
    tp = np.count_nonzero(prediction & reference, axis=axes)
    fp = np.count_nonzero(prediction & ~reference, axis=axes)
    fn = np.count_nonzero(~prediction & reference, axis=axes)
    return np.stack([tp, fp, fn], axis=-1).astype(np.int64)


def overlap_scores(counts: np.ndarray, *, empty: Empty = "one") -> dict[str, np.ndarray]:
    """Dice, IoU, precision and recall, float64 arrays shaped like `counts` less its last axis."""
    check_empty(empty)
    tp, fp, fn = np.moveaxis(np.asarray(counts, np.float64), -1, 0)
    both_empty = tp + fp + fn == 0
    failed = 0.0 if empty == "one" else np.nan
    both = 1.0 if empty == "one" else np.nan
    # Every division below by 0 is replaced by `np.where`, so its warning carries no news.
    with np.errstate(invalid="ignore", divide="ignore"):
        scores = {
            "dice": 2 * tp / (2 * tp + fp + fn),
            "iou": tp / (tp + fp + fn),
            "precision": np.where(tp + fp == 0, failed, tp / (tp + fp)),
            "recall": np.where(tp + fn == 0, failed, tp / (tp + fn)),
        }
    return {name: np.where(both_empty, both, value) for name, value in scores.items()}


def _ignore_mask(ignore: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    ignore = np.asarray(ignore).astype(np.bool_)
    if ignore.shape != shape:
        raise ValueError(
            f"ignore must be a bool mask of the spatial shape {shape}, got shape {ignore.shape}"
        )
    return ignore
