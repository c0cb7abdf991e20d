"""From a model's probabilities and a batch of references to per-case metric rows.

The hard labels are the predictor's post-processing at the evaluated threshold (sigmoid) or the
argmax (softmax); the reference is the batch's mask in the label conventions of `losses`.
Distances use the batch's voxel spacing when the dataset has one (NIfTI volumes), else pixels.
Datasets with instance labels (nuclei) also get object-level F1 and panoptic quality.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from unetjax.evaluation import case_pictures, per_case
from unetjax.evaluation.case_metrics import Kind
from unetjax.inference.postprocess import postprocess


def output_kind(output_activation: str, num_classes: int) -> Kind:
    if output_activation == "softmax":
        return "multiclass"
    return "binary" if num_classes == 1 else "multilabel"


def reference_labels(mask: np.ndarray, kind: Kind, spatial_dims: int) -> np.ndarray:
    """One case's mask as `case_metrics` takes it for `kind`."""
    mask = np.asarray(mask)
    if kind == "binary" and mask.ndim == spatial_dims + 1:
        mask = mask[..., 0]
    return mask > 0 if kind == "binary" else mask


def batch_rows(
    probabilities: np.ndarray,
    batch: Mapping[str, np.ndarray],
    *,
    case_ids: list[str],
    split: str,
    depth: int,
    mode: str,
    output_activation: str,
    threshold: float,
    nsd_tolerance: float,
    ignore_index: int | None = None,
    pictures: case_pictures.Collector | None = None,
) -> list[dict]:
    """Rows of every valid case of a batch (probabilities (B, *spatial, K)); each case is
    also offered to `pictures`, which keeps the worst for the report."""
    num_classes = probabilities.shape[-1]
    kind = output_kind(output_activation, num_classes)
    spatial_dims = probabilities.ndim - 2
    valid = batch.get("valid", np.ones(len(probabilities), bool))
    rows, ids = [], iter(case_ids)
    for index in np.flatnonzero(valid):
        labels = postprocess(
            probabilities[index], output_activation=output_activation, threshold=threshold
        )
        spacing = batch["spacing"][index] if "spacing" in batch else None
        instances = "instances" in batch and kind == "binary"
        mask = batch["mask"][index]
        ignore = None if ignore_index is None else np.asarray(mask) == ignore_index
        prediction = labels.astype(bool) if kind == "binary" else labels
        reference = reference_labels(
            mask if ignore is None else np.where(ignore, 0, mask), kind, spatial_dims
        )
        case = next(ids)
        case_rows = per_case.case_rows(
            case,
            split,
            depth,
            mode,
            prediction,
            reference,
            kind=kind,
            num_classes=num_classes if kind == "multiclass" else None,
            spacing=None if spacing is None else tuple(float(s) for s in spacing),
            nsd_tolerance=nsd_tolerance,
            nsd_unit="mm" if spacing is not None else "voxels",
            instances=instances,
            reference_instances=batch["instances"][index] if instances else None,
            ignore=ignore,
        )
        rows += case_rows
        if pictures is not None:
            image = batch["image"][index]
            grid = case_pictures.file_grid(batch, index, image.shape[:-1])
            pictures.offer(
                case, depth, mode, image, prediction, reference,
                kind=kind, rows=case_rows, grid=grid, spacing=spacing, ignore=ignore,
            )  # fmt: skip
    return rows


def case_ids(batch: Mapping[str, np.ndarray], split: str, first_index: int) -> list[str]:
    """The ids of a batch's valid cases: the dataset's `id` feature, else split and position."""
    valid = batch.get("valid", np.ones(len(batch["mask"]), bool))
    if "id" in batch:
        return [_text(batch["id"][i]) for i in np.flatnonzero(valid)]
    return [f"{split}_{first_index + i:04d}" for i in range(int(valid.sum()))]


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
