"""An MSD-layout folder (dataset.json, imagesTr/, labelsTr/, imagesTs/) from one image and its
label map, one class kept: the shared TotalSegmentator CT as liver vs background for a short
real 3D run (configs/decathlon_liver.py, docs/medical.md).

    python -m unetjax.data.volumes.msd_from_labelmap \
        ../shared/data/totalsegmentator_ct /tmp/liver_msd

The shared folder is not in the MSD layout and holds one labelled subject (example_ct_sm with
example_seg, 30 slices). The image and labels are cut into `slabs` runs of consecutive slices
along the file's third axis (cases <name>_slab0, <name>_slab1, ...: nibabel's slicer keeps each
slab's place in the world in its affine), so one slab can train and another validate. The label
map keeps one class (label 5, liver, becomes 1; every other label 0). The unlabelled full CT
(example_ct, 112 slices) is linked as imagesTs/ for prediction. Nothing is written into the
source folder; the slabs are small new files, the test image a symlink.
"""

import argparse
import itertools
import json
import logging
import pathlib
import sys
from collections.abc import Sequence

import nibabel as nib
import numpy as np

from unetjax.data.errors import DataError
from unetjax.data.volumes import nifti_io

# TotalSegmentator v2 "total" task ids (the shared README).
LIVER = 5


def slab_bounds(num_slices: int, slabs: int) -> list[tuple[int, int]]:
    """[start, stop) of `slabs` runs of consecutive slices covering `num_slices`."""
    if not 1 <= slabs <= num_slices:
        raise ValueError(f"slabs={slabs} for {num_slices} slices; expected 1..{num_slices}")
    edges = np.linspace(0, num_slices, slabs + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges)]


def _save(image: nib.Nifti1Image, data: np.ndarray, path: pathlib.Path) -> None:
    """`data` with `image`'s affine and header (its sform and qform codes kept)."""
    header = image.header.copy()
    header.set_data_dtype(data.dtype)
    out = nib.Nifti1Image(data, image.affine, header=header)
    out.header.set_sform(image.affine, int(image.header["sform_code"]))
    out.header.set_qform(image.affine, int(image.header["qform_code"]))
    nib.save(out, path)


def write_msd(
    out: pathlib.Path,
    image_path: pathlib.Path,
    label_path: pathlib.Path,
    *,
    keep: int,
    class_name: str,
    slabs: int = 2,
    test_images: Sequence[pathlib.Path] = (),
    modality: str = "CT",
    name: str = "case",
) -> pathlib.Path:
    """Writes the MSD folder `out` (see the module doc): labels == `keep` become 1."""
    image, labels = nifti_io.load_image(image_path), nifti_io.load_image(label_path)
    if image.shape[:3] != labels.shape[:3]:
        raise DataError(f"{image_path} of shape {image.shape} and {label_path} of {labels.shape}")
    label_data = np.asarray(labels.dataobj)
    if not np.any(label_data == keep):
        raise DataError(f"{label_path}: no voxel has label {keep} ({class_name})")
    out = pathlib.Path(out)
    for folder in ("imagesTr", "labelsTr", "imagesTs"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    image_data = np.asarray(image.dataobj)
    training = []
    for index, (start, stop) in enumerate(slab_bounds(image.shape[2], slabs)):
        case_id = f"{name}_slab{index}"
        _save(
            image.slicer[:, :, start:stop],
            image_data[:, :, start:stop],
            out / "imagesTr" / f"{case_id}.nii.gz",
        )
        binary = (label_data[:, :, start:stop] == keep).astype(np.uint8)
        _save(labels.slicer[:, :, start:stop], binary, out / "labelsTr" / f"{case_id}.nii.gz")
        training.append(
            {"image": f"./imagesTr/{case_id}.nii.gz", "label": f"./labelsTr/{case_id}.nii.gz"}
        )
    test = []
    for path in test_images:
        link = out / "imagesTs" / pathlib.Path(path).name
        link.unlink(missing_ok=True)
        link.symlink_to(pathlib.Path(path).resolve())
        test.append(f"./imagesTs/{link.name}")
    meta = {
        "name": f"{name}_{class_name}",
        "description": f"{image_path.name}: {class_name} (label {keep}) vs background, "
        f"{slabs} slabs",
        "modality": {"0": modality},
        "labels": {"0": "background", "1": class_name},
        "numTraining": len(training),
        "numTest": len(test),
        "training": training,
        "test": test,
    }
    (out / "dataset.json").write_text(json.dumps(meta, indent=2))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="the totalsegmentator_ct folder")
    parser.add_argument("output", help="the MSD folder to write (data.manual_dir)")
    parser.add_argument("--slabs", type=int, default=2)
    args = parser.parse_args(argv)
    source = pathlib.Path(args.source)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    written = write_msd(
        pathlib.Path(args.output),
        source / "example_ct_sm.nii.gz",
        source / "example_seg.nii.gz",
        keep=LIVER,
        class_name="liver",
        slabs=args.slabs,
        test_images=[source / "example_ct.nii.gz"],
        name="totalseg",
    )
    logging.info("wrote %s", written)
    return 0


if __name__ == "__main__":
    sys.exit(main())
