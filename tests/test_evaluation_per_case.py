"""Per-case rows, class means and summaries: checked against hand-computed values."""

import math

import numpy as np

from unetjax.evaluation import per_case


def _row(case, depth, class_name, dice, hd95):
    identity = {"case": case, "split": "test", "depth": depth, "mode": "fast", "class": class_name}
    return {**identity, "reference_voxels": 10, "prediction_voxels": 12, "dice": dice, "hd95": hd95}


def test_class_means_average_each_case_over_its_classes_leaving_nan_out():
    rows = [_row("a", 1, 1, 0.8, 2.0), _row("a", 1, 2, 0.4, math.nan), _row("b", 1, 1, 1.0, 1.0)]
    means = [r for r in per_case.with_class_means(rows, ("dice", "hd95")) if r["class"] == "mean"]
    assert len(means) == 1  # case b has one class: no mean row
    assert means[0]["case"] == "a" and math.isclose(means[0]["dice"], 0.6)
    assert means[0]["hd95"] == 2.0 and means[0]["reference_voxels"] == 20


def test_summaries_group_by_setting_and_class_with_nan_counted():
    cases = [("a", 1, 0.5, 3.0), ("b", 1, 0.7, math.nan), ("a", 2, 0.9, 1.0), ("b", 2, 0.8, 2.0)]
    rows = [_row(case, depth, 1, dice, hd95) for case, depth, dice, hd95 in cases]
    summaries = per_case.summarize_rows(rows, ("dice", "hd95"))
    by_key = {(s["depth"], s["metric"]): s for s in summaries}
    assert math.isclose(by_key[1, "dice"]["mean"], 0.6)
    assert math.isclose(by_key[1, "dice"]["sd"], np.std([0.5, 0.7], ddof=1))
    assert by_key[1, "hd95"]["n"] == 1 and by_key[1, "hd95"]["n_nan"] == 1
    assert math.isclose(by_key[2, "hd95"]["median"], 1.5)
    assert [s["depth"] for s in summaries] == [1, 1, 2, 2]


def test_the_csv_writes_nan_as_empty(tmp_path):
    path = tmp_path / "rows.csv"
    per_case.write_csv(str(path), [_row("a", 1, 1, 0.5, math.nan)], ("dice", "hd95"))
    header, line = path.read_text().splitlines()
    assert header.split(",")[-2:] == ["dice", "hd95"] and line.endswith(",0.5,")
