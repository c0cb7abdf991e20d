"""Per-case results of pruned settings: rows, their summaries with bootstrap CIs, CSV and JSON.

A row is one case x setting (depth L, mode) x class, with every metric of `case_metrics`.
Summaries group rows by setting and class (and over all foreground classes, class "mean": the
per-case mean over classes first, so every case counts once) and report mean, sd, median, n,
n_nan and a 95% percentile bootstrap CI of the mean. The CSV keeps every row, so a paper's
statistics (paired tests between settings, other CIs) can be computed from it.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from collections.abc import Iterable, Sequence

import numpy as np

from unetjax.evaluation import case_metrics as case_lib
from unetjax.evaluation import statistics

ID_COLUMNS = ("case", "split", "depth", "mode", "class")
COUNT_COLUMNS = ("reference_voxels", "prediction_voxels")
MEAN_CLASS = "mean"


def metric_columns(instances: bool) -> tuple[str, ...]:
    """The metrics a row holds, in table order."""
    columns = case_lib.OVERLAP_METRICS + case_lib.SURFACE_METRICS
    return columns + (case_lib.INSTANCE_METRICS if instances else ())


def case_rows(
    case: str,
    split: str,
    depth: int,
    mode: str,
    prediction: np.ndarray,
    reference: np.ndarray,
    **options,
) -> list[dict]:
    """The rows of one case at one setting; `options` go to `case_metrics.case_metrics`."""
    rows = case_lib.case_metrics(prediction, reference, **options)
    identity = {"case": case, "split": split, "depth": depth, "mode": mode}
    return [{**identity, **row} for row in rows]


def with_class_means(rows: Sequence[dict], columns: Sequence[str]) -> list[dict]:
    """`rows` plus, per case and setting with several classes, a row of class "mean" (the mean
    over that case's classes of each metric, NaN left out)."""
    grouped: dict[tuple, list[dict]] = {}
    for row in rows:
        grouped.setdefault((row["case"], row["split"], row["depth"], row["mode"]), []).append(row)
    means = []
    for (case, split, depth, mode), group in grouped.items():
        if len(group) < 2:
            continue
        mean = {"case": case, "split": split, "depth": depth, "mode": mode, "class": MEAN_CLASS}
        for column in columns:
            values = np.asarray([r[column] for r in group], np.float64)
            mean[column] = float(np.nanmean(values)) if np.isfinite(values).any() else math.nan
        for column in COUNT_COLUMNS:
            mean[column] = int(sum(r[column] for r in group))
        means.append(mean)
    return [*rows, *means]


def summarize_rows(rows: Sequence[dict], columns: Sequence[str], *, seed: int = 0) -> list[dict]:
    """One summary per (depth, mode, class) and metric: mean, sd, median, n, n_nan, CI."""
    grouped: dict[tuple, list[dict]] = {}
    for row in rows:
        grouped.setdefault((row["depth"], row["mode"], str(row["class"])), []).append(row)
    summaries = []
    for (depth, mode, class_name), group in sorted(grouped.items(), key=_summary_order):
        for column in columns:
            values = np.asarray([r[column] for r in group], np.float64)
            summary = statistics.summarize(values, seed=seed)
            summaries.append(
                {
                    "depth": depth,
                    "mode": mode,
                    "class": class_name,
                    "metric": column,
                    **dataclasses.asdict(summary),
                }
            )
    return summaries


def _summary_order(item: tuple) -> tuple:
    (depth, mode, class_name), _ = item
    return (depth, mode != "fast", class_name == MEAN_CLASS, class_name)


def headline_class(rows: Sequence[dict]) -> str:
    """The class a table shows: the class mean when there are several classes, else the one."""
    classes = {str(row["class"]) for row in rows}
    return MEAN_CLASS if MEAN_CLASS in classes else min(classes)


def write_csv(path: str, rows: Iterable[dict], columns: Sequence[str]) -> None:
    """Every row, with the identity, count and metric columns (NaN written as empty)."""
    fields = [*ID_COLUMNS, *COUNT_COLUMNS, *columns]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: "" if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
            )
