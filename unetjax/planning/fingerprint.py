"""A dataset's fingerprint: what the planner needs to know about the data, read once, streaming.

Per case: spacing and shape before (RAS for volumes) and after resampling to the target
spacing, per-class voxel counts. Overall: the target spacing (the project's median rule with its
anisotropy exception, `resample.target_spacing`), the median and largest shapes after
resampling, per-channel intensity statistics over the foreground (label > 0), class voxel
fractions, and a sha256 of every file's bytes (a plan names the data it was made for).

Streaming: one case is in memory at a time. Mean and sd are exact (running sums); percentiles
come from a seeded sample of at most `SAMPLE_VALUES // num_cases` foreground values per case
(nnU-Net samples 1e8 / num_cases), so the pooled sample is bounded whatever the dataset's size;
on small data every value is kept and the percentiles are exact.

Three kinds of data, as the trainer reads them: "decathlon" (an MSD / nnU-Net folder, 3D),
"image_folder" (images/ and masks/, 2D, spacing 1) and "synthetic_cells" (generated).
"""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from unetjax.data import image_io
from unetjax.data.errors import DataError
from unetjax.data.folders import scan
from unetjax.data.synthetic import cells
from unetjax.data.volumes import medical_case, msd_folder, nifti_io, resample

SAMPLE_VALUES = 2_000_000
PERCENTILES = (0.5, 50.0, 99.5)
SYNTHETIC = "synthetic_cells"


@dataclasses.dataclass
class _Channel:
    """Running foreground statistics of one channel."""

    count: int = 0
    total: float = 0.0
    squares: float = 0.0
    samples: list = dataclasses.field(default_factory=list)

    def add(self, values: np.ndarray, rng: np.random.Generator, keep: int) -> None:
        values = values.astype(np.float64)
        self.count += len(values)
        self.total += float(values.sum())
        self.squares += float(np.square(values).sum())
        if len(values) > keep:
            values = rng.choice(values, keep, replace=False)
        self.samples.append(values)

    def summary(self) -> dict:
        if self.count == 0:
            return {"num_voxels": 0}
        mean = self.total / self.count
        pooled = np.concatenate(self.samples)
        low, median, high = np.percentile(pooled, PERCENTILES)
        return {
            "mean": mean,
            "std": float(np.sqrt(max(self.squares / self.count - mean * mean, 0.0))),
            "percentile_00_5": float(low),
            "median": float(median),
            "percentile_99_5": float(high),
            "num_voxels": self.count,
        }


@dataclasses.dataclass(frozen=True)
class _Item:
    """One case as read: image (*spatial, C), labels (*spatial), spacing, its files."""

    case_id: str
    image: np.ndarray
    labels: np.ndarray
    spacing: tuple[float, ...]
    files: tuple[str, ...]


def hash_files(paths: Sequence[str | pathlib.Path], root: pathlib.Path | None = None) -> str:
    """sha256 over every file's name (relative to `root`) and bytes, in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(str(p) for p in paths):
        resolved = pathlib.Path(path).resolve()
        name = str(resolved.relative_to(root)) if root else resolved.name
        digest.update(name.encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def data_kind(data: str) -> str:
    """The `data.name` a DATA argument trains as: a generated set's name, or the kind whose
    folder layout DATA has (`SOURCES`)."""
    source = SOURCES.get(data)
    if source is not None and source.generated:
        return data
    root = pathlib.Path(data)
    if not root.is_dir():
        raise DataError(
            f"{data}: no such folder; expected a Decathlon / nnU-Net folder (dataset.json), an "
            f"image folder (images/, masks/) or {SYNTHETIC!r}"
        )
    for name, source in SOURCES.items():
        if source.detect is not None and source.detect(root):
            return name
    raise DataError(
        f"{root}: neither dataset.json (a Decathlon / nnU-Net folder) nor images/ and masks/ "
        "(an image folder); point DATA at one of them"
    )


def _decathlon_cases(data: str, settings: dict) -> tuple[dict, list, Iterator[_Item]]:
    del settings  # a folder's cases are its files
    dataset = msd_folder.scan(pathlib.Path(data))
    headers = [dataset.headers[c.case_id] for c in dataset.training]
    geometry = [
        (nifti_io.ras_spacing(h.affine), nifti_io.ras_shape(h.shape, h.affine)) for h in headers
    ]
    meta = {
        "name": dataset.name,
        "channels": list(dataset.channel_names),
        "labels": dict(dataset.labels),
        "num_test": len(dataset.test),
    }

    def items() -> Iterator[_Item]:
        for case in dataset.training:
            read = medical_case.read_case_image(case.images)
            image, _ = nifti_io.to_ras(read.image, read.reference.affine)
            labels, _ = nifti_io.to_ras(
                nifti_io.read_nifti(pathlib.Path(case.label)).array, read.reference.affine
            )
            yield _Item(
                case.case_id,
                image,
                labels,
                nifti_io.ras_spacing(read.reference.affine),
                (*case.images, case.label),
            )

    return meta, geometry, items()


def _folder_cases(data: str, settings: dict) -> tuple[dict, list, Iterator[_Item]]:
    del settings  # a folder's cases are its files
    root = pathlib.Path(data)
    samples = scan.scan_pairs(root / "images", [root / "masks"])
    first = image_io.read_raw_image(pathlib.Path(samples[0].image), 2, "auto")
    meta = {"name": root.name, "channels": [f"channel{c}" for c in range(first.shape[-1])]}
    geometry = [((1.0, 1.0), None) for _ in samples]

    def items() -> Iterator[_Item]:
        for sample in samples:
            image = image_io.read_raw_image(pathlib.Path(sample.image), 2, "auto")
            labels = image_io.read_label_map(pathlib.Path(sample.masks[0]), 2)
            if image.shape[:2] != labels.shape:
                raise DataError(
                    f"{sample.image}: shape {image.shape[:2]} but its mask {sample.masks[0]} "
                    f"has {labels.shape}; expected the same size"
                )
            yield _Item(sample.stem, image, labels, (1.0, 1.0), (sample.image, *sample.masks))

    return meta, geometry, items()


def _synthetic_cases(data: str, settings: dict) -> tuple[dict, list, Iterator[_Item]]:
    del data  # generated from its settings
    size, spatial_dims = settings["size"], settings["spatial_dims"]
    num_cases, seed = settings["num_cases"], settings["seed"]
    meta = {"name": SYNTHETIC, "channels": ["intensity"], "labels": {"background": 0, "cell": 1}}
    spacing = (1.0,) * spatial_dims
    geometry = [(spacing, (size,) * spatial_dims) for _ in range(num_cases)]

    def items() -> Iterator[_Item]:
        rng = np.random.default_rng(seed)
        for index in range(num_cases):
            image, instances = cells.generate(rng, size, spatial_dims)
            yield _Item(f"synthetic_{index}", image, (instances > 0).astype(np.int32), spacing, ())

    return meta, geometry, items()


def fingerprint(
    data: str,
    *,
    synthetic_size: int = 128,
    synthetic_dims: int = 2,
    synthetic_cases: int = 64,
    seed: int = 0,
) -> dict:
    """The fingerprint of DATA (a folder, or "synthetic_cells"); see the module doc."""
    kind = data_kind(data)
    source = SOURCES[kind]
    settings = {
        "size": synthetic_size,
        "spatial_dims": synthetic_dims,
        "num_cases": synthetic_cases,
        "seed": seed,
    }
    meta, geometry, items = source.cases(data, settings)
    num_cases = len(geometry)
    known_shapes = all(shape is not None for _, shape in geometry)
    spacing = resample.target_spacing(
        [s for s, _ in geometry], [shape for _, shape in geometry] if known_shapes else None
    )
    keep = max(1, SAMPLE_VALUES // num_cases)
    channels: list[_Channel] = []
    class_counts: dict[int, int] = {}
    cases, files = [], []
    rng = np.random.default_rng(seed)
    for item in items:
        shape = item.labels.shape
        channels = channels or [_Channel() for _ in range(item.image.shape[-1])]
        foreground = item.labels > 0
        for channel, stats in enumerate(channels):
            stats.add(item.image[..., channel][foreground], rng, keep)
        values, counts = np.unique(item.labels, return_counts=True)
        voxels = dict(zip(values.tolist(), counts.tolist(), strict=True))
        for value, count in voxels.items():
            class_counts[value] = class_counts.get(value, 0) + count
        after = resample.shape_for_spacing(shape, item.spacing, spacing)
        cases.append(
            {
                "id": item.case_id,
                "spacing": [round(float(s), 5) for s in item.spacing],
                "shape_before": list(shape),
                "shape_after": list(after),
                "class_voxels": {str(v): c for v, c in voxels.items()},
            }
        )
        files.extend(item.files)
    total = sum(class_counts.values())
    shapes_after = np.array([c["shape_after"] for c in cases])
    root = None if source.generated else pathlib.Path(data).resolve()
    return {
        "kind": kind,
        "source": data if source.generated else str(root),
        **meta,
        "spatial_dims": len(spacing),
        "num_cases": num_cases,
        "target_spacing": [float(s) for s in spacing],
        "median_shape": [float(v) for v in np.median(shapes_after, axis=0)],
        "min_shape": [int(v) for v in shapes_after.min(axis=0)],
        "max_shape": [int(v) for v in shapes_after.max(axis=0)],
        "total_voxels": int(np.prod(shapes_after, axis=1).sum()),
        "intensity": [c.summary() for c in channels],
        "class_fractions": {str(k): v / total for k, v in sorted(class_counts.items())},
        "data_hash": (
            _settings_hash(kind, settings) if source.generated else hash_files(files, root)
        ),
        "cases": cases,
    }


def _settings_hash(kind: str, settings: dict) -> str:
    """A generated set's hash: its settings are its content."""
    size, dims = settings["size"], settings["spatial_dims"]
    text = f"{kind} size={size} dims={dims} seed={settings['seed']} cases={settings['num_cases']}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def data_hash(data: str) -> str:
    """The hash `fingerprint` records for DATA, without reading the images (files only)."""
    source = SOURCES[data_kind(data)]
    if source.generated:
        raise ValueError("a generated set is hashed from its settings; use `fingerprint`")
    root = pathlib.Path(data).resolve()
    return hash_files(source.files(root), root)


def _decathlon_files(root: pathlib.Path) -> list[str]:
    cases, _ = msd_folder.find_cases(root, msd_folder.read_dataset_json(root))
    return [p for c in cases for p in (*c.images, c.label)]


def _folder_files(root: pathlib.Path) -> list[str]:
    samples = scan.scan_pairs(root / "images", [root / "masks"])
    return [p for s in samples for p in (s.image, *s.masks)]


@dataclasses.dataclass(frozen=True)
class Source:
    """How the planner reads one kind of data (its `data.name`, `unetjax.data.kinds`).

    Attributes:
      cases: (DATA, synthetic settings) -> (meta, per-case (spacing, shape), cases streamed).
      files: a folder's files, hashed (None for a generated set: its settings are hashed).
      detect: whether a folder has this kind's layout (None for a generated set).
      data_fields: the fingerprint -> the config.data fields of a plan for it.
    """

    cases: Callable[[str, dict], tuple[dict, list, Iterator[_Item]]]
    files: Callable[[pathlib.Path], list[str]] | None
    detect: Callable[[pathlib.Path], bool] | None
    data_fields: Callable[[dict], dict]

    @property
    def generated(self) -> bool:
        return self.files is None


SOURCES: dict[str, Source] = {
    "decathlon": Source(
        _decathlon_cases,
        _decathlon_files,
        lambda root: (root / "dataset.json").is_file(),
        lambda fp: {
            "data.name": "decathlon",
            "data.spatial_dims": 3,
            "data.target_spacing": tuple(fp["target_spacing"]),
            "data.val_fraction": 0.2,
            "data.test_fraction": 0.0,
            "data.foreground_prob": 0.33,
        },
    ),
    "image_folder": Source(
        _folder_cases,
        _folder_files,
        lambda root: (root / "images").is_dir() and (root / "masks").is_dir(),
        lambda fp: {"data.name": "image_folder", "data.spatial_dims": 2},
    ),
    SYNTHETIC: Source(
        _synthetic_cases,
        None,
        None,
        lambda fp: {
            "data.name": SYNTHETIC,
            "data.spatial_dims": fp["spatial_dims"],
            "data.image_size": fp["max_shape"][0],
            "data.num_train": fp["num_cases"],
        },
    ),
}
