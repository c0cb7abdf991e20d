"""One evaluator: training's validation and `evaluate` score a varied-size split with a void
value alike, and neither counts a void pixel."""

import csv
import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from configs import tiny
from tests import user_folders
from unetjax import checkpoint, data, models, rundir, steps, train
from unetjax.evaluation import evaluator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOID = 255
# Twelve images of 48..96 px (issue 23): the sizes vary, most are not multiples of 2^2.
SIZES = [(89, 79), (73, 61), (63, 50), (51, 48), (56, 87), (79, 92), (72, 77), (95, 83),
         (78, 74), (75, 93), (61, 87), (80, 49)]  # fmt: skip


def with_void(stem: str, mask: np.ndarray) -> np.ndarray:
    """Classes 1 or 2 on the blobs, and a void border of three rows."""
    labels = (mask > 0).astype(np.uint8) * (1 + int(stem[-1]) % 2)
    labels[:3] = VOID
    return labels


@pytest.fixture(scope="module")
def void_run(tmp_path_factory):
    """A tiny run trained on a multiclass folder of varied sizes with void pixels, its
    `evaluate` output on the validation split, and the written masks."""
    tmp = tmp_path_factory.mktemp("void")
    written = user_folders.write_folder(tmp / "folder", SIZES, mask_of=with_void, seed=1)
    config = tiny.get_config()
    config.data = user_folders.folder_config(
        tmp, tmp / "folder", val_fraction=0.3, test_fraction=0.0, ignore_index=VOID
    )
    config.data.patch_size = (32, 32)
    config.train.update(num_steps=4, eval_every=4, progress_bar=False, num_overlays=1)
    workdir = str(tmp / "run")
    train.train_and_evaluate(config, workdir)
    output = tmp / "eval"
    completed = subprocess.run(
        [
            sys.executable,
            "evaluate.py",
            "--model",
            workdir,
            "--split",
            "validation",
            "--repeats",
            "1",
            "--output",
            str(output),
        ],
        cwd=ROOT,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return workdir, output, written


def training_validation(workdir: str, **options) -> evaluator.Scores:
    """The validation pass training runs (`train.validation_evaluator`), at the run's last
    checkpoint."""
    config = rundir.load_config(workdir)
    dataset = data.prepare(config.data)
    model = models.from_config(config.model)
    graphdef, params, model_state = nnx.split(model, nnx.Param, ...)
    directory = rundir.checkpoint_dir(workdir)
    restored = checkpoint.restore_subtree(
        directory,
        {"params": params, "model_state": model_state},
        max(checkpoint.checkpoint_steps(directory)),
    )
    state = steps.TrainState(jax.numpy.zeros(()), restored["params"], restored["model_state"], ())
    validation = train.validation_evaluator(
        config, dataset, graphdef, model.head_depths, 2**model.graph.depth, **options
    )
    return validation.run(state)


def read_rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_training_validation_and_evaluate_give_the_same_per_case_rows(void_run):
    workdir, output, _ = void_run
    scores = training_validation(workdir, per_case=True)
    evaluated = {
        (r["case"], int(r["depth"]), r["mode"], r["class"]): r
        for r in read_rows(output / "per_case.csv")
    }
    trained = {(r["case"], r["depth"], r["mode"], str(r["class"])): r for r in scores.rows}
    # Training validates each head alone and accurate mode at full depth; evaluate has them all.
    assert set(trained) <= set(evaluated) and len(trained) == 3 * 4 * 2  # settings, cases, classes
    for key, row in trained.items():
        for column in ("dice", "iou", "precision", "recall", "hd95", "assd", "nsd"):
            expected = float(evaluated[key][column] or "nan")
            assert row[column] == pytest.approx(expected, abs=1e-6, nan_ok=True), (key, column)


def test_training_logs_the_scores_evaluate_reports_with_void_pixels_left_out(void_run):
    workdir, output, _ = void_run
    logged = rundir.last_record(workdir, split="val")
    report = json.loads((output / "evaluation.json").read_text())
    results = {(r["depth"], r["mode"]): r for r in report["results"]}
    for name, setting in (("L1", (1, "fast")), ("L2", (2, "fast")), ("accurate", (2, "accurate"))):
        for score in ("iou", "dice", "accuracy"):
            assert logged[f"{score}_{name}"] == pytest.approx(results[setting][score], abs=1e-6)


def test_full_size_validation_counts_every_pixel_but_the_void_ones(void_run):
    workdir, _, written = void_run
    scores = training_validation(workdir)
    splits = json.loads((pathlib.Path(workdir) / "splits.json").read_text())
    kept = [np.count_nonzero(written[stem]["mask"] != VOID) for stem in splits["validation"]]
    counted = scores.counts.sum(axis=-1)  # (N, settings, thresholds, classes): tp+fp+fn+tn
    assert np.all(counted == counted[:, :1, :1, :1])  # every setting and class counts them all
    assert sorted(counted[:, 0, 0, 0]) == sorted(kept)


def test_varied_size_validation_overlays_each_image_at_its_own_size(void_run):
    workdir, _, written = void_run
    splits = json.loads((pathlib.Path(workdir) / "splits.json").read_text())
    sizes = {written[stem]["image"].shape for stem in splits["validation"]}
    overlay = np.asarray(Image.open(os.path.join(workdir, "overlays", "step_4", "0.png")))
    height, width = overlay.shape[0], overlay.shape[1] // 3  # image, truth, prediction
    assert (height, width) in sizes and (height % 4 or width % 4)
