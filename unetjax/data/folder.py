"""Finding samples in a user's folders: pairing images with masks, and splitting them."""

import dataclasses
import hashlib
import json
import logging
import os
import pathlib
from collections.abc import Sequence

import numpy as np

from unetjax.data import image_io
from unetjax.data.errors import DataError

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")


@dataclasses.dataclass(frozen=True)
class Sample:
    """One image and the mask file(s) that label it (one per class, or one per nucleus)."""

    stem: str
    image: str
    masks: tuple[str, ...]


def built_name(root: pathlib.Path, options: dict) -> str:
    """The built dataset's name for the folder `root`: its name and a fingerprint of every file's
    path, size and mtime and of the `options` that change what is written, so a changed folder
    or option builds anew and an unchanged one is opened as it is.

    Symbolic links are followed (linked folders are walked, a linked file counts by its
    target's size and mtime), so a file changed behind a link is noticed too."""
    files = []
    seen = set()
    for folder, dirs, names in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:  # a link back up the tree: walked once
            dirs.clear()
            continue
        seen.add(real)
        for name in names:
            path = pathlib.Path(folder, name)
            try:
                stat = path.stat()
            except FileNotFoundError:  # a dangling link: listed, so mending it builds anew
                files.append((str(path.relative_to(root)), -1, -1))
                continue
            files.append((str(path.relative_to(root)), stat.st_size, stat.st_mtime_ns))
    files.sort()
    digest = hashlib.sha1(json.dumps([str(root), options, files]).encode()).hexdigest()[:12]
    return f"{root.name}_{digest}"


def _files_by_stem(folder: pathlib.Path) -> dict[str, pathlib.Path]:
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    files: dict[str, pathlib.Path] = {}
    for path in sorted(folder.iterdir()):
        if not image_io.is_image_file(path):
            continue
        stem = image_io.file_stem(path)
        if stem in files:
            raise DataError(f"{path}: two files with the stem {stem!r} (also {files[stem].name})")
        files[stem] = path
    return files


def scan_pairs(image_dir: pathlib.Path, mask_dirs: Sequence[pathlib.Path]) -> list[Sample]:
    """Images paired by stem with a mask in each of `mask_dirs` (one dir, or one per class)."""
    images = _files_by_stem(image_dir)
    if not images:
        raise DataError(
            f"{image_dir}: empty folder; expected images ({', '.join(image_io.IMAGE_SUFFIXES)})"
        )
    masks = [_files_by_stem(mask_dir) for mask_dir in mask_dirs]
    for mask_dir, by_stem in zip(mask_dirs, masks, strict=True):
        for stem, path in images.items():
            if stem not in by_stem:
                raise DataError(f"{path}: image without a mask; expected {mask_dir}/{stem}.*")
        for stem, path in by_stem.items():
            if stem not in images:
                raise DataError(f"{path}: mask without an image; expected {image_dir}/{stem}.*")
    return [
        Sample(stem, str(path), tuple(str(by_stem[stem]) for by_stem in masks))
        for stem, path in images.items()
    ]


def class_folders(mask_dir: pathlib.Path, class_names: Sequence[str] | None) -> list[str]:
    """The per-class mask folders in channel order."""
    if class_names is None:
        if not mask_dir.is_dir():
            raise DataError(f"{mask_dir}: no such folder")
        class_names = sorted(p.name for p in mask_dir.iterdir() if p.is_dir())
    if not class_names:
        raise DataError(f"{mask_dir}: no class sub-folders; expected {mask_dir}/<class>/<stem>.*")
    return list(class_names)


def scan_dsb2018(root: pathlib.Path) -> list[Sample]:
    """The DSB 2018 stage1_train layout: <id>/images/<id>.png and <id>/masks/*.png."""
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    samples = []
    for sample_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        image = sample_dir / "images" / f"{sample_dir.name}.png"
        if not image.is_file():
            raise DataError(f"{sample_dir}: no image; expected {image}")
        mask_dir = sample_dir / "masks"
        masks = sorted(p for p in mask_dir.glob("*") if image_io.is_image_file(p))
        if not masks:
            raise DataError(f"{image}: image without a mask; expected {mask_dir}/*.png")
        samples.append(Sample(sample_dir.name, str(image), tuple(str(m) for m in masks)))
    if not samples:
        raise DataError(f"{root}: empty folder; expected <id>/images/<id>.png sub-folders")
    return samples


def split_samples(
    samples: Sequence[Sample],
    *,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    stem_lists: dict[str, Sequence[str]] | None = None,
) -> dict[str, list[Sample]]:
    """train/validation/test from the user's stem lists, or a seeded shuffle and fractions.

    Splits that come out empty are left out.
    """
    by_stem = {sample.stem: sample for sample in samples}
    if stem_lists is not None:
        splits: dict[str, list[Sample]] = {}
        seen: set[str] = set()
        for split, stems in stem_lists.items():
            for stem in stems:
                if stem not in by_stem:
                    raise DataError(f"{split} list names {stem!r}, which has no image and mask")
                if stem in seen:
                    raise DataError(f"{stem!r} is in more than one split list")
                seen.add(stem)
            splits[split] = [by_stem[stem] for stem in stems]
        if len(seen) < len(samples):
            logger.warning(
                "%d samples are in no split list and are left out", len(samples) - len(seen)
            )
    else:
        if not (val_fraction >= 0 and test_fraction >= 0 and val_fraction + test_fraction < 1):
            raise DataError(
                f"val_fraction={val_fraction}, test_fraction={test_fraction}; expected "
                "non-negative fractions summing to less than 1"
            )
        order = np.random.default_rng(seed).permutation(len(samples))
        num_test = round(test_fraction * len(samples))
        num_val = round(val_fraction * len(samples))
        shuffled = [samples[i] for i in order]
        splits = {
            "test": sorted(shuffled[:num_test], key=lambda s: s.stem),
            "validation": sorted(shuffled[num_test : num_test + num_val], key=lambda s: s.stem),
            "train": sorted(shuffled[num_test + num_val :], key=lambda s: s.stem),
        }
    if not splits.get("train"):
        raise DataError(f"no training samples among {len(samples)}; lower the held-out fractions")
    return {split: splits[split] for split in SPLITS if splits.get(split)}
