"""Scanning and checking a Medical Segmentation Decathlon / nnU-Net raw dataset folder.

Two `dataset.json` dialects are read:
  - MSD (and nnU-Net v1): "modality" {"0": "CT"}, "labels" {"0": "background", ...},
    "training" [{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}], "test"
    ["./imagesTs/y.nii.gz"]. Multi-modal images are 4D with the modalities last; where the
    listed image is absent but x_0000.nii.gz, x_0001.nii.gz... are there (nnU-Net v1), those
    channel files are used.
  - nnU-Net v2: "channel_names" {"0": "CT"}, "labels" {"background": 0, ...}, "file_ending",
    "numTraining"; cases are imagesTr/<case>_<XXXX><file_ending> with one file per channel and
    labelsTr/<case><file_ending>.

`scan` reads every training case's headers and labels once and raises DataError naming the
case for: a missing image, channel or label file, a shape or affine mismatch between a case's
files (affines within 1e-3 mm agree), or label values that `dataset.json` does not declare.
"""

import dataclasses
import json
import logging
import pathlib
import re

import numpy as np

from unetjax.data import image_io
from unetjax.data.errors import DataError
from unetjax.data.volumes import nifti_io


@dataclasses.dataclass(frozen=True)
class Case:
    """One case's files: one image (3D, or 4D with channels last) or one file per channel."""

    case_id: str
    images: tuple[str, ...]
    label: str | None


@dataclasses.dataclass(frozen=True)
class CaseHeader:
    """A case's geometry, read from its headers (our (D, H, W) layout, see `nifti_io`)."""

    case_id: str
    shape: tuple[int, int, int]
    affine: np.ndarray
    num_channels: int


@dataclasses.dataclass(frozen=True)
class DecathlonDataset:
    """A scanned dataset folder.

    Attributes:
      channel_names: one modality name per input channel, e.g. ("FLAIR", "T1w").
      labels: class name -> label value, background included (values 0..K-1).
      training: labelled cases; test: the unlabelled cases of imagesTs.
      headers: per training case id, its checked geometry.
    """

    root: str
    name: str
    channel_names: tuple[str, ...]
    labels: dict[str, int]
    training: tuple[Case, ...]
    test: tuple[Case, ...]
    headers: dict[str, CaseHeader]


def read_dataset_json(root: pathlib.Path) -> dict:
    path = root / "dataset.json"
    if not path.is_file():
        raise DataError(f"{path}: no such file; expected an MSD / nnU-Net dataset.json")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not valid JSON ({error})") from error


def _channel_names(meta: dict, path: pathlib.Path) -> tuple[str, ...]:
    names = meta.get("channel_names", meta.get("modality"))
    if not isinstance(names, dict) or not names:
        raise DataError(f"{path}: no 'channel_names' (nnU-Net v2) or 'modality' (MSD) mapping")
    try:
        return tuple(names[k] for k in sorted(names, key=int))
    except ValueError as error:
        raise DataError(f"{path}: channel keys {sorted(names)}; expected '0', '1', ...") from error


def _labels(meta: dict, path: pathlib.Path) -> dict[str, int]:
    """name -> value from either dialect, checked to be 0..K-1."""
    raw = meta.get("labels")
    if not isinstance(raw, dict) or not raw:
        raise DataError(f"{path}: no 'labels' mapping")
    if all(isinstance(v, str) for v in raw.values()):  # MSD: "0": "background"
        try:
            labels = {name: int(value) for value, name in raw.items()}
        except ValueError as error:
            raise DataError(f"{path}: MSD label keys {sorted(raw)}; expected integers") from error
    elif all(isinstance(v, int) for v in raw.values()):  # nnU-Net v2: "background": 0
        labels = dict(raw)
    else:
        raise DataError(
            f"{path}: labels {raw}; expected name -> int (nnU-Net v2) or int -> name (MSD). "
            "Region-based labels (lists of values) are not supported"
        )
    if sorted(labels.values()) != list(range(len(labels))):
        raise DataError(
            f"{path}: label values {sorted(labels.values())}; expected 0..{len(labels) - 1}"
        )
    return labels


def _msd_cases(root: pathlib.Path, entries: list, folder: str) -> list[Case]:
    cases = []
    for entry in entries:
        if isinstance(entry, str):
            image_entry, label_entry = entry, None
        else:
            image_entry, label_entry = entry.get("image"), entry.get("label")
        if image_entry is None:
            raise DataError(f"{root / 'dataset.json'}: {folder} entry {entry} has no 'image'")
        image = root / image_entry
        case_id = image_io.file_stem(image)
        if image.is_file() or not (image.parent / f"{case_id}_0000{_ending(image)}").is_file():
            images = (str(image),)
        else:  # nnU-Net v1: the listed name, one file per channel.
            images = _channel_files(image.parent, case_id, _ending(image))
        label = str(root / label_entry) if label_entry is not None else None
        cases.append(Case(case_id, images, label))
    return cases


def _ending(path: pathlib.Path) -> str:
    return ".nii.gz" if path.name.lower().endswith(".nii.gz") else path.suffix


def _channel_files(folder: pathlib.Path, case_id: str, ending: str) -> tuple[str, ...]:
    pattern = re.compile(re.escape(case_id) + r"_(\d{4})" + re.escape(ending) + "$")
    found = sorted(p.name for p in folder.iterdir() if pattern.match(p.name))
    return tuple(str(folder / name) for name in found)


def _nnunet_cases(root: pathlib.Path, folder: str, ending: str, labelled: bool) -> list[Case]:
    directory = root / folder
    if not directory.is_dir():
        return []
    pattern = re.compile(r"(.+)_\d{4}" + re.escape(ending) + "$")
    # Names starting with "." are macOS resource forks (the MSD archives hold "._x.nii.gz").
    case_ids = sorted(
        {
            m.group(1)
            for p in directory.iterdir()
            if (m := pattern.match(p.name)) and p.name[0] != "."
        }
    )
    label_dir = root / "labelsTr"
    return [
        Case(
            case_id,
            _channel_files(directory, case_id, ending),
            str(label_dir / f"{case_id}{ending}") if labelled else None,
        )
        for case_id in case_ids
    ]


def find_cases(root: pathlib.Path, meta: dict) -> tuple[list[Case], list[Case]]:
    """(training, test) cases as `dataset.json` lists them (MSD) or the folders hold them."""
    if "channel_names" in meta:
        ending = meta.get("file_ending", ".nii.gz")
        if ending not in (".nii", ".nii.gz"):
            raise DataError(
                f"{root / 'dataset.json'}: file_ending {ending!r}; only NIfTI (.nii, .nii.gz) "
                "is read (convert other formats with SimpleITK first)"
            )
        training = _nnunet_cases(root, "imagesTr", ending, labelled=True)
        if "numTraining" in meta and meta["numTraining"] != len(training):
            raise DataError(
                f"{root / 'dataset.json'}: numTraining={meta['numTraining']} but imagesTr holds "
                f"{len(training)} cases"
            )
        return training, _nnunet_cases(root, "imagesTs", ending, labelled=False)
    if "training" not in meta:
        raise DataError(f"{root / 'dataset.json'}: no 'training' list (MSD) or 'channel_names'")
    return _msd_cases(root, meta["training"], "training"), _msd_cases(
        root, meta.get("test", []), "test"
    )


def case_header(case: Case, num_channels: int) -> CaseHeader:
    """The case's shape and affine, checked across its files (headers only)."""
    if not case.images:
        raise DataError(f"case {case.case_id}: no image files found")
    if case.label is None or not pathlib.Path(case.label).is_file():
        raise DataError(f"case {case.case_id}: missing label file {case.label}")
    for path in case.images:
        if not pathlib.Path(path).is_file():
            raise DataError(f"case {case.case_id}: missing image file {path}")
    images = [nifti_io.load_image(pathlib.Path(p)) for p in case.images]
    label = nifti_io.load_image(pathlib.Path(case.label))
    shape = tuple(label.shape)
    if len(shape) != 3:
        raise DataError(f"case {case.case_id}: label {case.label} of shape {shape}; expected 3D")
    channels = sum(image.shape[3] if len(image.shape) == 4 else 1 for image in images)
    if channels != num_channels:
        raise DataError(
            f"case {case.case_id}: {channels} image channel(s) in {list(case.images)}; "
            f"dataset.json declares {num_channels}"
        )
    for path, image in [*zip(case.images, images, strict=True), (case.label, label)]:
        if tuple(image.shape[:3]) != shape:
            raise DataError(
                f"case {case.case_id}: {path} has shape {tuple(image.shape[:3])} but the label "
                f"{case.label} has {shape}; expected one grid for all of a case's files"
            )
        difference = float(np.abs(image.affine - label.affine).max())
        if difference > nifti_io.AFFINE_TOLERANCE_MM:
            raise DataError(
                f"case {case.case_id}: the affine of {path} differs from the label's by "
                f"{difference:.4g} mm (tolerance {nifti_io.AFFINE_TOLERANCE_MM} mm); expected the "
                f"same geometry.\n{np.round(image.affine, 4)}\nvs\n{np.round(label.affine, 4)}"
            )
    return CaseHeader(case.case_id, nifti_io.file_shape_to_ours(shape), label.affine, channels)


def check_label_values(case_id: str, path: str, labels: np.ndarray, declared: dict) -> None:
    """Raises DataError when the label map holds a value `dataset.json` does not declare."""
    if not (np.issubdtype(labels.dtype, np.integer) or np.array_equal(labels, np.round(labels))):
        raise DataError(f"case {case_id}: {path} has non-integer labels; expected class ids")
    if np.issubdtype(labels.dtype, np.unsignedinteger) and labels.dtype.itemsize <= 2:
        values = np.flatnonzero(np.bincount(labels.ravel()))  # far faster than sorting
    else:
        values = np.unique(labels)
    unknown = sorted(set(values.astype(np.int64).tolist()) - set(declared.values()))
    if unknown:
        raise DataError(
            f"case {case_id}: {path} has label value(s) {unknown[:8]} that dataset.json does not "
            f"declare (labels {declared})"
        )


def scan(root: pathlib.Path) -> DecathlonDataset:
    """The dataset in `root`, every training case checked (see module doc)."""
    root = pathlib.Path(root)
    meta = read_dataset_json(root)
    json_path = root / "dataset.json"
    channel_names = _channel_names(meta, json_path)
    labels = _labels(meta, json_path)
    training, test = find_cases(root, meta)
    if not training:
        raise DataError(f"{root}: no training cases found (imagesTr/, dataset.json 'training')")
    headers = {}
    for case in training:
        if case.case_id in headers:
            raise DataError(f"case {case.case_id}: listed twice")
        headers[case.case_id] = case_header(case, len(channel_names))
        label_map = nifti_io.read_nifti(pathlib.Path(case.label)).array
        check_label_values(case.case_id, case.label, label_map, labels)
    logging.info(
        "scanned %s: %d training and %d test cases, channels %s, labels %s",
        root,
        len(training),
        len(test),
        channel_names,
        labels,
    )
    return DecathlonDataset(
        root=str(root),
        name=str(meta.get("name", root.name)),
        channel_names=channel_names,
        labels=labels,
        training=tuple(training),
        test=tuple(test),
        headers=headers,
    )
