"""A medical case from its files to the training grid (RAS, target spacing, normalised) and a
prediction from the training grid back onto the case's own file grid.

The builder and predict both use these, so training and inference see the same preprocessing.
Order as in nnU-Net: normalise at the original resolution, then resample.
"""

import dataclasses
import pathlib
from collections.abc import Sequence

import numpy as np
from nibabel import orientations

from unetjax.data.errors import DataError
from unetjax.data.volumes import nifti_io, resample
from unetjax.data.volumes.intensity import VolumeNormalisation


@dataclasses.dataclass(frozen=True)
class CaseImage:
    """A case's channels stacked last, in our layout and the file's orientation.

    Attributes:
      image: float32 (D, H, W, C).
      reference: the first image file, whose affine and header predictions are written with.
      filled: how many non-finite voxels were replaced by `nonfinite_fill` (0 when none).
    """

    image: np.ndarray
    reference: nifti_io.Volume
    filled: int = 0


@dataclasses.dataclass(frozen=True)
class GridMapping:
    """What takes an array on the training grid back to a case file's grid.

    Attributes:
      original_shape: the file's spatial shape in our (D, H, W) layout (= file (k, j, i)).
      original_affine: the file's 4x4 affine.
      spacing: the training grid's spacing, (D, H, W) in RAS.
    """

    original_shape: tuple[int, int, int]
    original_affine: np.ndarray
    spacing: tuple[float, float, float]


def read_case_image(
    paths: Sequence[str],
    *,
    case_id: str = "",
    channel_names: Sequence[str] = (),
    nonfinite_fill: float | None = None,
) -> CaseImage:
    """One 3D file per channel, or one 4D file with the channels last.

    Non-finite voxels (NaN, inf) would only show later as a NaN loss: they are a DataError
    naming the case, channel and count, or replaced by `nonfinite_fill` (data.nonfinite_fill)
    where one is given.
    """
    volumes = [nifti_io.read_nifti(pathlib.Path(p)) for p in paths]
    channels, files = [], []
    for volume in volumes:
        first = volumes[0]
        if volume.array.shape[:3] != first.array.shape[:3]:
            raise DataError(
                f"{volume.path}: shape {volume.array.shape[:3]}; expected the shape of the "
                f"case's first channel {first.path}, {first.array.shape[:3]}"
            )
        if np.abs(volume.affine - first.affine).max() > nifti_io.AFFINE_TOLERANCE_MM:
            raise DataError(
                f"{volume.path}: its affine differs from the first channel's ({first.path}) by "
                f"more than {nifti_io.AFFINE_TOLERANCE_MM} mm; expected one grid for all channels"
            )
        array = volume.array.astype(np.float32)
        channels.append(array if array.ndim == 4 else array[..., None])
        files += [volume.path] * channels[-1].shape[-1]
    image = np.concatenate(channels, axis=-1)
    nonfinite = ~np.isfinite(image)
    filled = int(nonfinite.sum())
    if filled and nonfinite_fill is None:
        channel = int(np.flatnonzero(nonfinite.any(axis=(0, 1, 2)))[0])
        name = f" ({channel_names[channel]})" if channel < len(channel_names) else ""
        count = int(nonfinite[..., channel].sum())
        raise DataError(
            f"case {case_id or files[channel]}: channel {channel}{name} has {count} non-finite "
            f"voxels (NaN or inf) of {nonfinite[..., channel].size} in {files[channel]}; "
            "replace them in the file, or set data.nonfinite_fill to a value to train with "
            "in their place (e.g. the background intensity)"
        )
    if filled:
        image[nonfinite] = nonfinite_fill
    return CaseImage(image, volumes[0], filled)


def mapping_for(reference: nifti_io.Volume, spacing: Sequence[float]) -> GridMapping:
    shape = reference.array.shape[:3]
    return GridMapping(tuple(shape), reference.affine, tuple(float(s) for s in spacing))


def training_shape(mapping: GridMapping) -> tuple[int, ...]:
    """The (D, H, W) shape `to_training_grid` gives the case's file."""
    affine = mapping.original_affine
    ras = nifti_io.ras_shape(mapping.original_shape, affine)
    return resample.shape_for_spacing(ras, nifti_io.ras_spacing(affine), mapping.spacing)


def file_index(point: Sequence[int], mapping: GridMapping) -> tuple[int, int, int]:
    """A voxel (D, H, W) of the training grid as the nearest voxel (i, j, k) of the case's file:
    the resampling and the reorientation of `to_training_grid` undone, so a reader finds the
    same place in a viewer."""
    affine = mapping.original_affine
    ras = np.asarray(nifti_io.ras_shape(mapping.original_shape, affine))
    scale = ras / np.asarray(training_shape(mapping), float)
    position = scale * np.asarray(point, float) + 0.5 * scale - 0.5  # as resample's grids
    index = np.clip(np.floor(position + 0.5), 0, ras - 1).astype(int)[::-1]  # (R, A, S)
    extent = ras[::-1]
    voxel = []
    for ras_axis, flip in orientations.io_orientation(affine):
        axis = int(ras_axis)
        voxel.append(int(index[axis] if flip > 0 else extent[axis] - 1 - index[axis]))
    return tuple(voxel)


def to_training_grid(
    image: np.ndarray,
    labels: np.ndarray | None,
    affine: np.ndarray,
    *,
    spacing: Sequence[float],
    normalisation: VolumeNormalisation,
    image_order: int = 3,
    label_order: int = 1,
) -> tuple[np.ndarray, np.ndarray | None]:
    """(image float32 (D, H, W, C), labels or None) normalised, in RAS, at `spacing`."""
    ras_image, _ = nifti_io.to_ras(normalisation(image), affine)
    spacing_before = nifti_io.ras_spacing(affine)
    shape = resample.shape_for_spacing(ras_image.shape[:3], spacing_before, spacing)
    resampled = resample.resample_image(
        ras_image, shape, spacing=spacing_before, new_spacing=spacing, order=image_order
    )
    if labels is None:
        return resampled, None
    ras_labels, _ = nifti_io.to_ras(labels, affine)
    resampled_labels = resample.resample_labels(
        ras_labels, shape, spacing=spacing_before, new_spacing=spacing, order=label_order
    )
    return resampled, resampled_labels


def labels_to_original_grid(labels: np.ndarray, mapping: GridMapping, order: int = 1) -> np.ndarray:
    """A (D, H, W) label map on the training grid back on the file's grid and orientation
    (ready for `nifti_io.write_label_map` with the file's affine and header)."""
    original_spacing = nifti_io.ras_spacing(mapping.original_affine)
    shape = nifti_io.ras_shape(mapping.original_shape, mapping.original_affine)
    restored = resample.resample_labels(
        labels, shape, spacing=mapping.spacing, new_spacing=original_spacing, order=order
    )
    return nifti_io.from_ras(restored, mapping.original_affine)


def image_to_original_grid(array: np.ndarray, mapping: GridMapping, order: int = 1) -> np.ndarray:
    """A float (D, H, W[, C]) array (e.g. class probabilities) back on the file's grid."""
    original_spacing = nifti_io.ras_spacing(mapping.original_affine)
    shape = nifti_io.ras_shape(mapping.original_shape, mapping.original_affine)
    restored = resample.resample_image(
        array, shape, spacing=mapping.spacing, new_spacing=original_spacing, order=order
    )
    return nifti_io.from_ras(restored, mapping.original_affine)
