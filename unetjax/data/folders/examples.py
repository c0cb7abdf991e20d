"""Turning a sample's files into one stored example: image, mask and instance labels."""

import dataclasses
import pathlib

import numpy as np

from unetjax.data import image_io, mask_rule, resize
from unetjax.data.errors import DataError
from unetjax.data.samples import Sample
from unetjax.data.weight_map import connected_components


@dataclasses.dataclass(frozen=True)
class LabelSpec:
    """How a sample's mask files become labels.

    Attributes:
      mask_mode: "single" (binary or class-index map), "per_class" (one binary mask per
        class: multi-label), "instances" (one binary mask per object, DSB 2018) or "isbi"
        ({0, 255} with 255 = cell interior).
      task: "binary", "multiclass" or "multilabel".
      num_classes: model output channels: 1 for binary, K otherwise.
      mask_threshold: binary masks are value > mask_threshold (None: {0, 1} / {0, 255}).
      ignore_index: multiclass mask value kept as it is (excluded from loss and metrics).
      resize: `data.resize` (see `resize`), applied to image and labels.
    """

    spatial_dims: int
    color_mode: str
    mask_mode: str
    task: str
    num_classes: int
    isbi_foreground: str = "membrane"
    mask_threshold: int | None = None
    ignore_index: int | None = None
    resize: tuple | None = None


def read_raw(sample: Sample, spec: LabelSpec) -> tuple[np.ndarray, list]:
    """The image (*spatial, C) in its storage dtype and each mask file as an integer
    (*spatial) map, at their size in the files."""
    image = image_io.read_raw_image(pathlib.Path(sample.image), spec.spatial_dims, spec.color_mode)
    masks = [
        image_io.read_label_map(
            pathlib.Path(m), spec.spatial_dims, grey_from_colour=spec.mask_threshold is not None
        )
        for m in sample.masks
    ]
    for path, mask in zip(sample.masks, masks, strict=True):
        if mask.shape != image.shape[:-1]:
            raise DataError(
                f"{path}: mask of size {mask.shape}; expected the size of its image "
                f"{sample.image}, {image.shape[:-1]}"
            )
    return image, masks


def labels_from_raw(sample: Sample, masks: list[np.ndarray], spec: LabelSpec) -> dict:
    """mask (uint8 (*spatial) or (*spatial, K)) and instances (int32 (*spatial))."""
    threshold = spec.mask_threshold
    if spec.mask_mode == "instances":
        instances = np.zeros(masks[0].shape, np.int32)
        for index, (path, mask) in enumerate(zip(sample.masks, masks, strict=True), start=1):
            instances[mask_rule.binarise(mask, pathlib.Path(path), threshold) > 0] = index
        return {"mask": (instances > 0).astype(np.uint8), "instances": instances}
    if spec.mask_mode == "per_class":
        mask = np.stack(
            [
                mask_rule.binarise(m, pathlib.Path(p), threshold)
                for p, m in zip(sample.masks, masks, strict=True)
            ],
            axis=-1,
        )
        return {"mask": mask, "instances": connected_components(mask.any(axis=-1))}
    path = pathlib.Path(sample.masks[0])
    if spec.mask_mode == "isbi":
        if threshold is None and not np.isin(np.unique(masks[0]), (0, 255)).all():
            raise DataError(
                f"{path}: mask values {mask_rule.describe_values(np.unique(masks[0]))}; "
                f"expected {{0, 255}}; {mask_rule.THRESHOLD_FIX}"
            )
        interior = (masks[0] > (127 if threshold is None else threshold)).astype(np.uint8)
        mask = interior if spec.isbi_foreground == "interior" else 1 - interior
        return {"mask": mask, "instances": connected_components(interior)}
    mask = single_mask(masks[0], path, spec)
    return {"mask": mask, "instances": connected_components(mask > 0)}


def single_mask(labels: np.ndarray, path: pathlib.Path, spec: LabelSpec) -> np.ndarray:
    """A binary or class-index mask file as uint8 class indices, checked against the classes
    (the ignore_index value is kept)."""
    if spec.task == "binary":
        return mask_rule.binarise(labels, path, spec.mask_threshold)
    outside = (labels < 0) | (labels >= spec.num_classes)
    if spec.ignore_index is not None:
        outside &= labels != spec.ignore_index
    if outside.any():
        raise DataError(
            f"{path}: mask value {int(labels[outside][0])} outside the classes; "
            f"expected class indices 0..{spec.num_classes - 1}"
        )
    return labels.astype(np.uint8)


def load_example(sample: Sample, spec: LabelSpec) -> dict:
    """The stored example of a sample: id, image in its storage dtype, mask, instances, all
    resized by `spec.resize`."""
    image, masks = read_raw(sample, spec)
    labels = labels_from_raw(sample, masks, spec)
    if spec.resize is not None:
        image = resize.resize_image(image, spec.resize)
        labels = {key: resize.resize_mask(value, spec.resize) for key, value in labels.items()}
    return {"id": sample.stem, "image": image, **labels}
