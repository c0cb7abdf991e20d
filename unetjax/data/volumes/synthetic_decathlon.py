"""Small synthetic Decathlon-format datasets: real NIfTI files with awkward geometry.

Each case has its own shape, an anisotropic spacing (axial slices 2.5-5 mm apart, about
1 mm in-plane) and an affine that cycles through RAS, LPS, a permuted-and-flipped axis order and an
oblique rotation, so that every geometry path is exercised. Labels are ellipsoids placed in
millimetres ("organ", with a smaller "lesion" inside it when there are three classes), and the
two channels are a CT-like int16 image in HU and an MR-like float image with a bias field.
Deterministic for a seed; a few cases take well under a second to write.

    python -m unetjax.data.volumes.synthetic_decathlon /tmp/syn_msd --num-training 6
"""

import argparse
import json
import pathlib

import nibabel as nib
import numpy as np
from scipy import ndimage

CHANNELS = ("CT", "T2")
CLASS_NAMES = ("background", "organ", "lesion")
ORIENTATIONS = ("lps", "oblique", "ras", "permuted")
# Mean intensities of background, organ and lesion in each channel.
CT_HU = (-80.0, 60.0, 140.0)
T2_LEVELS = (200.0, 450.0, 120.0)


def _rotation(rng: np.random.Generator, kind: str) -> np.ndarray:
    """The direction cosines (columns: where file axes i, j, k point in RAS mm)."""
    if kind == "ras":
        return np.eye(3)
    if kind == "lps":
        return np.diag([-1.0, -1.0, 1.0])
    if kind == "permuted":
        return np.eye(3)[:, rng.permutation(3)] * rng.choice([-1.0, 1.0], size=3)
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.deg2rad(rng.uniform(10, 30))
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


def random_geometry(rng: np.random.Generator, kind: str) -> tuple[tuple[int, int, int], np.ndarray]:
    """A file shape (i, j, k) and an affine with thick axial slices: the file axis closest to
    superior (whichever it is in this orientation) has the large spacing, as in most CT."""
    rotation = _rotation(rng, kind)
    thick_axis = int(np.argmax(np.abs(rotation[2])))
    spacing = rng.uniform(0.8, 1.2, size=3)
    spacing[thick_axis] = rng.uniform(2.5, 5.0)
    shape = [int(rng.integers(18, 26)) for _ in range(3)]
    shape[thick_axis] = int(rng.integers(8, 12))
    affine = np.eye(4)
    affine[:3, :3] = rotation * spacing
    affine[:3, 3] = rng.uniform(-100, 100, size=3)
    return tuple(shape), affine


def _labels(rng: np.random.Generator, shape, affine, num_classes: int) -> np.ndarray:
    """Ellipsoids in mm around the volume's centre: an organ, and a lesion inside it."""
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    world = index @ affine[:3, :3].T + affine[:3, 3]
    centre = (np.array(shape) - 1) / 2 @ affine[:3, :3].T + affine[:3, 3]
    extent = np.abs(affine[:3, :3] @ np.array(shape, float))  # mm per world axis
    organ_centre = centre + rng.uniform(-0.1, 0.1, size=3) * extent
    radii = np.maximum(rng.uniform(0.25, 0.35, size=3) * extent, 5.0)
    labels = np.zeros(shape, np.uint8)
    labels[(((world - organ_centre) / radii) ** 2).sum(-1) <= 1] = 1
    if num_classes > 2:
        lesion_centre = organ_centre + rng.uniform(-0.3, 0.3, size=3) * radii
        lesion_radius = max(0.5 * radii.min(), 3.0)
        labels[np.linalg.norm(world - lesion_centre, axis=-1) <= lesion_radius] = 2
    return labels


def _images(rng: np.random.Generator, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CT-like int16 HU and MR-like float32 channels (file axes) for a label map."""
    ct = np.take(np.array(CT_HU), labels) + rng.normal(0, 15, labels.shape)
    ct = ndimage.gaussian_filter(ct, 0.6)
    bias = 1 + 0.2 * np.linspace(-1, 1, labels.shape[0])[:, None, None]
    t2 = np.take(np.array(T2_LEVELS), labels) * bias + rng.normal(0, 20, labels.shape)
    return np.round(ct).astype(np.int16), t2.astype(np.float32)


def _save(array: np.ndarray, affine: np.ndarray, path: pathlib.Path) -> None:
    image = nib.Nifti1Image(array, affine)
    image.header.set_sform(affine, code=1)
    image.header.set_qform(affine, code=1)
    image.header.set_xyzt_units("mm")
    nib.save(image, path)


def _write_case(root, folder, case_id, rng, index, layout, num_classes, labelled) -> dict:
    shape, affine = random_geometry(rng, ORIENTATIONS[index % len(ORIENTATIONS)])
    labels = _labels(rng, shape, affine, num_classes)
    ct, t2 = _images(rng, labels)
    images = root / folder
    images.mkdir(parents=True, exist_ok=True)
    if layout == "msd":
        image_path = images / f"{case_id}.nii.gz"
        _save(np.stack([ct.astype(np.float32), t2], axis=-1), affine, image_path)
    else:
        _save(ct, affine, images / f"{case_id}_0000.nii.gz")
        _save(t2, affine, images / f"{case_id}_0001.nii.gz")
        image_path = images / f"{case_id}.nii.gz"
    entry = {"image": f"./{folder}/{image_path.name}"}
    if labelled:
        (root / "labelsTr").mkdir(parents=True, exist_ok=True)
        _save(labels, affine, root / "labelsTr" / f"{case_id}.nii.gz")
        entry["label"] = f"./labelsTr/{case_id}.nii.gz"
    return entry


def write_dataset(
    root: pathlib.Path,
    *,
    num_training: int = 4,
    num_test: int = 1,
    layout: str = "nnunet",
    num_classes: int = 3,
    seed: int = 0,
) -> pathlib.Path:
    """Writes dataset.json, imagesTr/, labelsTr/ and imagesTs/ under `root`.

    layout "msd": one 4D image per case (channels last) and an MSD dataset.json;
    "nnunet": case_0000 / case_0001 channel files and an nnU-Net v2 dataset.json.
    """
    if layout not in ("msd", "nnunet"):
        raise ValueError(f"layout={layout!r}; expected 'msd' or 'nnunet'")
    if num_classes not in (2, 3):
        raise ValueError(f"num_classes={num_classes}; expected 2 or 3")
    root = pathlib.Path(root)
    root.mkdir(parents=True, exist_ok=True)
    training = [
        _write_case(
            root,
            "imagesTr",
            f"case_{i:03d}",
            np.random.default_rng([seed, 0, i]),
            i,
            layout,
            num_classes,
            labelled=True,
        )
        for i in range(num_training)
    ]
    test = [
        _write_case(
            root,
            "imagesTs",
            f"case_{num_training + i:03d}",
            np.random.default_rng([seed, 1, i]),
            i,
            layout,
            num_classes,
            labelled=False,
        )["image"]
        for i in range(num_test)
    ]
    names = CLASS_NAMES[:num_classes]
    channels = {str(c): name for c, name in enumerate(CHANNELS)}
    if layout == "msd":
        meta = {
            "name": "SyntheticDecathlon",
            "modality": channels,
            "labels": {str(v): name for v, name in enumerate(names)},
            "numTraining": num_training,
            "numTest": num_test,
            "training": training,
            "test": test,
        }
    else:
        meta = {
            "name": "SyntheticDecathlon",
            "channel_names": channels,
            "labels": {name: v for v, name in enumerate(names)},
            "numTraining": num_training,
            "file_ending": ".nii.gz",
        }
    (root / "dataset.json").write_text(json.dumps(meta, indent=2))
    return root


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="the folder to write (data.manual_dir)")
    parser.add_argument("--num-training", type=int, default=4)
    parser.add_argument("--num-test", type=int, default=1)
    parser.add_argument("--layout", choices=("msd", "nnunet"), default="nnunet")
    parser.add_argument("--num-classes", type=int, choices=(2, 3), default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    write_dataset(
        pathlib.Path(args.root),
        num_training=args.num_training,
        num_test=args.num_test,
        layout=args.layout,
        num_classes=args.num_classes,
        seed=args.seed,
    )


if __name__ == "__main__":
    main()
