"""predict, evaluate and export end to end, in subprocesses, on a checkpoint train.py wrote."""

import csv
import json
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _run(args, env, check_rc=0):
    result = subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    if check_rc is not None:
        assert result.returncode == check_rc, result.stdout + result.stderr
    return result


def test_predict_writes_masks_and_overlays_and_reports_bad_files(trained, tmp_path):
    workdir, images, env = trained
    out = tmp_path / "masks"
    result = _run(
        [
            "predict.py",
            "--model",
            str(workdir),
            "--output",
            str(out),
            str(images),
            str(images / "missing.tif"),
            "--depth",
            "1",
            "--tile",
            "32",
            "--overlay",
            "--min-size",
            "3",
            "--no-progress",
        ],
        env,
        check_rc=1,
    )
    shapes = [("cell_a", (32, 32)), ("cell_b", (32, 32)), ("large", (70, 45)), ("colour", (32, 32))]
    for name, shape in shapes:
        mask = np.asarray(Image.open(out / f"{name}.png"))
        assert mask.shape == shape and set(np.unique(mask)) <= {0, 255}
        width, height = Image.open(out / "overlays" / f"{name}.png").size
        assert width == shape[1] and height > shape[0]  # the image, then its legend
    assert not (out / "broken.png").exists()
    assert "3-channel images converted to grayscale for the 1-channel model" in result.stderr
    assert "2 inputs failed" in result.stderr
    assert "broken.png: cannot read it as an image" in result.stderr
    assert "missing.tif" in result.stderr
    assert "wrote 4 masks" in result.stdout
    assert "threshold 0.5 (train.eval_threshold)" in result.stdout  # what validation used


def test_export_then_predict_with_the_exported_model(trained, tmp_path):
    workdir, images, env = trained
    exported = tmp_path / "exported"
    result = _run(
        [
            "-m",
            "unetjax.cli.export",
            "--model",
            str(workdir),
            "--depth",
            "2",
            "--mode",
            "accurate",
            "--output",
            str(exported),
        ],
        env,
    )
    assert "depth 2 (accurate)" in result.stdout
    out = tmp_path / "npy"
    _run(
        [
            "-m",
            "unetjax.cli.predict",
            "--model",
            str(exported),
            "--output",
            str(out),
            str(images / "cell_*.png"),
            "--mode",
            "accurate",
            "--format",
            "npy",
            "--tta",
            "--probabilities",
            "--no-progress",
        ],
        env,
    )
    mask = np.load(out / "cell_a.npy")
    probabilities = np.load(out / "cell_a_probabilities.npy")
    assert mask.shape == (32, 32) and mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, (probabilities[..., 0] >= 0.5).astype(np.uint8))


def test_evaluate_writes_the_pruning_table_json_and_plot(trained, tmp_path):
    workdir, _, env = trained
    out = tmp_path / "eval"
    result = _run(
        [
            "evaluate.py",
            "--model",
            str(workdir),
            "--split",
            "test",
            "--sweep",
            "--repeats",
            "2",
            "--output",
            str(out),
        ],
        env,
    )
    report = json.loads((out / "evaluation.json").read_text())
    settings = [(r["depth"], r["mode"]) for r in report["results"]]
    assert settings == [(1, "fast"), (1, "accurate"), (2, "fast"), (2, "accurate")]
    for row in report["results"]:
        for key in ("iou", "iou_std", "dice", "dice_std", "accuracy", "accuracy_std"):
            assert 0 <= row[key] <= 1, (key, row)
        assert row["params"] > 0 and row["latency_ms"] > 0 and row["num_images"] == 4
        assert 0 < row["sweep"]["best_threshold"] < 1
    params = {(r["depth"], r["mode"]): r["params"] for r in report["results"]}
    assert params[(1, "fast")] < params[(2, "fast")] <= params[(2, "accurate")]
    table = (out / "evaluation.md").read_text()
    assert "| L2 | accurate |" in table and "best threshold" in table
    assert "Per-case metrics" in table and "hd95" in table
    for name in ("pruning", "per_case"):
        assert Image.open(out / f"{name}.png").size[0] > 300
        svg = (out / f"{name}.svg").read_text()
        assert "test split" in svg and "scored: full images" in svg
    assert "wrote per_case.csv" in result.stdout


def test_evaluate_keeps_every_case_and_its_summary_means_are_the_csv_means(trained, tmp_path):
    workdir, _, env = trained
    out = tmp_path / "eval"
    _run(["evaluate.py", "--model", str(workdir), "--split", "test", "--repeats", "1",
          "--output", str(out)], env)  # fmt: skip
    with open(out / "per_case.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    # 4 test cases x (L1, L2) x (fast, accurate) x 1 class: one row each.
    keys = {(r["case"], r["depth"], r["mode"], r["class"]) for r in rows}
    assert len(rows) == len(keys) == 4 * 2 * 2 * 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["split"] == "test" and summary["scored"] == "full images"
    for entry in summary["summaries"]:
        chosen = [
            r for r in rows if (int(r["depth"]), r["mode"]) == (entry["depth"], entry["mode"])
        ]
        values = np.array([float(r[entry["metric"]] or "nan") for r in chosen])
        finite = values[np.isfinite(values)]
        assert entry["n"] == len(finite) and entry["n_nan"] == len(values) - len(finite)
        if len(finite):
            np.testing.assert_allclose(entry["mean"], finite.mean(), rtol=1e-9)
            assert entry["ci_low"] <= entry["mean"] <= entry["ci_high"] or len(finite) < 2
    assert {"f1_instance", "pq"} <= set(rows[0])  # the synthetic cells have instance labels


def test_the_depth_picker_writes_deploy_json_that_export_and_predict_follow(trained, tmp_path):
    pytest.importorskip("onnxruntime", reason="needs the deploy extra")
    workdir, images, env = trained
    run = tmp_path / "run"
    shutil.copytree(workdir, run)  # deploy.json goes into the run: keep the shared one clean
    _run(
        [
            *("evaluate.py", "--model", str(run), "--sweep", "--latency-budget-ms", "1e6"),
            *("--image-size", "32", "32", "--repeats", "1", "--output", str(tmp_path / "eval")),
        ],
        env,
    )
    choice = json.loads((run / "deploy.json").read_text())
    report = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    best = max(report["results"], key=lambda r: (r["sweep"]["validation_iou"], -r["latency_ms"]))
    assert (choice["depth"], choice["mode"]) == (best["depth"], best["mode"])
    assert choice["threshold"] == best["sweep"]["best_threshold"]
    assert choice["image_size"] == [32, 32] and choice["budget_ms"] == 1e6
    assert len(choice["considered"]) == len(report["results"]) == 4

    artifact = tmp_path / "model.stablehlo"
    result = _run(
        [
            "-m",
            "unetjax.cli.export",
            "--model",
            str(run),
            "--format",
            "stablehlo",
            "--output",
            str(artifact),
        ],
        env,
    )
    assert f"L{choice['depth']} {choice['mode']}: {run / 'deploy.json'}" in result.stdout
    sidecar = json.loads((tmp_path / "model.stablehlo.json").read_text())
    assert (sidecar["model"]["depth"], sidecar["model"]["mode"]) == (
        choice["depth"],
        choice["mode"],
    )
    assert sidecar["output"]["threshold"] == choice["threshold"]

    # The artifact and the run (at deploy.json's setting) write the same masks and probabilities.
    common = [
        "--format",
        "npy",
        "--probabilities",
        "--tta",
        "--no-progress",
        str(images / "cell_*.png"),
    ]
    _run(["predict.py", "--model", str(artifact), "--output", str(tmp_path / "a"), *common], env)
    result = _run(
        ["predict.py", "--model", str(run), "--output", str(tmp_path / "r"), *common], env
    )
    assert "deploy.json" in result.stdout
    for name in ("cell_a", "cell_b"):
        np.testing.assert_allclose(
            np.load(tmp_path / "a" / f"{name}_probabilities.npy"),
            np.load(tmp_path / "r" / f"{name}_probabilities.npy"),
            atol=1e-5,
        )
        np.testing.assert_array_equal(
            np.load(tmp_path / "a" / f"{name}.npy"), np.load(tmp_path / "r" / f"{name}.npy")
        )


def test_an_onnx_artifact_predicts_any_image_size_as_the_run_tiles_it(trained, tmp_path):
    pytest.importorskip("jax2onnx", reason="needs the deploy extra")
    workdir, images, env = trained
    artifact = tmp_path / "model.onnx"
    result = _run(
        [
            "-m",
            "unetjax.cli.export",
            "--model",
            str(workdir),
            "--format",
            "onnx",
            "--depth",
            "1",
            "--image-size",
            "32",
            "32",
            "--output",
            str(artifact),
        ],
        env,
    )
    assert "any batch at 32x32" in result.stdout and "checked with its runtime" in result.stdout
    # The 70x45 image is tiled with the artifact's 32x32: as the run predicts it with --tile 32.
    common = ["--format", "npy", "--probabilities", "--no-progress", str(images / "large.png")]
    _run(["predict.py", "--model", str(artifact), "--output", str(tmp_path / "a"), *common], env)
    _run(
        [
            "predict.py",
            "--model",
            str(workdir),
            "--depth",
            "1",
            "--tile",
            "32",
            "--output",
            str(tmp_path / "r"),
            *common,
        ],
        env,
    )
    np.testing.assert_allclose(
        np.load(tmp_path / "a" / "large_probabilities.npy"),
        np.load(tmp_path / "r" / "large_probabilities.npy"),
        atol=1e-5,
    )
    result = _run(
        [
            "predict.py",
            "--model",
            str(artifact),
            "--depth",
            "2",
            "--output",
            str(tmp_path / "x"),
            str(images / "large.png"),
        ],
        env,
        check_rc=2,
    )
    assert result.stderr.strip() == (
        "predict: error: --depth apply to run directories; an artifact is fixed at export"
    )
