"""Plain-text tables of evaluation results, for the CLI and the docs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def results_table(metrics: Mapping[str, float], head_depths: Sequence[int]) -> str:
    """A Markdown table of validation IoU, Dice and pixel accuracy per head and in accurate mode."""
    rows = [("head", "IoU", "Dice", "accuracy"), ("---", "---", "---", "---")]
    names = [f"L{depth}" for depth in head_depths] + ["accurate"]
    for name in names:
        rows.append(
            (
                name,
                *(f"{metrics[f'{metric}_{name}']:.4f}" for metric in ("iou", "dice", "accuracy")),
            )
        )
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)
