"""NIfTI volumes with their geometry: reading, reorienting to RAS and back, writing predictions.

Axis convention, used by every medical module: a NIfTI file's voxel axes (i, j, k) are our
spatial axes (W, H, D), so arrays are (D, H, W) = (k, j, i), channels last as (D, H, W, C)
(MSD 4D files store modalities on a 4th file axis). Spacings are listed in the same (D, H, W)
order. This is the order nnU-Net's NIfTI reader and SimpleITK's arrays use, and the one
`image_io` has always read NIfTI in. After `to_ras`, D points to Superior, H to Anterior and
W to Right (file axes i, j, k point to R, A, S), whatever the scanner's orientation.
"""

import dataclasses
import pathlib

import nibabel as nib
import numpy as np
from nibabel import orientations

from unetjax.data.errors import DataError

RAS = orientations.axcodes2ornt(("R", "A", "S"))
# Files of one case agree when their affines differ by at most this (mm, per entry).
AFFINE_TOLERANCE_MM = 1e-3


@dataclasses.dataclass(frozen=True)
class Volume:
    """A NIfTI file's voxels in our layout and the geometry they came with.

    Attributes:
      array: (D, H, W) or (D, H, W, C), the file's voxels as stored (scaling applied), not
        reoriented.
      affine: the file's 4x4 voxel (i, j, k) -> world (mm, RAS+) matrix (sform, else qform).
      header: the file's header, kept so that predictions are written with it.
      path: where it was read from, for error messages.
    """

    array: np.ndarray
    affine: np.ndarray
    header: nib.Nifti1Header
    path: str

    @property
    def spacing(self) -> tuple[float, ...]:
        return spacing_of(self.affine)

    @property
    def axcodes(self) -> tuple[str, str, str]:
        """Where the file axes (i, j, k) point, e.g. ("L", "P", "S")."""
        return nib.aff2axcodes(self.affine)


def load_image(path: pathlib.Path) -> nib.Nifti1Image:
    """The lazily loaded nibabel image (header only until its data is read)."""
    try:
        image = nib.load(path)
    except FileNotFoundError as error:
        raise DataError(f"{path}: no such file") from error
    except Exception as error:
        raise DataError(
            f"{path}: cannot read it as NIfTI ({type(error).__name__}: {error}); "
            "expected a complete .nii or .nii.gz file"
        ) from error
    if not isinstance(image, nib.Nifti1Image | nib.Nifti2Image):
        raise DataError(f"{path}: a {type(image).__name__}; expected a NIfTI-1 or NIfTI-2 file")
    if len(image.shape) not in (3, 4):
        raise DataError(
            f"{path}: shape {image.shape}; expected a 3D volume or a 4D one with channels last"
        )
    return image


def file_shape_to_ours(shape: tuple[int, ...]) -> tuple[int, ...]:
    """(i, j, k[, c]) -> (D, H, W[, C]) = (k, j, i[, c])."""
    return (shape[2], shape[1], shape[0], *shape[3:])


def _file_axes(array: np.ndarray) -> tuple[int, ...]:
    """The transpose between our layout and the file's; it is its own inverse."""
    return (2, 1, 0, *range(3, array.ndim))


def read_nifti(path: pathlib.Path) -> Volume:
    """A volume in our layout with its affine and header; integer files keep their dtype."""
    image = load_image(path)
    try:
        data = np.asanyarray(image.dataobj)
    except Exception as error:
        raise DataError(
            f"{path}: cannot decode its voxels ({type(error).__name__}: {error})"
        ) from error
    return Volume(data.transpose(_file_axes(data)), image.affine.copy(), image.header, str(path))


def spacing_of(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel sizes in mm in our (D, H, W) order, from the affine's columns (k, j, i)."""
    sizes = nib.affines.voxel_sizes(affine)
    return float(sizes[2]), float(sizes[1]), float(sizes[0])


def _to_ras_transform(affine: np.ndarray) -> np.ndarray:
    return orientations.ornt_transform(orientations.io_orientation(affine), RAS)


def to_ras(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The array (our layout, file orientation) flipped and permuted to RAS, and its affine.

    Oblique affines stay oblique: the axes are matched to the closest of R, A, S, so no voxel
    is interpolated.
    """
    transform = _to_ras_transform(affine)
    in_file_order = array.transpose(_file_axes(array))
    reoriented = orientations.apply_orientation(in_file_order, transform)
    ras_affine = affine @ orientations.inv_ornt_aff(transform, in_file_order.shape[:3])
    return reoriented.transpose(_file_axes(reoriented)), ras_affine


def from_ras(array: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Undoes `to_ras`: a RAS array (our layout) back to the orientation of `affine`'s file."""
    back = orientations.ornt_transform(RAS, orientations.io_orientation(affine))
    in_file_order = orientations.apply_orientation(array.transpose(_file_axes(array)), back)
    return in_file_order.transpose(_file_axes(in_file_order))


def ras_shape(shape: tuple[int, ...], affine: np.ndarray) -> tuple[int, ...]:
    """The spatial shape (our layout) that `to_ras` gives an array of `shape` and `affine`."""
    ornt = orientations.io_orientation(affine)
    file_shape = (shape[2], shape[1], shape[0])
    ras_file_shape = [0, 0, 0]
    for file_axis, (ras_axis, _) in enumerate(ornt):
        ras_file_shape[int(ras_axis)] = file_shape[file_axis]
    return file_shape_to_ours(tuple(ras_file_shape))


def ras_spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel sizes in mm in our (D, H, W) order after `to_ras` (D = S, H = A, W = R)."""
    ornt = orientations.io_orientation(affine)
    sizes = nib.affines.voxel_sizes(affine)
    by_ras_axis = [0.0, 0.0, 0.0]
    for file_axis, (ras_axis, _) in enumerate(ornt):
        by_ras_axis[int(ras_axis)] = float(sizes[file_axis])
    return by_ras_axis[2], by_ras_axis[1], by_ras_axis[0]


def label_dtype(labels: np.ndarray) -> np.dtype:
    """The smallest unsigned type that holds the labels (uint8 for up to 255 classes)."""
    if labels.size and int(labels.min()) < 0:
        return np.dtype(np.int16)
    high = int(labels.max()) if labels.size else 0
    return np.dtype(np.uint8 if high < 256 else np.uint16 if high < 65536 else np.int32)


def write_label_map(
    path: pathlib.Path,
    labels: np.ndarray,
    affine: np.ndarray,
    header: nib.Nifti1Header,
    dtype: np.dtype | None = None,
) -> pathlib.Path:
    """Writes an integer (D, H, W) label map (file orientation) on a reference file's grid.

    The reference's affine, header fields and sform / qform codes are kept; only the data
    type, the shape (a 4D image's header becomes 3D) and the scaling (none) change.
    """
    if not np.issubdtype(labels.dtype, np.integer) and labels.dtype != bool:
        raise ValueError(f"{path}: labels of dtype {labels.dtype}; expected an integer label map")
    if labels.ndim != 3:
        raise ValueError(f"{path}: labels of shape {labels.shape}; expected (D, H, W)")
    dtype = np.dtype(dtype) if dtype is not None else label_dtype(labels)
    header = header.copy()
    header.set_data_dtype(dtype)
    header.set_data_shape(file_shape_to_ours(labels.shape))
    header.set_slope_inter(1.0, 0.0)
    sform, sform_code = header.get_sform(coded=True)
    qform, qform_code = header.get_qform(coded=True)
    image_class = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
    data = np.ascontiguousarray(labels.astype(dtype).transpose(2, 1, 0))
    image = image_class(data, affine, header=header)
    # The header's forms win over the affine only where they were set: keep their codes.
    image.header.set_sform(sform if sform is not None else affine, int(sform_code))
    image.header.set_qform(qform if qform is not None else affine, int(qform_code))
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, path)
    return path


def write_prediction(path: pathlib.Path, labels: np.ndarray, reference: Volume) -> pathlib.Path:
    """A label map on the reference's grid and in its orientation (as
    `medical_case.labels_to_original_grid` gives it), written with its affine and header."""
    expected = reference.array.shape[:3]
    if labels.shape != expected:
        raise ValueError(
            f"{path}: prediction of shape {labels.shape}; expected the shape of "
            f"{reference.path}, {expected} (file orientation, our (D, H, W) layout)"
        )
    return write_label_map(path, labels, reference.affine, reference.header)
