"""Checking a user's samples before anything is written, and inferring the task from them."""

import dataclasses
import logging
import pathlib
from collections.abc import Sequence

import numpy as np

from unetjax import progress
from unetjax.data import image_io, mask_rule, resize, summary
from unetjax.data.errors import DataError
from unetjax.data.folders import examples
from unetjax.data.samples import Sample, check_patch_fits

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Summary:
    """What validation learnt about the data: what the builder and the model need.

    Attributes:
      min_shape: per split, the smallest size per axis as stored (after data.resize).
      source_sizes: per split, `summary.size_stats` of the sizes in the files.
      task_rule: how the task was decided (`mask_rule.Decision.rule`).
      exif_oriented: how many files (images and masks) an EXIF orientation tag turned upright.
    """

    task: str
    num_classes: int
    in_channels: int
    image_dtype: str
    min_shape: dict[str, list[int]]
    source_sizes: dict[str, dict]
    task_rule: str
    exif_oriented: int = 0


def validate(
    splits: dict[str, list[Sample]],
    *,
    spec: examples.LabelSpec,
    declared_task: str | None,
    declared_num_classes: int | None,
    declared_in_channels: int | None,
    patch_size: Sequence[int],
    show_progress: bool = True,
) -> Summary:
    """Reads every file once; raises DataError naming the first bad file. A progress bar on a
    terminal (`progress.bar`): a folder of hundreds of large images takes a while."""
    channels: dict[int, str] = {}
    dtypes: dict[str, str] = {}
    values_by_file: dict[str, np.ndarray] = {}
    shapes: dict[str, list[list[int]]] = {}
    oriented = 0
    bar = progress.bar(
        total=sum(len(samples) for samples in splits.values()),
        unit="image",
        desc="checking files",
        enabled=show_progress,
        leave=False,
    )
    for split, samples in splits.items():
        for sample in samples:
            image, masks = examples.read_raw(sample, spec)
            oriented += sum(
                image_io.exif_orientation(pathlib.Path(path)) != 1
                for path in (sample.image, *sample.masks)
            )
            channels.setdefault(image.shape[-1], sample.image)
            dtypes.setdefault(str(image.dtype), sample.image)
            if spec.mask_mode == "single":
                values_by_file[sample.masks[0]] = np.unique(masks[0])
            else:
                examples.labels_from_raw(sample, masks, spec)
            shapes.setdefault(split, []).append(list(image.shape[:-1]))
            bar.update()
    bar.close()
    if len(channels) > 1:
        found = ", ".join(f"{c} in {path}" for c, path in channels.items())
        raise DataError(f"images with different channel counts ({found}); set color_mode")
    if len(dtypes) > 1:
        found = ", ".join(f"{dtype} in {path}" for dtype, path in dtypes.items())
        raise DataError(
            f"images of different pixel types ({found}); expected one type for the whole set "
            "(convert the images to one bit depth)"
        )
    (in_channels,) = channels
    if declared_in_channels is not None and declared_in_channels != in_channels:
        raise DataError(
            f"{next(iter(channels.values()))}: {in_channels} channels; expected "
            f"in_channels={declared_in_channels}"
        )
    if spec.mask_mode == "single":
        decision = mask_rule.decide(
            values_by_file,
            task=declared_task,
            num_classes=declared_num_classes,
            ignore_index=spec.ignore_index,
            threshold=spec.mask_threshold,
        )
        task, num_classes, rule = decision.task, decision.num_classes, decision.rule
    else:
        task, num_classes = spec.task, spec.num_classes
        rule = f"{spec.mask_mode} masks"
        if declared_task not in (None, task) or declared_num_classes not in (None, num_classes):
            raise DataError(
                f"task={declared_task!r}, num_classes={declared_num_classes}; this data is "
                f"{task} with {num_classes} output channel(s)"
            )
    if spec.ignore_index is not None and spec.ignore_index < num_classes:
        raise DataError(
            f"data.ignore_index={spec.ignore_index} is one of the classes 0..{num_classes - 1}; "
            "expected a value outside them (e.g. 255)"
        )
    min_shape = {
        split: np.min([resize.target_size(s, spec.resize) for s in split_shapes], axis=0).tolist()
        for split, split_shapes in shapes.items()
    }
    check_patch_fits(min_shape, patch_size, str(pathlib.Path(splits["train"][0].image).parent))
    logger.debug(
        "validated %s: %s, %d classes, %d channels", list(splits), task, num_classes, in_channels
    )
    return Summary(
        task=task,
        num_classes=num_classes,
        in_channels=in_channels,
        image_dtype=next(iter(dtypes)),
        min_shape=min_shape,
        source_sizes={split: summary.size_stats(s) for split, s in shapes.items()},
        task_rule=rule,
        exif_oriented=oriented,
    )
