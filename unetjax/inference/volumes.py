"""Whole-volume prediction of NIfTI files with a model trained on the `decathlon` dataset.

A case goes through what its training cases went through (`medical_case.to_training_grid`):
normalised with the run's stored statistics at its own resolution, reoriented to RAS and
resampled to the run's target spacing. It is then predicted by sliding window (overlap-tile with
Gaussian blending, `tiling.predict_tiled`; the training patch size and half-tile overlap unless
told otherwise) at the predictor's depth L, optionally mean over mirrorings, and the argmax labels
go back onto the file's own grid and orientation (`medical_case.labels_to_original_grid`), to be
written with the file's affine and header (`nifti_io.write_prediction`).

Inputs: a 3D file is a one-channel case, a 4D file a case with its channels last (MSD), and
nnU-Net channel files `<case>_0000.nii.gz`, `<case>_0001.nii.gz`, ... together one case.
"""

from __future__ import annotations

import dataclasses
import glob
import pathlib
import re
from collections.abc import Iterator, Sequence

import numpy as np

from unetjax.data import image_io
from unetjax.data.errors import DataError
from unetjax.data.volumes import medical_case, nifti_io
from unetjax.data.volumes.preprocessing import VolumePreprocessing
from unetjax.inference.from_files import FileResult, predict_from_files, unique_names
from unetjax.inference.predictor import Predictor
from unetjax.inference.tiling import TileOptions

NIFTI_SUFFIXES = (".nii", ".nii.gz")
CHANNEL_FILE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})\.nii(\.gz)?$", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class VolumeCase:
    """One case to predict: its id (the output's name) and its files, channel order."""

    case_id: str
    paths: tuple[pathlib.Path, ...]


def is_nifti(path: pathlib.Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def expand_inputs(inputs: Sequence[str]) -> tuple[list[pathlib.Path], list[tuple[str, str]]]:
    """NIfTI files named by paths, folders (their NIfTI files) and globs; and the inputs that
    name none."""
    files, failures = [], []
    for item in inputs:
        path = pathlib.Path(item)
        if glob.has_magic(item):
            found = sorted(pathlib.Path(p) for p in glob.glob(item))
        elif path.is_dir():
            found = sorted(path.iterdir())
        else:
            found = [path]
        # Names starting with "." are macOS resource forks (the MSD archives hold "._x.nii.gz").
        found = [p for p in found if is_nifti(p) and not p.name.startswith(".")]
        if not found:
            failures.append((item, "names no .nii or .nii.gz file"))
        files += found
    return files, failures


def group_cases(files: Sequence[pathlib.Path]) -> list[VolumeCase]:
    """Cases from files: nnU-Net channel files of one case id (in one folder) together, each
    other file alone. Raises DataError for channel numbers that are not 0000, 0001, ..."""
    groups: dict[tuple[pathlib.Path, str], dict[int, pathlib.Path]] = {}
    for path in files:
        match = CHANNEL_FILE.match(path.name)
        if match is None:
            groups.setdefault((path, image_io.file_stem(path)), {})[0] = path
        else:
            groups.setdefault((path.parent, match["case"]), {})[int(match["channel"])] = path
    cases = []
    for (where, case_id), found in groups.items():
        if sorted(found) != list(range(len(found))):
            raise DataError(
                f"case {case_id} in {where}: channel files {sorted(found)}; expected "
                f"{case_id}_0000 up to {case_id}_{len(found) - 1:04d} (nnU-Net naming)"
            )
        cases.append(VolumeCase(case_id, tuple(found[c] for c in sorted(found))))
    return cases


def sliding_window(
    predictor: Predictor, tile: int | Sequence[int] | None, **options
) -> TileOptions:
    """The tiles: `tile` per axis, or the run's (`Predictor.default_tile`, its training patch
    size); overlap half a tile."""
    if not tile:
        tile = tuple(predictor.default_tile)
    return TileOptions(tile=tile, **options)


def predict_case(
    predictor: Predictor,
    case: medical_case.CaseImage,
    preprocessing: VolumePreprocessing,
    *,
    tile: TileOptions,
    tta: bool = False,
    min_size: int = 0,
) -> np.ndarray:
    """The label map (D, H, W) on the case's file grid and orientation (our layout)."""
    num_channels = len(preprocessing.channel_names)
    if case.image.shape[-1] != num_channels:
        raise DataError(
            f"{case.reference.path}: {case.image.shape[-1]} channel(s); the model takes "
            f"{num_channels} ({', '.join(preprocessing.channel_names)}): give a 4D file or "
            "<case>_0000, <case>_0001, ... files"
        )
    image, _ = medical_case.to_training_grid(
        case.image,
        None,
        case.reference.affine,
        spacing=preprocessing.target_spacing,
        normalisation=preprocessing.normalisation,
        image_order=preprocessing.image_order,
    )
    predictor.check_image(image, case.reference.path)
    probabilities = predictor.predict(image, tile=tile, tta=tta, normalized=True)
    labels = predictor.postprocess(probabilities, min_size=min_size)
    mapping = medical_case.mapping_for(case.reference, preprocessing.target_spacing)
    return medical_case.labels_to_original_grid(labels, mapping, order=preprocessing.label_order)


def predict_file(
    predictor: Predictor,
    case: VolumeCase,
    preprocessing: VolumePreprocessing,
    output: pathlib.Path,
    **options,
) -> pathlib.Path:
    """Predicts one case and writes `output` with its first file's affine and header."""
    loaded = medical_case.read_case_image(
        [str(p) for p in case.paths],
        case_id=case.case_id,
        channel_names=preprocessing.channel_names,
        nonfinite_fill=preprocessing.nonfinite_fill,
    )
    labels = predict_case(predictor, loaded, preprocessing, **options)
    return nifti_io.write_prediction(output, labels, loaded.reference)


def predict_volumes(
    predictor: Predictor,
    cases: Sequence[VolumeCase],
    preprocessing: VolumePreprocessing,
    output: pathlib.Path,
    **options,
) -> Iterator[FileResult]:
    """Predicts every case into `output/<case id>.nii.gz` (repeated ids numbered) with the shared
    per-file loop; `options` as `predict_case`'s (tile, tta, min_size)."""
    output.mkdir(parents=True, exist_ok=True)
    names = unique_names([case.case_id for case in cases])

    def predict_one(case: VolumeCase, name: str) -> None:
        predict_file(predictor, case, preprocessing, output / f"{name}.nii.gz", **options)

    return predict_from_files(cases, names, predict_one, source=lambda case: str(case.paths[0]))
