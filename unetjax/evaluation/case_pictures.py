"""Pictures of the worst cases for `report.html`: where a prediction misses, where it overreaches.

2D cases show the image, the reference and the prediction side by side; volumes show three
orthogonal slices through the largest error component and three through the largest reference
structure, each labelled with the case, the slice index (in the file's own grid for Decathlon
volumes, `medical_case.file_index`) and the metric values.

Colours: false negatives in Okabe-Ito sky blue (#56B4E9), false positives in Okabe-Ito yellow
(#F0E442), correctly predicted foreground in translucent white. Okabe and Ito chose their palette
to stay distinct under protanopia, deuteranopia and tritanopia, and blue against yellow is the
contrast that red-green colour blindness keeps. Both also stand apart from red tissue
(endoscopy): yellow by its lightness, sky blue by its hue; red, orange, green or purple would sink
into the tissue or into each other for a deuteranopic reader. Every picture has its legend.

The collector keeps, per setting (depth L, mode), the `keep` cases with the lowest headline
metric, rendered when they enter, as PNG bytes: memory stays bounded whatever the split's size.
"""

from __future__ import annotations

import dataclasses
import heapq
import io
import itertools
import math
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib import patheffects
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from nibabel import orientations
from scipy import ndimage

from unetjax.data import transforms
from unetjax.data.volumes import medical_case

FALSE_NEGATIVE = (0x56 / 255, 0xB4 / 255, 0xE9 / 255)  # Okabe-Ito sky blue
FALSE_POSITIVE = (0xF0 / 255, 0xE4 / 255, 0x42 / 255)  # Okabe-Ito yellow
FOREGROUND = (1.0, 1.0, 1.0)
FOREGROUND_ALPHA, ERROR_ALPHA = 0.45, 0.85
OUTLINE = [patheffects.withStroke(linewidth=2.5, foreground="black")]  # white on black
LABELLED_METRICS = ("dice", "iou", "hd95")
# Volumes in the training grid are RAS with axes (D, H, W) = (S, A, R).
VOLUME_VIEWS = ("axial", "coronal", "sagittal")
FILE_AXES = "ijk"


@dataclasses.dataclass(frozen=True)
class Picture:
    """One case at one setting, drawn: the PNG and its caption (case, setting, metrics)."""

    case: str
    depth: int
    mode: str
    png: bytes
    caption: str


def legend_handles() -> list:
    return [
        Line2D([], [], color="white", linewidth=1.0, path_effects=OUTLINE, label="outline"),
        Patch(color=FOREGROUND, alpha=FOREGROUND_ALPHA, label="reference / correctly predicted"),
        Patch(color=FALSE_POSITIVE, label="false positive (predicted, not in reference)"),
        Patch(color=FALSE_NEGATIVE, label="false negative (in reference, missed)"),
    ]


def foreground_and_errors(
    prediction: np.ndarray, reference: np.ndarray, kind: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(reference foreground, correct foreground, false positives, false negatives), spatial
    bool masks. Multi-class: a voxel given the wrong foreground class counts as missed (false
    negative); multi-label (*spatial, K): any class's error, a miss shown over an overreach."""
    if kind == "multiclass":
        wrong = prediction != reference
        reference_fg = reference > 0
        fn = reference_fg & wrong
        fp = (prediction > 0) & wrong & ~reference_fg
        return reference_fg, reference_fg & ~wrong, fp, fn
    prediction, reference = prediction.astype(bool), reference.astype(bool)
    fn_all, fp_all = reference & ~prediction, prediction & ~reference
    if kind == "multilabel":
        fn = fn_all.any(axis=-1)
        return reference.any(-1), (reference & prediction).any(-1), fp_all.any(-1) & ~fn, fn
    return reference, reference & prediction, fp_all, fn_all


def display_image(image: np.ndarray) -> np.ndarray:
    """A normalised image (*spatial, C) as RGB floats in [0, 1]: the 1st to 99th percentile
    stretched (jointly over the channels of an RGB image, so colours stay), else the first
    channel in grey."""
    channels = image if image.shape[-1] == 3 else image[..., :1]
    low, high = np.percentile(channels, (1, 99))
    scaled = np.clip((channels - low) / max(high - low, 1e-6), 0, 1)
    return scaled if scaled.shape[-1] == 3 else np.repeat(scaled, 3, axis=-1)


def overlay(rgb: np.ndarray, masks: Sequence[tuple[np.ndarray, tuple, float]]) -> np.ndarray:
    """`rgb` with each (mask, colour, alpha) blended over it, in order."""
    out = rgb.copy()
    for mask, colour, alpha in masks:
        out[mask] = (1 - alpha) * out[mask] + alpha * np.asarray(colour)
    return out


def largest_component_point(mask: np.ndarray) -> tuple[int, ...] | None:
    """Per axis, the slice through the largest connected component of `mask` that holds most
    of it (its widest cross-section); None for an empty mask."""
    components, count = ndimage.label(mask)
    if count == 0:
        return None
    largest = np.argmax(np.bincount(components.ravel())[1:]) + 1
    where = components == largest
    axes = range(mask.ndim)
    return tuple(
        int(np.argmax(where.sum(axis=tuple(a for a in axes if a != axis)))) for axis in axes
    )


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    return buffer.getvalue()


def _metrics_text(metrics: Mapping[str, float]) -> str:
    return ", ".join(
        f"{name} {metrics[name]:.3f}" if math.isfinite(metrics[name]) else f"{name} n/a"
        for name in LABELLED_METRICS
        if name in metrics
    )


def _panel(axes, rgb, title: str, outline=None, aspect: float = 1.0) -> None:
    """An image panel; `outline`'s boundary drawn white on black, visible on any background;
    `aspect`: a pixel's height over its width (anisotropic voxels)."""
    axes.imshow(rgb, interpolation="nearest", aspect=aspect)
    if outline is not None and outline.any() and not outline.all():
        axes.contour(
            outline.astype(np.float32), levels=[0.5], colors="white", linewidths=1.0
        ).set_path_effects(OUTLINE)
    axes.set_title(title, fontsize=9)
    axes.set_xticks([])
    axes.set_yticks([])


def render_2d(image, masks, title: str) -> bytes:
    """Image | reference | prediction with its errors, one legend below."""
    reference_fg, correct, fp, fn = masks
    rgb = display_image(image)
    figure, axes = plt.subplots(1, 3, figsize=(10, 4.2))
    _panel(axes[0], rgb, "image")
    painted = overlay(rgb, [(reference_fg, FOREGROUND, FOREGROUND_ALPHA)])
    _panel(axes[1], painted, "reference", reference_fg)
    errors = [
        (correct, FOREGROUND, FOREGROUND_ALPHA),
        (fp, FALSE_POSITIVE, ERROR_ALPHA),
        (fn, FALSE_NEGATIVE, ERROR_ALPHA),
    ]
    _panel(axes[2], overlay(rgb, errors), "prediction and its errors", correct | fp)
    figure.suptitle(title, fontsize=10)
    figure.legend(handles=legend_handles(), loc="lower center", ncol=2, fontsize=8, facecolor="0.7")
    figure.tight_layout(rect=(0, 0.12, 1, 0.95))
    return _png(figure)


def _slice_label(axis: int, index: int, grid: FileGrid | None, file_voxel) -> str:
    """ "axial slice 12 (file k = 30)" for a Decathlon volume; "axis 0 slice 12" otherwise."""
    if grid is None:
        return f"axis {axis} slice {index}"
    label = f"{VOLUME_VIEWS[axis]} slice {index}"
    if file_voxel is None:
        return label + " (padding, outside the file)"
    voxel, axis_map = file_voxel
    return label + f" (file {FILE_AXES[axis_map[axis]]} = {voxel[axis_map[axis]]})"


def render_3d(image, masks, title: str, grid: FileGrid | None, spacing=None) -> bytes:
    """Three orthogonal slices through the largest error component (top) and through the
    largest reference structure (bottom), one legend below; voxels drawn at `spacing`."""
    spacing = (1.0, 1.0, 1.0) if spacing is None else tuple(spacing)
    reference_fg, correct, fp, fn = masks
    errors = [
        (correct, FOREGROUND, FOREGROUND_ALPHA),
        (fp, FALSE_POSITIVE, ERROR_ALPHA),
        (fn, FALSE_NEGATIVE, ERROR_ALPHA),
    ]
    rgb = display_image(image)
    painted = overlay(rgb, errors)
    rows = [("largest error", fp | fn), ("largest structure", reference_fg)]
    figure, axes = plt.subplots(2, 3, figsize=(10, 7.4), layout="constrained")
    for row, (name, mask) in enumerate(rows):
        point = largest_component_point(mask)
        file_voxel = _file_voxel(point, grid)
        for axis in range(3):
            panel = axes[row, axis]
            if point is None:
                panel.set_axis_off()
                panel.set_title(f"{name}: none", fontsize=9)
                continue
            section = np.flip(np.take(painted, point[axis], axis=axis), axis=0)
            outline = np.flip(np.take(reference_fg, point[axis], axis=axis), axis=0)
            label = _slice_label(axis, point[axis], grid, file_voxel)
            rows_axis, columns_axis = (a for a in range(3) if a != axis)
            aspect = spacing[rows_axis] / spacing[columns_axis]
            _panel(panel, section, f"{name}\n{label}", outline, aspect)
    figure.suptitle(title, fontsize=10)
    figure.legend(
        handles=legend_handles(), loc="outside lower center", ncol=2, fontsize=8, facecolor="0.7"
    )
    return _png(figure)


def _file_voxel(point, grid: FileGrid | None):
    """(file voxel (i, j, k), training axis -> file axis), or None without one."""
    voxel = None if point is None or grid is None else grid.file_voxel(point)
    if voxel is None:
        return None
    ras_axes = [int(a) for a, _ in orientations.io_orientation(grid.mapping.original_affine)]
    # Training axis D, H, W is RAS axis S, A, R (2, 1, 0); the file axis holding that RAS axis.
    return voxel, {axis: ras_axes.index(2 - axis) for axis in range(3)}


@dataclasses.dataclass(frozen=True)
class FileGrid:
    """Where a scored volume sits in its case's file: the mapping back, and the corner of the
    centred crop it was scored on in the training grid (zeros for the whole grid)."""

    mapping: medical_case.GridMapping
    origin: tuple[int, ...]

    def file_voxel(self, point: Sequence[int]) -> tuple[int, int, int] | None:
        """The file's voxel (i, j, k) at a point of the scored array; None in the padding."""
        shape = medical_case.training_shape(self.mapping)
        inside = [p + o for p, o in zip(point, self.origin, strict=True)]
        if any(not 0 <= p < s for p, s in zip(inside, shape, strict=True)):
            return None
        return medical_case.file_index(inside, self.mapping)


def file_grid(batch: Mapping, index: int, spatial_shape: Sequence[int]) -> FileGrid | None:
    """The case's place in its file, when the batch says (Decathlon volumes), else None."""
    if not {"original_shape", "original_affine", "spacing"} <= set(batch):
        return None
    mapping = medical_case.GridMapping(
        tuple(int(n) for n in batch["original_shape"][index]),
        np.asarray(batch["original_affine"][index], np.float64),
        tuple(float(s) for s in batch["spacing"][index]),
    )
    origin = transforms.centre_crop_origin(medical_case.training_shape(mapping), spatial_shape)
    return FileGrid(mapping, tuple(origin))


class Collector:
    """Keeps the `keep` worst cases per setting by `metric` (lowest first; NaN, e.g. Dice of
    two empty masks, counts as perfect), each rendered once as it enters."""

    def __init__(self, keep: int, metric: str = "dice"):
        self.keep, self.metric = keep, metric
        self._heaps: dict[tuple[int, str], list] = {}
        self._order = itertools.count()

    def offer(
        self,
        case: str,
        depth: int,
        mode: str,
        image: np.ndarray,
        prediction: np.ndarray,
        reference: np.ndarray,
        *,
        kind: str,
        rows: Sequence[Mapping],
        grid: FileGrid | None = None,
        spacing: Sequence[float] | None = None,
        ignore: np.ndarray | None = None,
    ) -> None:
        """One scored case: image (*spatial, C), labels as `case_metrics` took them, its rows;
        `ignore`: voxels left out of scoring, drawn as they are, never as errors."""
        if self.keep <= 0:
            return
        metrics = {
            name: _mean([row[name] for row in rows]) for name in LABELLED_METRICS if name in rows[0]
        }
        value = metrics.get(self.metric, math.nan)
        rank = value if math.isfinite(value) else math.inf
        heap = self._heaps.setdefault((depth, mode), [])
        if len(heap) >= self.keep and rank >= -heap[0][0]:
            return
        masks = foreground_and_errors(np.asarray(prediction), np.asarray(reference), kind)
        if ignore is not None:
            ignore = np.asarray(ignore, bool)
            if ignore.ndim > masks[0].ndim:  # (*spatial, 1) or per class: ignored in any
                ignore = ignore.any(axis=-1)
            masks = tuple(mask & ~ignore for mask in masks)
        caption = f"{case} at L{depth} {mode}: {_metrics_text(metrics)}"
        if image.ndim == 3:
            png = render_2d(image, masks, caption)
        else:
            png = render_3d(image, masks, caption, grid, spacing)
        picture = Picture(case, depth, mode, png, caption)
        entry = (-rank, next(self._order), picture)
        if len(heap) < self.keep:
            heapq.heappush(heap, entry)
        else:
            heapq.heapreplace(heap, entry)

    def pictures(self) -> list[Picture]:
        """Every kept picture, by setting, worst first."""
        kept = []
        for setting in sorted(self._heaps, key=lambda s: (s[0], s[1] != "fast", s[1])):
            entries = sorted(self._heaps[setting], key=lambda e: (-e[0], e[1]))
            kept += [entry[2] for entry in entries]
        return kept


def _mean(values: Sequence[float]) -> float:
    finite = [float(v) for v in values if math.isfinite(float(v))]
    return sum(finite) / len(finite) if finite else math.nan
