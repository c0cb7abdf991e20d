"""The samples of a local dataset (image files and the files that label them): splitting
them, fingerprinting their folder, and checking they hold a training patch."""

import dataclasses
import hashlib
import json
import logging
import os
import pathlib
from collections.abc import Sequence

import ml_collections
import numpy as np

from unetjax.data.errors import DataError

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")


@dataclasses.dataclass(frozen=True)
class Sample:
    """One image and the mask file(s) that label it (one per class, or one per nucleus)."""

    stem: str
    image: str
    masks: tuple[str, ...]


def source_root(data_config: ml_collections.ConfigDict) -> pathlib.Path:
    """The user's folder (data.manual_dir) that a local dataset is read from, resolved."""
    if data_config.manual_dir is None:
        raise DataError(f"{data_config.name} reads local files: set data.manual_dir")
    root = pathlib.Path(data_config.manual_dir).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"{root}: no such folder (data.manual_dir)")
    return root


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


def check_patch_fits(min_shape: dict[str, Sequence[int]], patch_size: Sequence[int], name: str):
    """Training images must hold a whole patch: padding would teach the model a false border."""
    shape = min_shape.get("train")
    if shape is not None and any(s < p for s, p in zip(shape, patch_size, strict=True)):
        raise DataError(
            f"{name}: the smallest training image is {tuple(shape)}, smaller than the patch "
            f"{tuple(patch_size)}; expected images at least the patch size (or a smaller patch)"
        )
