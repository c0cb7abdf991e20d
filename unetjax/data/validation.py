"""Checking a user's samples before anything is written, and inferring the task from them."""

import dataclasses
import logging
import pathlib
from collections.abc import Sequence

import numpy as np

from unetjax.data import examples
from unetjax.data.errors import DataError
from unetjax.data.folder import Sample

logger = logging.getLogger(__name__)

TASKS = ("binary", "multiclass", "multilabel")


@dataclasses.dataclass(frozen=True)
class Summary:
    """What validation learnt about the data: what the builder and the model need."""

    task: str
    num_classes: int
    in_channels: int
    min_shape: dict[str, list[int]]


def infer_task(
    values_by_file: dict[str, np.ndarray], task: str | None, num_classes: int | None
) -> tuple[str, int]:
    """The task and class count of single-mask data, from the declared ones or the values."""
    if task is None:
        binary = all(
            np.isin(v, (0, 1)).all() or np.isin(v, (0, 255)).all() for v in values_by_file.values()
        )
        task = "binary" if binary and num_classes in (None, 1) else "multiclass"
    if task == "binary":
        return task, 1
    if task != "multiclass":
        raise DataError(f"task={task!r} with one mask per image; expected 'binary' or 'multiclass'")
    if num_classes is None:
        num_classes = max(2, max(int(v.max()) for v in values_by_file.values()) + 1)
    return task, num_classes


def check_patch_fits(min_shape: dict[str, Sequence[int]], patch_size: Sequence[int], name: str):
    """Training images must hold a whole patch: padding would teach the model a false border."""
    shape = min_shape.get("train")
    if shape is not None and any(s < p for s, p in zip(shape, patch_size, strict=True)):
        raise DataError(
            f"{name}: the smallest training image is {tuple(shape)}, smaller than the patch "
            f"{tuple(patch_size)}; expected images at least the patch size (or a smaller patch)"
        )


def validate(
    splits: dict[str, list[Sample]],
    *,
    spec: examples.LabelSpec,
    declared_task: str | None,
    declared_num_classes: int | None,
    declared_in_channels: int | None,
    patch_size: Sequence[int],
) -> Summary:
    """Reads every file once; raises DataError naming the first bad file."""
    channels: dict[int, str] = {}
    values_by_file: dict[str, np.ndarray] = {}
    min_shape: dict[str, list[int]] = {}
    for split, samples in splits.items():
        for sample in samples:
            image, masks = examples.read_raw(sample, spec.spatial_dims, spec.color_mode)
            channels.setdefault(image.shape[-1], sample.image)
            if spec.mask_mode == "single":
                values_by_file[sample.masks[0]] = np.unique(masks[0])
            else:
                examples.labels_from_raw(sample, masks, spec)
            shape = list(image.shape[:-1])
            min_shape[split] = [
                min(a, b) for a, b in zip(min_shape.get(split, shape), shape, strict=True)
            ]
    if len(channels) > 1:
        found = ", ".join(f"{c} in {path}" for c, path in channels.items())
        raise DataError(f"images with different channel counts ({found}); set color_mode")
    (in_channels,) = channels
    if declared_in_channels is not None and declared_in_channels != in_channels:
        raise DataError(
            f"{next(iter(channels.values()))}: {in_channels} channels; expected "
            f"in_channels={declared_in_channels}"
        )
    if spec.mask_mode == "single":
        task, num_classes = infer_task(values_by_file, declared_task, declared_num_classes)
        spec = dataclasses.replace(spec, task=task, num_classes=num_classes)
        for split_samples in splits.values():
            for sample in split_samples:
                path = sample.masks[0]
                examples.single_mask(values_by_file[path], pathlib.Path(path), spec)
    else:
        task, num_classes = spec.task, spec.num_classes
        if declared_task not in (None, task) or declared_num_classes not in (None, num_classes):
            raise DataError(
                f"task={declared_task!r}, num_classes={declared_num_classes}; this data is "
                f"{task} with {num_classes} output channel(s)"
            )
    check_patch_fits(min_shape, patch_size, str(pathlib.Path(splits["train"][0].image).parent))
    logger.info(
        "validated %s: %s, %d classes, %d channels", list(splits), task, num_classes, in_channels
    )
    return Summary(task, num_classes, in_channels, min_shape)
