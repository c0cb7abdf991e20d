"""Turning a sample's files into one stored example: image, mask and instance labels."""

import dataclasses
import pathlib

import numpy as np
from scipy import ndimage

from unetjax.data import image_io
from unetjax.data.errors import DataError
from unetjax.data.folder import Sample


@dataclasses.dataclass(frozen=True)
class LabelSpec:
    """How a sample's mask files become labels.

    Attributes:
      mask_mode: "single" (binary or class-index map), "per_class" (one binary mask per
        class: multi-label), "instances" (one binary mask per object, DSB 2018) or "isbi"
        ({0, 255} with 255 = cell interior).
      task: "binary", "multiclass" or "multilabel".
      num_classes: model output channels: 1 for binary, K otherwise.
    """

    spatial_dims: int
    color_mode: str
    mask_mode: str
    task: str
    num_classes: int
    isbi_foreground: str = "membrane"


def read_raw(sample: Sample, spatial_dims: int, color_mode: str) -> tuple[np.ndarray, list]:
    """The image in [0, 1] (*spatial, C) and each mask file as an integer (*spatial) map."""
    image = image_io.read_image(pathlib.Path(sample.image), spatial_dims, color_mode)
    masks = [image_io.read_label_map(pathlib.Path(m), spatial_dims) for m in sample.masks]
    for path, mask in zip(sample.masks, masks, strict=True):
        if mask.shape != image.shape[:-1]:
            raise DataError(
                f"{path}: mask of size {mask.shape}; expected the size of its image "
                f"{sample.image}, {image.shape[:-1]}"
            )
    return image, masks


def connected_components(foreground: np.ndarray) -> np.ndarray:
    """Instance labels (int32, 0 = background) as the connected components of a mask."""
    return ndimage.label(foreground)[0].astype(np.int32)


def labels_from_raw(sample: Sample, masks: list[np.ndarray], spec: LabelSpec) -> dict:
    """mask (uint8 (*spatial) or (*spatial, K)) and instances (int32 (*spatial))."""
    if spec.mask_mode == "instances":
        instances = np.zeros(masks[0].shape, np.int32)
        for index, (path, mask) in enumerate(zip(sample.masks, masks, strict=True), start=1):
            instances[image_io.binarise(mask, pathlib.Path(path)) > 0] = index
        return {"mask": (instances > 0).astype(np.uint8), "instances": instances}
    if spec.mask_mode == "per_class":
        mask = np.stack(
            [
                image_io.binarise(m, pathlib.Path(p))
                for p, m in zip(sample.masks, masks, strict=True)
            ],
            axis=-1,
        )
        return {"mask": mask, "instances": connected_components(mask.any(axis=-1))}
    path = pathlib.Path(sample.masks[0])
    if spec.mask_mode == "isbi":
        values = np.unique(masks[0])
        if not np.isin(values, (0, 255)).all():
            raise DataError(f"{path}: values {values[:8].tolist()}; expected {{0, 255}}")
        interior = (masks[0] == 255).astype(np.uint8)
        mask = interior if spec.isbi_foreground == "interior" else 1 - interior
        return {"mask": mask, "instances": connected_components(interior)}
    mask = single_mask(masks[0], path, spec)
    return {"mask": mask, "instances": connected_components(mask > 0)}


def single_mask(labels: np.ndarray, path: pathlib.Path, spec: LabelSpec) -> np.ndarray:
    """A binary or class-index mask file as uint8 class indices, checked against the classes."""
    if spec.task == "binary":
        return image_io.binarise(labels, path)
    outside = (labels < 0) | (labels >= spec.num_classes)
    if outside.any():
        raise DataError(
            f"{path}: mask value {int(labels[outside][0])} outside the declared classes; "
            f"expected class indices 0..{spec.num_classes - 1}"
        )
    return labels.astype(np.uint8)


def load_example(sample: Sample, spec: LabelSpec) -> dict:
    """The stored example of a sample: id, image float32 in [0, 1], mask, instances."""
    image, masks = read_raw(sample, spec.spatial_dims, spec.color_mode)
    return {"id": sample.stem, "image": image, **labels_from_raw(sample, masks, spec)}
