"""Finding a folder dataset's samples: images paired with their masks by file stem (one mask
folder, or one per class), and the DSB 2018 layout."""

import pathlib
from collections.abc import Sequence

from unetjax.data import image_io
from unetjax.data.errors import DataError
from unetjax.data.samples import Sample


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
