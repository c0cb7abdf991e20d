"""The folder builders' config for a `config.data`: a fingerprint name, and the validated
samples (every file read once, only when that name is not built yet)."""

import dataclasses
import pathlib
from collections.abc import Callable

import ml_collections

from unetjax.data import local_builder, samples
from unetjax.data.errors import DataError
from unetjax.data.folders import builder, examples, scan, validation
from unetjax.data.samples import Sample

# The label spec (task possibly still open), the samples and the class names (per_class only).
FoundSamples = tuple[examples.LabelSpec, list[Sample], tuple[str, ...] | None]
# config.data and the resolved data.manual_dir -> FoundSamples: one per folder kind.
FindSamples = Callable[[ml_collections.ConfigDict, pathlib.Path], FoundSamples]


def builder_config(data_config: ml_collections.ConfigDict, find_samples: FindSamples):
    """The builder config's name (a fingerprint of the inputs) and a function making it from
    the samples `find_samples` finds (the kind's layout: `image_folder_samples`, ...).

    Making a folder config validates every file, so it only runs when the name is not built.
    """
    root = samples.source_root(data_config)
    options = {
        key: data_config[key]
        for key in (
            "spatial_dims",
            "image_subdir",
            "mask_subdir",
            "mask_layout",
            "class_names",
            "color_mode",
            "val_fraction",
            "test_fraction",
            "dataset_seed",
            "train_stems",
            "val_stems",
            "test_stems",
            "isbi_foreground",
            "task",
            "num_classes",
            "mask_threshold",
            "ignore_index",
            "resize",
        )
    }
    name = samples.built_name(root, options)
    return name, lambda show_progress=True: _folder_config(
        data_config, root, name, find_samples, show_progress
    )


def _folder_config(
    data_config,
    root: pathlib.Path,
    name: str,
    find_samples: FindSamples,
    show_progress: bool,
) -> builder.FolderConfig:
    spec, found, class_names = find_samples(data_config, root)
    stem_lists = None
    if data_config.train_stems is not None:
        stem_lists = {
            "train": data_config.train_stems,
            "validation": data_config.val_stems or (),
            "test": data_config.test_stems or (),
        }
    splits = samples.split_samples(
        found,
        val_fraction=data_config.val_fraction,
        test_fraction=data_config.test_fraction,
        seed=data_config.dataset_seed,
        stem_lists=stem_lists,
    )
    checked = validation.validate(
        splits,
        spec=spec,
        declared_task=data_config.task,
        declared_num_classes=data_config.num_classes,
        declared_in_channels=data_config.in_channels,
        patch_size=data_config.patch_size,
        show_progress=show_progress,
    )
    return builder.FolderConfig(
        name=name,
        version=local_builder.VERSION,
        splits=splits,
        spec=dataclasses.replace(spec, task=checked.task, num_classes=checked.num_classes),
        in_channels=checked.in_channels,
        image_dtype=checked.image_dtype,
        min_shape=checked.min_shape,
        source_sizes=checked.source_sizes,
        class_names=class_names,
        task_rule=checked.task_rule,
        exif_oriented=checked.exif_oriented,
    )


def _label_spec(
    data_config, mask_mode: str, task: str | None, num_classes: int | None, dims: int = 2
) -> examples.LabelSpec:
    return examples.LabelSpec(
        spatial_dims=dims,
        color_mode=data_config.color_mode,
        mask_mode=mask_mode,
        task=task,
        num_classes=num_classes,
        isbi_foreground=data_config.isbi_foreground,
        mask_threshold=data_config.mask_threshold,
        ignore_index=data_config.ignore_index,
        resize=tuple(data_config.resize) if data_config.resize is not None else None,
    )


def image_folder_samples(data_config, root: pathlib.Path) -> FoundSamples:
    """image_folder: images/ and masks/ (data.image_subdir, data.mask_subdir), one class-index
    mask per image ("single") or one binary mask folder per class ("per_class")."""
    image_dir, mask_dir = root / data_config.image_subdir, root / data_config.mask_subdir
    dims = data_config.spatial_dims
    if data_config.mask_layout == "per_class":
        names = scan.class_folders(mask_dir, data_config.class_names)
        found = scan.scan_pairs(image_dir, [mask_dir / n for n in names])
        spec = _label_spec(data_config, "per_class", "multilabel", len(names), dims)
        return spec, found, tuple(names)
    if data_config.mask_layout != "single":
        raise DataError(
            f"mask_layout={data_config.mask_layout!r}; expected 'single' or 'per_class'"
        )
    found = scan.scan_pairs(image_dir, [mask_dir])
    spec = _label_spec(data_config, "single", data_config.task, data_config.num_classes, dims)
    return spec, found, None


def isbi2012_samples(data_config, root: pathlib.Path) -> FoundSamples:
    """isbi2012_em: images/ and masks/, the foreground chosen by data.isbi_foreground."""
    if data_config.isbi_foreground not in ("membrane", "interior"):
        raise DataError(
            f"isbi_foreground={data_config.isbi_foreground!r}; expected 'membrane' or 'interior'"
        )
    found = scan.scan_pairs(root / "images", [root / "masks"])
    return _label_spec(data_config, "isbi", "binary", 1), found, None


def dsb2018_samples(data_config, root: pathlib.Path) -> FoundSamples:
    """dsb2018_nuclei: the stage1_train layout, one mask file per nucleus."""
    return _label_spec(data_config, "instances", "binary", 1), scan.scan_dsb2018(root), None
