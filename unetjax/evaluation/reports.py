"""What `evaluate` writes: the per-case CSV, the summary JSON, the Markdown table, figures and
report.html (the page to look at, with pictures of the worst cases).

Every file says what was measured: the split, the checkpoint step, what was scored (full images
or crops, and the tiling), the device, and how latency was timed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from unetjax.evaluation import figures, per_case, report_html, tables

CSV_FILE, SUMMARY_FILE, REPORT_FILE, TABLE_FILE = (
    "per_case.csv",
    "summary.json",
    "evaluation.json",
    "evaluation.md",
)
HEADLINE_METRIC = "dice"


def caption(report: Mapping) -> str:
    return (
        f"{report['split']} split, {report['results'][0]['num_images']} cases, step "
        f"{report['step']}; scored: {report['scored']}; threshold {report['threshold']}; "
        f"device: {report['device']}; latency: {report['latency']}."
    )


def write(report: dict, output: str) -> list[str]:
    """Writes every report file into `output`; returns their names."""
    os.makedirs(output, exist_ok=True)
    case_rows = report.pop("case_rows")
    collector = report.pop("case_pictures", None)
    instances = any("pq" in row for row in case_rows)
    columns = per_case.metric_columns(instances)
    rows = per_case.with_class_means(case_rows, columns)
    summaries = per_case.summarize_rows(rows, columns)
    report["summary"] = summaries
    report["headline_class"] = per_case.headline_class(rows)
    per_case.write_csv(os.path.join(output, CSV_FILE), rows, columns)
    context = {k: report[k] for k in ("model", "step", "split", "scored", "device", "threshold")}
    with open(os.path.join(output, SUMMARY_FILE), "w") as f:
        json.dump({**context, "summaries": summaries}, f, indent=2)
    with open(os.path.join(output, REPORT_FILE), "w") as f:
        json.dump(report, f, indent=2)
    with open(os.path.join(output, TABLE_FILE), "w") as f:
        f.write(tables.evaluation_table(report))
    written = [CSV_FILE, SUMMARY_FILE, REPORT_FILE, TABLE_FILE]
    figure_names = _figures(report, rows, output)
    written += figure_names
    pictures = collector.pictures() if collector is not None else []
    written.append(
        report_html.write(
            output, report, rows, columns, figure_names, pictures, metric=HEADLINE_METRIC
        )
    )
    return written


def _figures(report: Mapping, rows: list[dict], output: str) -> list[str]:
    headline = report["headline_class"]
    latency = {(r["depth"], r["mode"]): r["latency_ms"] for r in report["results"]}
    points = [
        {**s, "latency_ms": latency[s["depth"], s["mode"]]}
        for s in report["summary"]
        if s["metric"] == HEADLINE_METRIC and s["class"] == headline
    ]
    text = caption(report)
    paths = figures.pruning_figure(
        points,
        os.path.join(output, "pruning"),
        metric=HEADLINE_METRIC,
        title=f"{report['architecture']} pruned to depth L: {report['split']} "
        f"{HEADLINE_METRIC} vs latency",
        caption=text,
    )
    by_setting: dict[str, list[float]] = {}
    for row in rows:
        if str(row["class"]) == headline:
            by_setting.setdefault(f"L{row['depth']} {row['mode']}", []).append(row[HEADLINE_METRIC])
    paths += figures.distribution_figure(
        by_setting,
        os.path.join(output, "per_case"),
        metric=HEADLINE_METRIC,
        title=f"{HEADLINE_METRIC} per case, per pruned setting",
        caption=text,
    )
    return [os.path.basename(p) for p in paths]
