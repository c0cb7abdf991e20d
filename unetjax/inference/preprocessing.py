"""The run's input normalisation as a small explicit spec, and the function that applies it.

A deployable artifact carries its preprocessing inside (`artifact.deployable_function`), so the
spec is read from the run's config once and recorded in the artifact's sidecar. Images reach it
as `unetjax.data.image_io` reads them: float32 scaled to [0, 1].

The rule is `unetjax.data.normalization`'s (the training pipeline's); this module restates it
for a batch inside an exported function, and a test checks the two agree image by image.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

KINDS = ("unit", "zscore_image", "zscore_dataset")
# The standard-deviation floor of every z-score in unetjax (training, predict, artifacts, CT
# intensity): a flat image or channel is centred, not divided by zero. Defined here, not in
# `unetjax.data`, because a deployment host imports this module without the data stack.
MIN_STD = 1e-8


@dataclasses.dataclass(frozen=True)
class Normalization:
    """How [0, 1] images are normalised before the network.

    Attributes:
      kind: "unit" (identity: the [0, 1] images as read), "zscore_image" (each image's channels
        to mean 0, std 1 over its own pixels) or "zscore_dataset" (the stored `mean` and `std`).
      mean, std: per-channel statistics (one value broadcasts over channels); zscore_dataset only.
    """

    kind: str = "unit"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"normalize={self.kind!r}; expected one of {KINDS}")
        if self.kind == "zscore_dataset":
            if self.mean is None or self.std is None:
                raise ValueError(
                    "normalize='zscore_dataset' needs normalization {mean, std} in the "
                    "run's config (written when the dataset is prepared)"
                )
            if min(self.std) <= 0:
                raise ValueError(f"normalization std={self.std} must be positive")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, fields: dict[str, Any]) -> Normalization:
        return cls(
            kind=fields.get("kind", "unit"),
            mean=_floats(fields.get("mean")),
            std=_floats(fields.get("std")),
        )


def _floats(value: Any) -> tuple[float, ...] | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return (float(value),)
    return tuple(float(v) for v in value)


def normalization_from_config(config: Any) -> Normalization:
    """The run's normalisation: `config.data.normalize` (default "unit") and, for
    zscore_dataset, `config.normalization` = {kind, mean, std} (training writes it from the
    dataset's statistics); identity when absent."""
    data = config.get("data", None) or {}
    kind = data.get("normalize", "unit") or "unit"
    stats = config.get("normalization", None) or {}
    kind = stats.get("kind") or kind
    return Normalization(kind=kind, mean=_floats(stats.get("mean")), std=_floats(stats.get("std")))


def normalize(images: Any, normalization: Normalization) -> Any:
    """`images` (B, *spatial, C) in [0, 1] normalised by `normalization`.

    Written with array methods and operators only, so the same code runs on numpy arrays and
    inside a traced jax function (and from there in StableHLO and ONNX).
    """
    if normalization.kind == "unit":
        return images
    if normalization.kind == "zscore_dataset":
        mean = _per_channel(normalization.mean, images)
        std = _per_channel(normalization.std, images)
        return (images - mean) / std
    axes = tuple(range(1, images.ndim - 1))
    mean = images.mean(axis=axes, keepdims=True)
    centred = images - mean
    std = ((centred * centred).mean(axis=axes, keepdims=True)) ** 0.5
    return centred / std.clip(min=MIN_STD)


def _per_channel(values: tuple[float, ...], images: Any) -> Any:
    """Statistics as a float32 array broadcasting over (B, *spatial, C) (a numpy constant,
    which a traced function folds into its graph)."""
    return np.asarray(values, np.float32).reshape((1,) * (images.ndim - 1) + (-1,))
