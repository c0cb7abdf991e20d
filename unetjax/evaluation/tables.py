"""Markdown tables of evaluation results, for the commands and the docs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from unetjax.evaluation import names


def validation_table(metrics: Mapping[str, float], head_depths: Sequence[int]) -> str:
    """Validation IoU, Dice and pixel accuracy per head and in accurate mode."""
    rows = [("head", "IoU", "Dice", "accuracy"), ("---", "---", "---", "---")]
    settings = [names.head_name(depth) for depth in head_depths] + [names.ACCURATE]
    for setting in settings:
        rows.append(
            (
                setting,
                *(f"{metrics[names.metric_name(score, setting)]:.4f}" for score in names.SCORES),
            )
        )
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def evaluation_table(report: Mapping) -> str:
    """`evaluate`'s report as a Markdown table (and the sweep's best thresholds, if run)."""
    lines = [
        f"Evaluation of `{report['model']}` (step {report['step']}) on the {report['split']} "
        f"split, {report['results'][0]['num_images']} images, {report['device']}; "
        f"threshold {report['threshold']}; latency: {report['latency']}.",
        "",
        "| depth | mode | params | latency (ms) | IoU | Dice | pixel accuracy |",
        "| --- | --- | ---: | ---: | --- | --- | --- |",
    ]
    for r in report["results"]:
        lines.append(
            f"| L{r['depth']} | {r['mode']} | {r['params']:,} | {r['latency_ms']:.2f} | "
            f"{r['iou']:.4f} ± {r['iou_std']:.4f} | {r['dice']:.4f} ± {r['dice_std']:.4f} | "
            f"{r['accuracy']:.4f} ± {r['accuracy_std']:.4f} |"
        )
    swept = [r for r in report["results"] if "sweep" in r]
    if swept:
        lines += [
            "",
            "Threshold sweep (best IoU on the validation split):",
            "",
            f"| depth | mode | best threshold | validation IoU | {report['split']} IoU at it | "
            f"{report['split']} Dice at it |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for r in swept:
            s = r["sweep"]
            lines.append(
                f"| L{r['depth']} | {r['mode']} | {s['best_threshold']} | "
                f"{s['validation_iou']:.4f} | {s['split_scores']['iou']:.4f} | "
                f"{s['split_scores']['dice']:.4f} |"
            )
    return "\n".join(lines) + "\n"
