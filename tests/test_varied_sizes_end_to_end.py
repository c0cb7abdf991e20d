"""A folder of images of varied sizes trains, validates and evaluates at full size."""

import csv
import json
import os
import subprocess
import sys

import numpy as np

from tests import user_folders

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Twelve images of 48..96 px (issue 23): validation images that are not multiples of 2^2
# are padded and cropped back, as predict does, for the scores and for the overlays.
SIZES = [(89, 79), (73, 61), (63, 50), (51, 48), (56, 87), (79, 92), (72, 77), (95, 83),
         (78, 74), (75, 93), (61, 87), (80, 49)]  # fmt: skip


def run(*args):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    completed = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-3000:]
    assert "Traceback" not in completed.stderr
    return completed


def test_varied_sizes_are_validated_and_evaluated_whole(tmp_path):
    user_folders.write_folder(tmp_path / "folder", SIZES, seed=3)
    workdir = tmp_path / "run"
    common = [
        "--config.data.name=image_folder",
        f"--config.data.manual_dir={tmp_path / 'folder'}",
        f"--config.data.data_dir={tmp_path / 'tfds'}",
        "--config.data.val_fraction=0.3",
        "--config.data.test_fraction=0.25",
        "--config.train.progress_bar=False",
    ]
    completed = run(
        "train.py", "--config", "configs/tiny.py", "--workdir", str(workdir), *common,
        "--config.train.num_steps=4", "--config.train.eval_every=4",
    )  # fmt: skip
    assert "scored at full size as predict predicts them, overlap-tiled with 32x32 tiles" in (
        completed.stdout
    )
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    validation = [r for r in records if r["split"] == "val"]
    assert validation and 0 <= validation[-1]["iou_L2"] <= 1 and np.isfinite(validation[-1]["loss"])
    splits = json.loads((workdir / "splits.json").read_text())
    assert sorted(splits["train"] + splits["validation"] + splits["test"]) == [
        f"case{i:03d}" for i in range(len(SIZES))
    ]
    assert (workdir / "dataset_summary.json").is_file()
    assert os.listdir(workdir / "overlays" / "step_4")

    # The folder moves after training: --manual-dir points evaluate at its new place.
    moved = tmp_path / "moved"
    (tmp_path / "folder").rename(moved)
    out = tmp_path / "eval"
    run("evaluate.py", "--model", str(workdir), "--split", "test", "--repeats", "1",
        "--manual-dir", str(moved), "--output", str(out))  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scored"] == "full images, overlap-tiled with 32x32 tiles"
    with open(out / "per_case.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["case"] for r in rows} == set(splits["test"])  # the cases, by their file stems
