"""Names of the reported settings and metrics: the one place that spells them.

A setting is what a pruned model predicts: head L alone ("L2", fast mode) or the mean of heads
1..L ("accurate", for L = D in training's validation). Metric names join a score and a setting:
`iou_L2`, `dice_accurate`, `loss_L3`. Training logs, validation records, the checkpoint
selection (`train.best_metric`), `evaluate` and the recipes all read these names.
"""

from __future__ import annotations

from collections.abc import Sequence

SCORES = ("iou", "dice", "accuracy")
ACCURATE = "accurate"


def head_name(depth: int) -> str:
    return f"L{depth}"


def metric_name(score: str, setting: str) -> str:
    return f"{score}_{setting}"


def loss_names(head_depths: Sequence[int]) -> list[str]:
    """Per-head loss names, the same in training logs and validation records."""
    return [metric_name("loss", head_name(depth)) for depth in head_depths]


def metric_names(head_depths: Sequence[int]) -> list[str]:
    """Every validation metric reported for a model with these heads."""
    names = ["loss", *loss_names(head_depths)]
    for score in SCORES:
        names += [metric_name(score, head_name(depth)) for depth in head_depths]
        names.append(metric_name(score, ACCURATE))
    return names


def check_best_metric(best_metric: str, head_depths: Sequence[int]) -> None:
    """Fails before training, not at the first evaluation, when the metric does not exist."""
    if best_metric and best_metric not in metric_names(head_depths):
        raise ValueError(
            f"train.best_metric={best_metric!r} is not reported for a model with heads "
            f"{list(head_depths)}; choose one of {metric_names(head_depths)} (or '' for none)"
        )


def selected_setting(best_metric: str | None, head_depths: Sequence[int]) -> tuple[int, str]:
    """The (depth, mode) a checkpoint chosen by `best_metric` is chosen for, and so the one to
    report: *_accurate -> (D, accurate) when there are side heads, *_L{d} -> (d, fast), else
    (D, fast)."""
    deepest = max(head_depths)
    metric = best_metric or ""
    if metric.endswith(f"_{ACCURATE}") and len(head_depths) > 1:
        return deepest, "accurate"
    prefix, _, level = metric.rpartition("_L")
    if prefix and level.isdigit():
        return int(level), "fast"
    return deepest, "fast"
