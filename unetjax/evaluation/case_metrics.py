"""Every metric of one case, one row per foreground class.

Kinds of output (the label conventions of `unetjax.losses`, less the batch axis):

- "binary": masks (*spatial) of 0/1 or bool; one row, class 1;
- "multiclass": label maps (*spatial) of 0..num_classes-1; rows for classes 1..num_classes-1
  (class 0 is background), also for classes absent from both, so every case has the same rows;
- "multilabel": channels (*spatial, K) of 0/1, every channel a foreground class; rows for
  classes (channels) 0..K-1.

Each row: class, reference_voxels and prediction_voxels (foreground counts, so empty cases are
visible in a table), dice, iou, precision, recall (`overlap`), hd95, assd, nsd (`surface`), and
with `instances` f1_instance and pq (`instances`). Distances are in the units of `spacing` (mm
for a NIfTI's pixdim; voxels when spacing is None). Voxels where `ignore` is True are set to
background in both prediction and reference before anything is counted: they count for nothing
in the overlap scores, and a structure crossing the ignored region is cut at its border.

Empty reference and/or prediction (per class), `empty="one"` (the default, used by the tables):

- both empty: dice, iou, precision, recall, nsd, f1_instance, pq = 1. The prediction is exactly
  right (Metrics Reloaded scores the Dice of such a case 1 for that reason). hd95 and assd are
  NaN: there is no surface to measure, and a 0 would pull the mean distance of the set towards
  perfect by the share of empty cases, mixing detection into a boundary metric.
- one empty: dice, iou, nsd, f1_instance, pq = 0 (their formulas give it); precision with nothing
  predicted and recall with an empty reference (0 / 0) = 0; hd95 and assd = the image diagonal
  (the largest distance two voxels of the image can have, in the units of spacing). A missed or
  spurious structure is the worst failure there is, and Metrics Reloaded recommends scoring it
  at the worst value rather than leaving it out: a NaN there would be dropped from the mean, and
  a model that misses structures entirely would score better than one that finds them roughly.

`empty="nan"` instead makes every undefined value NaN: both empty, all NaN; one empty, dice,
iou, nsd, f1_instance and pq 0, precision / recall with a 0 denominator NaN, hd95 and assd NaN.

Summaries (`statistics.summarize`) leave NaN out of the mean, sd, median and CI, and count it
(n_nan), so a table says how many cases a distance mean is over.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal

import numpy as np

from unetjax.evaluation import overlap, surface
from unetjax.evaluation.instances import instance_scores, label_instances

Kind = Literal["binary", "multiclass", "multilabel"]
KINDS = ("binary", "multiclass", "multilabel")
NsdUnit = Literal["mm", "voxels"]
OVERLAP_METRICS = ("dice", "iou", "precision", "recall")
SURFACE_METRICS = ("hd95", "assd", "nsd")
INSTANCE_METRICS = ("f1_instance", "pq")

Row = dict[str, float | int]


def case_metrics(
    prediction: np.ndarray,
    reference: np.ndarray,
    *,
    kind: Kind,
    num_classes: int | None = None,
    spacing: Sequence[float] | None = None,
    nsd_tolerance: float = 1.0,
    nsd_unit: NsdUnit = "mm",
    ignore: np.ndarray | None = None,
    instances: bool = False,
    prediction_instances: np.ndarray | None = None,
    reference_instances: np.ndarray | None = None,
    empty: overlap.Empty = "one",
    percentile: float = 95.0,
    connectivity: int = 1,
) -> list[Row]:
    """One row of metrics per foreground class of one case (see the module docstring).

    Args:
      prediction, reference: hard labels of one case, shaped as `kind` says.
      num_classes: classes including background, needed for "multiclass".
      spacing: voxel size per spatial axis in the array's axis order; None means 1 (voxels).
      nsd_tolerance: the NSD tolerance, in the units of `spacing` ("mm") or in voxels.
      nsd_unit: "mm" (the units of `spacing`) or "voxels" (distances measured on the index grid,
        whatever the spacing).
      ignore: optional bool mask (*spatial) of voxels left out of every metric.
      instances: also score f1_instance and pq, on the connected components of each class.
      prediction_instances, reference_instances: optional instance label maps (*spatial), used
        instead of connected components; each class scores the instances inside its mask.
      empty: "one" or "nan", how undefined values are filled (module docstring).
      percentile: the Hausdorff percentile, 95 for HD95.
      connectivity: 1 = face neighbours, for the surface voxels and the connected components.
    """
    overlap.check_empty(empty)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if nsd_unit not in ("mm", "voxels"):
        raise ValueError(f"nsd_unit must be 'mm' or 'voxels', got {nsd_unit!r}")
    prediction, reference = np.asarray(prediction), np.asarray(reference)
    if prediction.shape != reference.shape:
        raise ValueError(
            f"prediction and reference must have the same shape, got {prediction.shape} and "
            f"{reference.shape}"
        )
    spatial_shape = prediction.shape[:-1] if kind == "multilabel" else prediction.shape
    if len(spatial_shape) not in (2, 3):
        layout = "(*spatial, classes)" if kind == "multilabel" else "(*spatial)"
        raise ValueError(
            f"{kind} masks of one case must be {layout} with 2 or 3 spatial axes, got shape "
            f"{prediction.shape} (score a batch one case at a time)"
        )
    spacing = surface.as_spacing(spacing, len(spatial_shape))
    keep = None if ignore is None else ~_spatial_mask(ignore, spatial_shape, "ignore")
    score_instances = (
        instances or prediction_instances is not None or reference_instances is not None
    )
    instance_maps = [
        None if labels is None else _spatial_array(labels, spatial_shape, name)
        for labels, name in (
            (prediction_instances, "prediction_instances"),
            (reference_instances, "reference_instances"),
        )
    ]
    diagonal = float(np.linalg.norm((np.asarray(spatial_shape) - 1) * np.asarray(spacing)))

    counts, classes = _overlap_counts(prediction, reference, kind, num_classes, ignore)
    scores = overlap.overlap_scores(counts, empty=empty)
    masks = _class_masks(prediction, reference, kind, classes)
    rows = []
    for index, (label, prediction_mask, reference_mask) in enumerate(masks):
        if keep is not None:
            prediction_mask, reference_mask = prediction_mask & keep, reference_mask & keep
        tp, fp, fn = (int(value) for value in counts[index])
        row: Row = {"class": label, "reference_voxels": tp + fn, "prediction_voxels": tp + fp}
        row.update({name: float(scores[name][index]) for name in OVERLAP_METRICS})
        row.update(
            _surface_row(
                prediction_mask,
                reference_mask,
                spacing=spacing,
                tolerance=nsd_tolerance,
                tolerance_in_voxels=nsd_unit == "voxels",
                percentile=percentile,
                connectivity=connectivity,
                empty=empty,
                diagonal=diagonal,
            )
        )
        if score_instances:
            predicted, referenced = (
                label_instances(mask, connectivity=connectivity)
                if labels is None
                else np.where(mask, labels, 0)
                for labels, mask in zip(
                    instance_maps, (prediction_mask, reference_mask), strict=True
                )
            )
            matching = instance_scores(predicted, referenced, empty=empty)
            row.update({"f1_instance": matching.f1, "pq": matching.pq})
        rows.append(row)
    return rows


def _overlap_counts(
    prediction: np.ndarray,
    reference: np.ndarray,
    kind: str,
    num_classes: int | None,
    ignore: np.ndarray | None,
) -> tuple[np.ndarray, list[int]]:
    """[tp, fp, fn] per foreground class, and the class of each row."""
    if kind == "binary":
        prediction = surface.binary_mask(prediction, "prediction")
        reference = surface.binary_mask(reference, "reference")
        counts = overlap.channel_counts(prediction[..., None], reference[..., None], ignore=ignore)
        return counts, [1]
    if kind == "multiclass":
        if num_classes is None or num_classes < 2:
            raise ValueError(
                f"multiclass needs num_classes >= 2 (background included), got {num_classes}"
            )
        counts = overlap.label_counts(prediction, reference, num_classes, ignore=ignore)
        return counts[1:], list(range(1, num_classes))
    # multilabel: one channel per class
    prediction = surface.binary_mask(prediction, "prediction")
    reference = surface.binary_mask(reference, "reference")
    channels = prediction.shape[-1]
    if num_classes is not None and num_classes != channels:
        raise ValueError(
            f"multilabel masks of shape {prediction.shape} have {channels} channels, but "
            f"num_classes={num_classes}: the last axis holds one channel per class"
        )
    return overlap.channel_counts(prediction, reference, ignore=ignore), list(range(channels))


def _class_masks(
    prediction: np.ndarray, reference: np.ndarray, kind: str, classes: list[int]
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(class, prediction mask, reference mask) per foreground class, as bool arrays."""
    for label in classes:
        if kind == "binary":
            yield label, prediction.astype(np.bool_), reference.astype(np.bool_)
        elif kind == "multiclass":
            yield label, prediction == label, reference == label
        else:
            yield (
                label,
                prediction[..., label].astype(np.bool_),
                reference[..., label].astype(np.bool_),
            )


def _surface_row(
    prediction: np.ndarray,
    reference: np.ndarray,
    *,
    spacing: tuple[float, ...],
    tolerance: float,
    tolerance_in_voxels: bool,
    percentile: float,
    connectivity: int,
    empty: str,
    diagonal: float,
) -> dict[str, float]:
    has_prediction, has_reference = bool(prediction.any()), bool(reference.any())
    if not has_prediction and not has_reference:
        return {
            "hd95": float("nan"),
            "assd": float("nan"),
            "nsd": 1.0 if empty == "one" else np.nan,
        }
    if has_prediction != has_reference:
        worst = diagonal if empty == "one" else float("nan")
        return {"hd95": worst, "assd": worst, "nsd": 0.0}
    distances = surface.surface_distances(prediction, reference, spacing, connectivity=connectivity)
    if tolerance_in_voxels and any(value != 1 for value in spacing):
        on_grid = surface.surface_distances(prediction, reference, connectivity=connectivity)
    else:
        on_grid = distances
    return {
        "hd95": distances.hd95(percentile),
        "assd": distances.assd(),
        "nsd": on_grid.nsd(tolerance),
    }


def _spatial_mask(mask: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    return _spatial_array(mask, shape, name).astype(np.bool_)


def _spatial_array(array: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.shape != shape:
        raise ValueError(f"{name} must have the spatial shape {shape}, got shape {array.shape}")
    return array
