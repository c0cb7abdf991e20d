"""Intensity normalisation of medical volumes: nnU-Net's CT scheme and per-case z-scores.

`ct` follows nnU-Net v2 (`DatasetFingerprintExtractor` collects, `CTNormalization` applies):
the foreground (label > 0) voxels of every training case are pooled per channel; the 0.5 and
99.5 percentiles (numpy's default linear interpolation), the mean and the population sd
(ddof 0) are all computed on those pooled, unclipped intensities; a volume is then clipped to
the two percentiles and z-scored with that mean and sd (sd floored at `MIN_STD`). nnU-Net pools a
random sample of exactly 1e8 / num_cases voxels per case, drawn with replacement; we pool all of
them, or a seeded sample without replacement of `max_values` where a case has more (so on
small data the statistics are exact, not sampled).

`zscore` (MR and everything else) uses each case's own mean and sd, over the whole volume or
over its nonzero voxels only (skull-stripped brains: the zero background is left at 0).
"""

import dataclasses
from collections.abc import Sequence

import numpy as np

from unetjax.inference.preprocessing import MIN_STD

SCHEMES = ("ct", "zscore")


def scheme_for_channel(channel_name: str) -> str:
    """nnU-Net's choice: "CT" channels get the dataset-wide scheme, the rest per-case z-scores."""
    return "ct" if channel_name.strip().lower() == "ct" else "zscore"


@dataclasses.dataclass(frozen=True)
class ForegroundStats:
    """One channel's intensities over the training set's foreground voxels (see module doc)."""

    mean: float
    std: float
    percentile_00_5: float
    percentile_99_5: float
    num_voxels: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "ForegroundStats":
        return cls(**values)


def foreground_values(
    channel: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
    max_values: int | None = None,
) -> np.ndarray:
    """The float64 intensities of one case's foreground voxels (label > 0), all of them or a
    sample without replacement of `max_values`."""
    if channel.shape != labels.shape:
        raise ValueError(f"channel of shape {channel.shape} and labels of shape {labels.shape}")
    values = channel[labels > 0].astype(np.float64)
    if max_values is not None and len(values) > max_values:
        values = rng.choice(values, max_values, replace=False)
    return values


def ct_statistics(values_per_case: Sequence[np.ndarray]) -> ForegroundStats:
    """The pooled statistics of the cases' foreground intensities (one channel)."""
    pooled = np.concatenate([np.ravel(v) for v in values_per_case]) if values_per_case else []
    if len(pooled) == 0:
        raise ValueError("no foreground voxels in the training cases; ct needs labelled cases")
    low, high = np.percentile(pooled, (0.5, 99.5))
    return ForegroundStats(
        mean=float(np.mean(pooled)),
        std=float(np.std(pooled)),
        percentile_00_5=float(low),
        percentile_99_5=float(high),
        num_voxels=len(pooled),
    )


def ct_normalise(channel: np.ndarray, stats: ForegroundStats) -> np.ndarray:
    """float32: clipped to the foreground percentiles, minus the mean, over the sd."""
    clipped = np.clip(channel.astype(np.float32), stats.percentile_00_5, stats.percentile_99_5)
    return ((clipped - stats.mean) / max(stats.std, MIN_STD)).astype(np.float32)


def zscore_case(channel: np.ndarray, nonzero_only: bool = False) -> np.ndarray:
    """float32 z-scores with this case's own mean and sd (over its nonzero voxels if asked;
    the zero voxels then stay 0)."""
    channel = channel.astype(np.float32)
    if not nonzero_only:
        return (channel - channel.mean()) / max(float(channel.std()), MIN_STD)
    inside = channel != 0
    result = np.zeros_like(channel)
    if inside.any():
        values = channel[inside]
        result[inside] = (values - values.mean()) / max(float(values.std()), MIN_STD)
    return result


@dataclasses.dataclass(frozen=True)
class VolumeNormalisation:
    """How each channel of a volume is normalised (nnU-Net's per-channel schemes), with what
    `ct` needs: stored with the run so that predict and evaluate apply exactly what training
    saw. Not the 2D images' `data.normalize` (`unetjax.data.normalization`).

    Attributes:
      schemes: per channel, "ct" or "zscore".
      stats: per channel, the training-set `ForegroundStats` of "ct" channels, else None.
      nonzero_only: "zscore" channels use their nonzero voxels only.
    """

    schemes: tuple[str, ...]
    stats: tuple[ForegroundStats | None, ...]
    nonzero_only: bool = False

    def __post_init__(self):
        if len(self.schemes) != len(self.stats):
            raise ValueError(f"{len(self.schemes)} schemes for {len(self.stats)} channel stats")
        for channel, (scheme, stats) in enumerate(zip(self.schemes, self.stats, strict=True)):
            if scheme not in SCHEMES:
                raise ValueError(f"channel {channel}: scheme {scheme!r}; expected one of {SCHEMES}")
            if (scheme == "ct") != (stats is not None):
                raise ValueError(f"channel {channel}: statistics are for (and only for) ct")

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """(*spatial, C) float32, each channel normalised by its scheme."""
        if image.shape[-1] != len(self.schemes):
            raise ValueError(
                f"image of shape {image.shape}; expected {len(self.schemes)} channels last"
            )
        channels = [
            ct_normalise(image[..., c], stats)
            if scheme == "ct"
            else zscore_case(image[..., c], self.nonzero_only)
            for c, (scheme, stats) in enumerate(zip(self.schemes, self.stats, strict=True))
        ]
        return np.stack(channels, axis=-1)

    def to_dict(self) -> dict:
        """JSON-serialisable."""
        return {
            "schemes": list(self.schemes),
            "stats": [s.to_dict() if s is not None else None for s in self.stats],
            "nonzero_only": self.nonzero_only,
        }

    @classmethod
    def from_dict(cls, values: dict) -> "VolumeNormalisation":
        return cls(
            schemes=tuple(values["schemes"]),
            stats=tuple(ForegroundStats.from_dict(s) if s else None for s in values["stats"]),
            nonzero_only=bool(values["nonzero_only"]),
        )


def describe(normalisation: dict, channel_names: Sequence[str] | None = None) -> str:
    """What `VolumeNormalisation.from_dict(normalisation)` does to each channel, in words."""
    described = VolumeNormalisation.from_dict(normalisation)
    names = list(channel_names or []) or [f"channel {c}" for c in range(len(described.schemes))]
    parts = []
    for name, scheme, stats in zip(names, described.schemes, described.stats, strict=True):
        if scheme == "ct":
            parts.append(
                f"{name}: clipped to {stats.percentile_00_5:g}..{stats.percentile_99_5:g} and "
                f"z-scored with the training foreground's mean {stats.mean:.4g}, sd {stats.std:.4g}"
            )
        else:
            voxels = " (nonzero voxels)" if described.nonzero_only else ""
            parts.append(f"{name}: z-scored per case{voxels}")
    return "; ".join(parts)
