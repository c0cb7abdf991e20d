"""Figures for a paper: the pruning trade-off with confidence intervals, per-case distributions.

matplotlib (Agg, no display) draws them, as PNG and SVG, each with a caption line saying what
was measured: the split, the checkpoint step, what was scored (full images or crops, and their
size), the device.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

MODE_STYLE = {"fast": ("tab:blue", "o"), "accurate": ("tab:orange", "s")}
FORMATS = ("png", "svg")


def _save(figure, path_stem: str, caption: str) -> list[str]:
    figure.text(0.01, 0.01, caption, fontsize=7, ha="left", va="bottom", wrap=True)
    figure.tight_layout(rect=(0, 0.06, 1, 1))
    paths = []
    for fmt in FORMATS:
        path = f"{path_stem}.{fmt}"
        figure.savefig(path, dpi=150)
        paths.append(path)
    plt.close(figure)
    return paths


def pruning_figure(
    points: Sequence[Mapping], path_stem: str, *, metric: str, title: str, caption: str
) -> list[str]:
    """Metric against latency per depth L, one line per mode, 95% CI error bars.

    points: dicts with depth, mode, latency_ms, mean, ci_low, ci_high. Returns the paths.
    """
    figure, axes = plt.subplots(figsize=(6.4, 4.4))
    for mode, (colour, marker) in MODE_STYLE.items():
        series = sorted((p for p in points if p["mode"] == mode), key=lambda p: p["depth"])
        if not series:
            continue
        x = [p["latency_ms"] for p in series]
        y = [p["mean"] for p in series]
        errors = [
            [max(p["mean"] - p["ci_low"], 0) for p in series],
            [max(p["ci_high"] - p["mean"], 0) for p in series],
        ]
        axes.errorbar(x, y, yerr=errors, color=colour, marker=marker, capsize=3, label=mode)
        for p in series:
            axes.annotate(
                f"L{p['depth']}", (p["latency_ms"], p["mean"]), xytext=(4, 4),
                textcoords="offset points", fontsize=8,
            )  # fmt: skip
    axes.set_xlabel("latency per image (ms)")
    axes.set_ylabel(f"{metric} (mean, 95% bootstrap CI)")
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(title="mode")
    return _save(figure, path_stem, caption)


def distribution_figure(
    values_by_setting: Mapping[str, Sequence[float]],
    path_stem: str,
    *,
    metric: str,
    title: str,
    caption: str,
) -> list[str]:
    """Per-case values of `metric` per setting ("L1 fast", ...): a box and the points."""
    labels = list(values_by_setting)
    data = [[v for v in values_by_setting[label] if v == v] for label in labels]  # drop NaN
    figure, axes = plt.subplots(figsize=(max(4.0, 0.9 * len(labels) + 2), 4.4))
    axes.boxplot(data, showfliers=False)
    axes.set_xticks(range(1, len(labels) + 1), labels, rotation=30, ha="right", fontsize=8)
    for index, values in enumerate(data, start=1):
        spread = [index + 0.12 * ((i * 0.618) % 1 - 0.5) for i in range(len(values))]
        axes.scatter(spread, values, s=8, alpha=0.6, color="tab:blue")
    axes.set_ylabel(f"{metric} per case")
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3, axis="y")
    return _save(figure, path_stem, caption)
