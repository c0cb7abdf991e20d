"""recipes/isbi2012.py end to end on four real ISBI 2012 slices, and its selection rules.

The pipeline test runs the recipe for U-Net and UNet++ with deep supervision, a few steps on
slices 00-01 (train), 02 (validation) and 03 (test) of ../shared/data/isbi2012_membrane, with tiny
filters: train.py and evaluate.py in subprocesses, then the combined table. It skips when the data
folder is absent (the data are not redistributable, so CI may not have them).
"""

import json
import os
import pathlib
import re

import numpy as np
import pytest
from PIL import Image

from recipes import isbi2012
from recipes import isbi2012_results as results

REPO = pathlib.Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "isbi2012_membrane"
STEPS = 4
MODES = ("fast", "accurate")
SWEEP = {round(t, 2) for t in np.arange(0.05, 0.951, 0.05)}  # evaluate's threshold grid
needs_data = pytest.mark.skipif(
    not DATA.is_dir(), reason=f"{DATA} is absent: the ISBI 2012 data live in ../shared/data"
)

# Two training slices, one validation and one test slice; a depth-2 network with filters 4/8/16
# (so every config's selection metric is iou_accurate, which depth 2 has), 64x64 patches, an
# evaluation every 2 steps so that two checkpoints compete; evaluation on the central 128x128 of
# each slice, overlap-tiled with 64-pixel tiles (3x3 tiles), to keep the test fast.
TINY = [
    "data.train_stems=('00','01')",
    "data.val_stems=('02',)",
    "data.test_stems=('03',)",
    "model.filters=(4,8,16)",
    "model.depth=2",
    "data.patch_size=(64,64)",
    "data.eval_patch_size=(128,128)",
    "data.num_workers=0",
    "train.batch_size=2",
    "train.eval_batch_size=1",
    "train.log_every=1",
    "train.eval_every=2",
    "train.checkpoint_every=2",
    "train.num_overlays=1",
    "train.best_metric=iou_accurate",
    "optimizer.warmup_steps=0",
]


def _mask(stem: str) -> np.ndarray:
    return np.asarray(Image.open(DATA / "masks" / f"{stem}.png"))


@needs_data
def test_real_masks_are_membrane_zero_about_22_percent():
    masks = np.stack([_mask(f"{i:02d}") for i in range(30)])
    assert masks.shape == (30, 512, 512)
    assert set(np.unique(masks)) == {0, 255}
    assert 0.19 < float(np.mean(masks == 0)) < 0.25  # the README: 78% is interior (255)


@pytest.fixture(scope="module")
def recipe_run(tmp_path_factory):
    """The recipe's output root after a tiny run of U-Net and UNet++ with deep supervision."""
    if not DATA.is_dir():
        pytest.skip(f"{DATA} is absent: the ISBI 2012 data live in ../shared/data")
    output = tmp_path_factory.mktemp("isbi2012")
    argv = ["--data", str(DATA), "--output", str(output), "--only", "unet,unetpp"]
    argv += ["--steps", str(STEPS), "--tile", "64", "--eval-batch-size", "9", "--repeats", "1"]
    argv += [item for extra in TINY for item in ("--extra", extra)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JAX_PLATFORMS", "cpu")
        assert isbi2012.main(argv) == 0
    return output


@pytest.mark.slow
def test_training_writes_checkpoints_metrics_and_the_split(recipe_run):
    for name in ("unet", "unetpp"):
        workdir = recipe_run / name
        config = json.loads((workdir / "config.json").read_text())
        data = config["data"]
        assert (data["train_stems"], data["val_stems"], data["test_stems"]) == (
            ["00", "01"],
            ["02"],
            ["03"],
        )
        assert data["isbi_foreground"] == "membrane" and data["data_dir"] == str(
            recipe_run / "tfds"
        )
        assert sorted(results.saved_steps(str(workdir))) == [2, 4]
        records = results.read_jsonl(str(workdir / "metrics.jsonl"))
        assert [r["step"] for r in records if r["split"] == "train"] == list(range(1, STEPS + 1))
        assert [r["step"] for r in records if r["split"] == "val"] == [2, 4]
        assert "$ " in (workdir / "train.log").read_text()


@pytest.mark.slow
def test_evaluate_runs_at_the_best_validation_checkpoint_with_the_expected_rows(recipe_run):
    expected = {"unet": [(2, "fast")], "unetpp": [(d, m) for d in (1, 2) for m in MODES]}
    for name, settings in expected.items():
        workdir = recipe_run / name
        report = json.loads((workdir / "eval_test" / "evaluation.json").read_text())
        val = [r for r in results.read_jsonl(str(workdir / "metrics.jsonl")) if r["split"] == "val"]
        best = max(val, key=lambda r: (r["iou_accurate"], r["step"]))["step"]
        assert report["step"] == best
        assert (report["split"], report["tile"]) == ("test", 64)
        assert [(r["depth"], r["mode"]) for r in report["results"]] == settings
        for row in report["results"]:
            assert row["num_images"] == 1 and row["params"] > 0 and row["latency_ms"] > 0
            assert 0 <= row["iou"] <= 1 and 0 <= row["accuracy"] <= 1
            assert row["sweep"]["best_threshold"] in SWEEP
        table = (workdir / "eval_test" / "evaluation.md").read_text()
        for depth, mode in settings:
            assert f"| L{depth} | {mode} |" in table
        assert (workdir / "eval_test" / "pruning.png").is_file()


@pytest.mark.slow
def test_results_table_json_and_plot_combine_the_evaluations(recipe_run):
    summary = json.loads((recipe_run / "results.json").read_text())
    models = {m["name"]: m for m in summary["models"]}
    assert list(models) == ["unet", "unetpp"]
    for name, setting in (("unet", "L2 fast"), ("unetpp", "L2 accurate")):
        model = models[name]
        report = json.loads((recipe_run / name / "eval_test" / "evaluation.json").read_text())
        depth, mode = int(setting[1]), setting.split()[1]
        row = next(r for r in report["results"] if (r["depth"], r["mode"]) == (depth, mode))
        assert model["setting"] == setting
        assert model["params"] == row["params"]
        assert (model["iou"], model["dice"], model["accuracy"]) == (
            row["iou"],
            row["dice"],
            row["accuracy"],
        )
        assert model["best_threshold"] == row["sweep"]["best_threshold"]
        assert model["accuracy_at_best"] == row["sweep"]["split_scores"]["accuracy"]
        assert model["num_steps"] == STEPS and model["train_seconds_per_step"] > 0
    assert models["unet"]["reference_accuracy"] == 0.919
    assert len(models["unetpp"]["rows"]) == 4
    assert models["unet"]["params"] < models["unetpp"]["params"]

    table = (recipe_run / "results.md").read_text()
    assert "test slices 03 (1 images, central 128x128 crops, overlap-tile 64x64)" in table
    assert f"{STEPS} steps, batch 2, patch 64x64" in table and "validation slices 02." in table
    assert re.search(r"^\| U-Net \| [\d,]+ \| \d \| L2 fast \|", table, re.M)
    assert re.search(
        r"^\| UNet\+\+ \(deep supervision\) \| [\d,]+ \| \d \| L2 accurate \|", table, re.M
    )
    for depth in (1, 2):
        for mode in MODES:
            assert f"| L{depth} | {mode} |" in table
    assert "train.py --config configs/isbi2012_unetpp.py" in table
    assert "evaluate.py --model" in table and "--sweep" in table
    for name in ("unet", "unetpp"):
        record = json.loads((recipe_run / name / "recipe.json").read_text())
        assert record["train"].startswith(f"python train.py --config configs/isbi2012_{name}.py")
        assert record["evaluate"] == models[name]["commands"]["evaluate"]
        assert record["train"] in table and record["evaluate"] in table
    assert "*" not in table.split("Produced by")[0].replace("**", "")
    plot = recipe_run / results.PRUNING_PNG
    assert plot.read_bytes() == (recipe_run / "unetpp" / "eval_test" / "pruning.png").read_bytes()
    assert Image.open(plot).format == "PNG"


@pytest.mark.slow
def test_models_from_an_earlier_run_are_marked_in_the_table(recipe_run):
    models = json.loads((recipe_run / "results.json").read_text())["models"]
    models[0]["evaluated_now"] = False  # as after `--only unetpp` in the same output root
    table = results.markdown(models, "python recipes/isbi2012.py --only unetpp")
    assert "| U-Net * |" in table and "| UNet++ (deep supervision) |" in table
    assert "* evaluated by an earlier run of the recipe" in table


@pytest.mark.slow
def test_the_built_dataset_has_the_membrane_as_foreground(recipe_run):
    from ml_collections import ConfigDict

    from unetjax import data

    config = ConfigDict(json.loads((recipe_run / "unetpp" / "config.json").read_text()))
    (batch,) = data.eval_batches(data.prepare(config.data), "test", batch_size=1)
    centre = (slice(192, 320), slice(192, 320))  # eval_patch_size 128 of 512
    np.testing.assert_array_equal(batch["mask"][0], _mask("03")[centre] == 0)
    image = np.asarray(Image.open(DATA / "images" / "03.png"))[centre] / 255.0
    np.testing.assert_allclose(batch["image"][0, ..., 0], image, atol=1e-6)


def test_checkpoint_selection_takes_the_best_saved_validation_step(tmp_path):
    for step in (500, 1500, 2000):
        (tmp_path / "checkpoints" / str(step)).mkdir(parents=True)
    (tmp_path / "checkpoints" / "2500.orbax-checkpoint-tmp-1").mkdir()  # unfinished: ignored
    records = [
        {"step": 500, "split": "val", "iou_L4": 0.60},
        {"step": 1000, "split": "val", "iou_L4": 0.90},  # its checkpoint was not kept
        {"step": 1000, "split": "train", "iou_L4": 0.99},  # not a validation record
        {"step": 1500, "split": "val", "iou_L4": 0.70},
        {"step": 2000, "split": "val", "iou_L4": 0.70},
        {"step": 2500, "split": "val", "iou_L4": 0.95},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert results.best_step(str(tmp_path), "iou_L4") == 2000  # ties: the later step
    assert results.best_step(str(tmp_path), "iou_L4", "min") == 500
    assert results.best_step(str(tmp_path), "") is None  # no metric: evaluate takes the latest
    assert results.best_step(str(tmp_path), "dice_L4") is None


@pytest.mark.parametrize(
    "model, metric, expected",
    [
        (
            {"architecture": "unet_plusplus", "deep_supervision": True, "depth": 4},
            "iou_accurate",
            (4, "accurate"),
        ),
        (
            {"architecture": "unet_plusplus", "deep_supervision": True, "depth": 4},
            "iou_L3",
            (3, "fast"),
        ),
        (
            {"architecture": "unet", "deep_supervision": True, "depth": 4},
            "iou_accurate",
            (4, "fast"),
        ),  # one head: accurate mode is that head
        (
            {"architecture": "unet_3plus", "deep_supervision": True, "depth": 4},
            "iou_L4",
            (4, "fast"),
        ),
        (
            {
                "architecture": "unet_plusplus",
                "deep_supervision": False,
                "depth": None,
                "filters": [4, 8, 16],
            },
            "loss",
            (2, "fast"),
        ),
    ],
)
def test_the_reported_setting_is_the_one_the_checkpoint_was_chosen_for(model, metric, expected):
    assert results.main_setting(model, metric) == expected


@needs_data
@pytest.mark.parametrize(
    "argv, message",
    [
        (["--only", "unet,resnet"], "unknown models"),
        (["--extra", "train.batch_size"], "expected KEY=VALUE"),
        (["--extra", "config.train.batch_size=4"], "expected KEY=VALUE"),
        (["--steps", "0"], "--steps must be positive"),
    ],
)
def test_bad_arguments_are_errors_that_name_the_problem(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit):
        isbi2012.parse_args(["--data", str(DATA), "--output", str(tmp_path), *argv])
    assert message in capsys.readouterr().err


def test_a_folder_without_images_and_masks_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        isbi2012.parse_args(["--data", str(tmp_path), "--output", str(tmp_path / "out")])
    assert "expected images/ and masks/" in capsys.readouterr().err


def test_seeds_train_in_their_own_directories_and_are_summarised(tmp_path):
    (tmp_path / "data" / "images").mkdir(parents=True)
    (tmp_path / "data" / "masks").mkdir()
    argv = ["--data", str(tmp_path / "data"), "--output", str(tmp_path / "out"), "--seeds", "3"]
    args = isbi2012.parse_args(argv)
    unet = results.MODELS[0]
    first, third = isbi2012.train_command(unet, args, 0), isbi2012.train_command(unet, args, 2)
    assert first[first.index("--workdir") + 1] == str(tmp_path / "out" / unet.name)
    assert third[third.index("--workdir") + 1] == str(tmp_path / "out" / f"{unet.name}_seed2")
    assert "--config.seed=2" in third and not any("config.seed=" in a for a in first)
    for seed in (0, 2):
        os.makedirs(results.run_directory(args.output, unet, seed))
    assert results.seeds_present(args.output, unet) == [0, 2]

    runs = [
        {"iou": 0.70, "dice": 0.82, "accuracy": 0.91},
        {"iou": 0.74, "dice": 0.85, "accuracy": 0.92},
    ]
    summary = results.seed_summary(runs, [0, 2])
    assert summary["n"] == 2 and summary["iou"] == [0.70, 0.74]
    assert abs(summary["iou_mean"] - 0.72) < 1e-12
    assert abs(summary["iou_sd"] - np.std([0.70, 0.74], ddof=1)) < 1e-12
    table = "\n".join(results.seeds_table([{"title": "U-Net", "seeds": summary}]))
    assert "| U-Net | 2 | 0.7200 ± 0.0283 |" in table and "0.7000, 0.7400" in table
