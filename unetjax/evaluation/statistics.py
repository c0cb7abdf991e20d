"""Summary of one metric over cases: mean, sd, median and a bootstrap CI of the mean.

NaN values (a metric undefined for a case, see `case_metrics`) are left out of every statistic
and counted in `n_nan`; `n` counts the values used. The confidence interval is the percentile
bootstrap (Efron and Tibshirani 1993, ch. 13): resample the n values with replacement,
`resamples` times, and take the (1 - confidence) / 2 and (1 + confidence) / 2 quantiles of the
resampled means. Seeded with a numpy Generator, so a summary is reproducible.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

# Resampled means drawn per block: bounds the index array to about 4M entries for large n.
_BLOCK_VALUES = 4_000_000


@dataclasses.dataclass(frozen=True)
class Summary:
    """Statistics of the non-NaN values of a metric; floats are NaN where undefined (n < 2)."""

    mean: float
    sd: float
    median: float
    n: int
    n_nan: int
    ci_low: float
    ci_high: float
    confidence: float


def summarize(
    values: Sequence[float] | np.ndarray,
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> Summary:
    """Mean, sample sd (ddof=1), median and percentile bootstrap CI of the mean of `values`.

    With no values left all floats are NaN; with one, sd and the CI are NaN (a resampled
    single value has no spread to show) while mean and median are that value.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    missing = np.isnan(values)
    kept = values[~missing]
    n = int(kept.size)
    nan = float("nan")
    if n == 0:
        return Summary(nan, nan, nan, 0, int(missing.sum()), nan, nan, confidence)
    ci_low, ci_high = (
        bootstrap_ci(kept, confidence=confidence, resamples=resamples, seed=seed)
        if n > 1
        else (nan, nan)
    )
    return Summary(
        mean=float(kept.mean()),
        sd=float(kept.std(ddof=1)) if n > 1 else nan,
        median=float(np.median(kept)),
        n=n,
        n_nan=int(missing.sum()),
        ci_low=ci_low,
        ci_high=ci_high,
        confidence=confidence,
    )


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of `values` (NaN left out)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[~np.isnan(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK_VALUES // values.size)
    means = np.concatenate(
        [
            values[rng.integers(0, values.size, (min(block, resamples - start), values.size))].mean(
                axis=1
            )
            for start in range(0, resamples, block)
        ]
    )
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)
