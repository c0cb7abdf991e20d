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
    if report.get("summary"):
        lines += ["", *per_case_table(report["summary"], report["headline_class"])]
    return "\n".join(lines) + "\n"


def per_case_table(summaries: Sequence[Mapping], class_name: str) -> list[str]:
    """Mean [95% bootstrap CI] of every metric per setting, for one class (or the class mean)."""
    chosen = [s for s in summaries if s["class"] == class_name]
    metrics = list(dict.fromkeys(s["metric"] for s in chosen))
    settings = list(dict.fromkeys((s["depth"], s["mode"]) for s in chosen))
    by_key = {(s["depth"], s["mode"], s["metric"]): s for s in chosen}
    label = "the mean over classes" if class_name == "mean" else f"class {class_name}"
    lines = [
        f"Per-case metrics, {label}: mean [95% bootstrap CI] over the cases where the metric is "
        "defined (n_nan: cases left out, e.g. distances when both masks are empty); distances in "
        "pixels, or mm for volumes with spacing.",
        "",
        "| depth | mode | " + " | ".join(metrics) + " | n | n_nan (hd95) |",
        "| --- | --- | " + " | ".join("---" for _ in metrics) + " | ---: | ---: |",
    ]
    for depth, mode in settings:
        cells = []
        for metric in metrics:
            s = by_key[depth, mode, metric]
            cells.append(f"{s['mean']:.4f} [{s['ci_low']:.4f}, {s['ci_high']:.4f}]")
        first = by_key[depth, mode, metrics[0]]
        nan_hd95 = by_key.get((depth, mode, "hd95"), {}).get("n_nan", 0)
        lines.append(
            f"| L{depth} | {mode} | " + " | ".join(cells) + f" | {first['n']} | {nan_hd95} |"
        )
    return lines
