"""The dataset summary: what a user should check before training on a prepared dataset.

`StatisticsAccumulator` gathers it from every stored example while a builder writes them (so
it costs no second pass) and the builder keeps the result in its metadata; `build` adds what
the config says (declared task, normalisation) when the dataset is opened, and `text` writes
the short block that `prepare` logs.
"""

from collections.abc import Sequence

import numpy as np

from unetjax.data import normalization, resize

MAX_CLASSES_SHOWN = 8


def size_stats(shapes: Sequence[Sequence[int]]) -> dict:
    """Per-axis min / median / max of spatial shapes, and whether they are all the same."""
    array = np.asarray(shapes, np.int64)
    return {
        "min": array.min(axis=0).tolist(),
        "median": [float(v) for v in np.median(array, axis=0)],
        "max": array.max(axis=0).tolist(),
        "uniform": bool((array == array[0]).all()),
    }


class StatisticsAccumulator:
    """Sizes per split, label pixel counts (all splits), intensity range (all splits) and the
    per-channel mean and sd of the training images in unit scale (`normalization.to_unit`)."""

    def __init__(self, task: str, num_classes: int, ignore_index: int | None = None):
        self.task, self.ignore_index = task, ignore_index
        self.label_pixels = np.zeros(max(num_classes, 2) if task != "multilabel" else num_classes)
        self.shapes: dict[str, list] = {}
        self.pixels = self.ignored = self.foreground = 0
        self.channel_min = self.channel_max = None
        self.train_sum = self.train_squares = None
        self.train_pixels = 0

    def add(self, split: str, example: dict) -> None:
        image, mask = example["image"], np.asarray(example["mask"])
        self.shapes.setdefault(split, []).append(list(image.shape[:-1]))
        axes = tuple(range(image.ndim - 1))
        low, high = image.min(axis=axes), image.max(axis=axes)
        if self.channel_min is None:
            self.channel_min, self.channel_max = low, high
        self.channel_min = np.minimum(self.channel_min, low)
        self.channel_max = np.maximum(self.channel_max, high)
        if split == "train":
            unit = normalization.to_unit(image).astype(np.float64)
            if self.train_sum is None:
                self.train_sum = np.zeros(image.shape[-1])
                self.train_squares = np.zeros(image.shape[-1])
            self.train_sum += unit.sum(axis=axes)
            self.train_squares += (unit**2).sum(axis=axes)
            self.train_pixels += int(np.prod(image.shape[:-1]))
        self._count_labels(mask)

    def _count_labels(self, mask: np.ndarray) -> None:
        if self.task == "multilabel":
            self.label_pixels += mask.reshape(-1, mask.shape[-1]).sum(axis=0)
            self.pixels += int(np.prod(mask.shape[:-1]))
            self.foreground += int(mask.any(axis=-1).sum())
            return
        values = mask.ravel().astype(np.int64)
        if self.ignore_index is not None:
            ignored = values == self.ignore_index
            self.ignored += int(ignored.sum())
            values = values[~ignored]
        self.label_pixels += np.bincount(values, minlength=len(self.label_pixels))[
            : len(self.label_pixels)
        ]
        self.pixels += len(values)
        self.foreground += int((values > 0).sum())

    def result(self) -> dict:
        """JSON-able statistics for the builder's metadata."""
        mean = self.train_sum / max(self.train_pixels, 1)
        variance = np.maximum(self.train_squares / max(self.train_pixels, 1) - mean**2, 0.0)
        sizes = {split: {"count": len(s), **size_stats(s)} for split, s in self.shapes.items()}
        return {
            "sizes": sizes,
            "label_pixels": [int(v) for v in self.label_pixels],
            "pixels": self.pixels,
            "ignored_pixels": self.ignored,
            "foreground_pixels": self.foreground,
            "intensity_min": [float(v) for v in self.channel_min],
            "intensity_max": [float(v) for v in self.channel_max],
            "train_mean": [float(v) for v in mean],
            "train_std": [float(v) for v in np.sqrt(variance)],
        }


def class_names(task: str, num_classes: int, names: Sequence[str] | None) -> list[str]:
    if names:
        return list(names)
    if task == "binary":
        return ["background", "foreground"]
    return ["background", *(f"class {k}" for k in range(1, num_classes))]


def build(metadata: dict, *, name: str, data_config, split_sizes: dict[str, int]) -> dict:
    """The JSON-able summary of a built dataset from its metadata and the config."""
    statistics = metadata["statistics"]
    task, num_classes = metadata["task"], metadata["num_classes"]
    pixels = max(statistics["pixels"], 1)
    names = class_names(task, num_classes, metadata.get("class_names"))
    labelled = statistics["pixels"] + statistics["ignored_pixels"]
    splits = {}
    for split, count in split_sizes.items():
        sizes = statistics["sizes"].get(split, {})
        entry = {"samples": count, **{f"size_{k}": v for k, v in sizes.items() if k != "count"}}
        source = (metadata.get("source_sizes") or {}).get(split)
        if source:
            entry.update({f"source_size_{k}": v for k, v in source.items()})
        splits[split] = entry
    return {
        "name": name,
        "task": task,
        "num_classes": num_classes,
        "declared_task": data_config.task,
        "declared_num_classes": data_config.num_classes,
        "task_rule": metadata.get("task_rule"),
        "mask_threshold": metadata.get("mask_threshold"),
        "ignore_index": metadata.get("ignore_index"),
        "spatial_dims": len(metadata["min_shape"]["train"]),
        "channels": metadata["in_channels"],
        "dtype": metadata["image_dtype"],
        "intensity_min": statistics["intensity_min"],
        "intensity_max": statistics["intensity_max"],
        "splits": splits,
        "resize": metadata.get("resize"),
        "exif_oriented": metadata.get("exif_oriented", 0),
        "nonfinite_fill": _nonfinite_fill(metadata),
        "classes": [
            {"index": index, "name": label, "pixel_fraction": count / pixels}
            for index, (label, count) in enumerate(
                zip(names, statistics["label_pixels"], strict=False)
            )
        ],
        "foreground_fraction": statistics["foreground_pixels"] / pixels,
        "ignored_fraction": statistics["ignored_pixels"] / max(labelled, 1),
        "normalization": {
            "kind": data_config.normalize,
            "mean": statistics["train_mean"],
            "std": statistics["train_std"],
        },
        # Volumes are normalised when they are written (decathlon): what was applied then.
        "prepared_normalization": (
            _describe_prepared(metadata["normalisation"], metadata.get("channel_names"))
            if metadata.get("normalisation")
            else None
        ),
    }


def _describe_prepared(normalisation: dict, channel_names: list[str] | None) -> str:
    """The volumes kind's words for what it applied (imported here: the volumes package
    builds on this module)."""
    from unetjax.data.volumes import intensity

    return intensity.describe(normalisation, channel_names)


def _nonfinite_fill(metadata: dict) -> dict | None:
    """{"value", "voxels", "cases": {case id: voxels}} where data.nonfinite_fill was set."""
    if metadata.get("nonfinite_fill") is None:
        return None
    cases = dict(metadata.get("nonfinite_filled") or {})
    return {"value": metadata["nonfinite_fill"], "voxels": sum(cases.values()), "cases": cases}


def catalog_summary(info, data_config, dtype: str) -> dict:
    """What is known about a TFDS catalog dataset without reading it through."""
    return {
        "name": info.name,
        "task": info.task,
        "num_classes": info.num_classes,
        "declared_task": data_config.task,
        "declared_num_classes": data_config.num_classes,
        "task_rule": "declared (catalog dataset)",
        "mask_threshold": None,
        "ignore_index": data_config.ignore_index,
        "spatial_dims": info.spatial_dims,
        "channels": info.in_channels,
        "dtype": dtype,
        "splits": {split: {"samples": n} for split, n in info.split_sizes.items()},
        "resize": None,
        "classes": None,
        "foreground_fraction": None,
        "normalization": {"kind": data_config.normalize, "mean": None, "std": None},
    }


def _sizes(entry: dict, prefix: str = "size_") -> str:
    low, high, median = entry[f"{prefix}min"], entry[f"{prefix}max"], entry[f"{prefix}median"]
    if entry[f"{prefix}uniform"]:
        return "x".join(str(v) for v in low) + " px"
    ranges = " x ".join(f"{a}..{b}" for a, b in zip(low, high, strict=True))
    return f"{ranges} px (median {'x'.join(f'{m:g}' for m in median)}), sizes vary"


def _numbers(values) -> str:
    return " ".join(f"{v:.3g}" for v in values)


def text(summary: dict) -> str:
    """The summary as a short block of aligned lines."""
    declared = summary["declared_task"] or "none"
    channels = summary["num_classes"]
    lines = [
        f"dataset {summary['name']}",
        f"  task        {summary['task']}, {channels} output channel{'s' * (channels > 1)} "
        f"(rule: {summary['task_rule']}; declared task: {declared})",
        "  samples     "
        + ", ".join(f"{split} {entry['samples']}" for split, entry in summary["splits"].items()),
    ]
    sized = {split: entry for split, entry in summary["splits"].items() if "size_min" in entry}
    shapes = {(tuple(e["size_min"]), tuple(e["size_max"])) for e in sized.values()}
    if len(shapes) == 1 and all(e["size_uniform"] for e in sized.values()):
        lines.append(f"  image size  {_sizes(next(iter(sized.values())))}, every split")
    else:
        for index, (split, entry) in enumerate(sized.items()):
            label = "  image size  " if index == 0 else "              "
            lines.append(f"{label}{split} {_sizes(entry)}")
    if summary["resize"] is not None:
        train = summary["splits"]["train"]
        origin = f" (files: {_sizes(train, 'source_size_')})" if "source_size_min" in train else ""
        lines.append(f"  resized     {resize.describe(summary['resize'])}{origin}")
    if summary.get("exif_oriented"):
        count = summary["exif_oriented"]
        files = f"{count} file{'s' * (count > 1)}"
        lines.append(f"  orientation {files} turned upright by an EXIF orientation tag")
    fill = summary.get("nonfinite_fill")
    if fill is not None:
        lines.append(
            f"  non-finite  {fill['voxels']} voxels in {len(fill['cases'])} cases replaced by "
            f"{fill['value']:g} (data.nonfinite_fill)"
        )
    intensity = ""
    if summary.get("intensity_min") is not None:
        ranges = zip(summary["intensity_min"], summary["intensity_max"], strict=True)
        intensity = ", values " + ", ".join(f"{low:g}..{high:g}" for low, high in ranges)
    lines.append(f"  channels    {summary['channels']} x {summary['dtype']}{intensity}")
    norm = summary["normalization"]
    stats = ""
    if norm["mean"] is not None:
        stats = f" (train mean {_numbers(norm['mean'])}, sd {_numbers(norm['std'])})"
    if summary.get("prepared_normalization"):
        lines.append(f"  normalize   at preparation: {summary['prepared_normalization']}")
        lines.append(f"              in training: none, values as stored{stats}")
    else:
        lines.append(f"  normalize   {norm['kind']}{stats}")
    if summary["classes"] is not None:
        shown = summary["classes"][:MAX_CLASSES_SHOWN]
        classes = ", ".join(f"{c['name']} {c['pixel_fraction']:.3f}" for c in shown)
        if len(summary["classes"]) > len(shown):
            classes += f", ... ({len(summary['classes'])} classes)"
        if summary["task"] != "binary":
            classes += f"; foreground {summary['foreground_fraction']:.3f}"
        if summary["ignore_index"] is not None:
            classes += f"; ignored ({summary['ignore_index']}) {summary['ignored_fraction']:.3f}"
        lines.append(f"  pixels      {classes}")
    return "\n".join(lines)
