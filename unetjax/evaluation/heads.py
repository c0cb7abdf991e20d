"""Validation scores per head and in accurate mode, from the counts the eval step returns."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from unetjax.evaluation import counts, names


def summarize_heads(
    losses: np.ndarray,
    head_counts: np.ndarray,
    accurate_counts: np.ndarray,
    head_depths: Sequence[int],
    *,
    output_activation: str,
) -> dict[str, float]:
    """The `names.metric_names(head_depths)` metrics of a validation pass.

    losses: (N, H) per image and head; head_counts: (H, N, K, 4); accurate_counts: (N, K, 4).
    Scores are per-image means (see `counts.summarize_counts`).
    """
    results = {"loss": float(losses.sum(axis=1).mean())}
    for index, depth in enumerate(head_depths):
        setting = names.head_name(depth)
        summary = counts.summarize_counts(head_counts[index], output_activation=output_activation)
        results[names.metric_name("loss", setting)] = float(losses[:, index].mean())
        for score in names.SCORES:
            results[names.metric_name(score, setting)] = float(summary[score])
    summary = counts.summarize_counts(accurate_counts, output_activation=output_activation)
    for score in names.SCORES:
        results[names.metric_name(score, names.ACCURATE)] = float(summary[score])
    return results
