"""The depth picker: the most accurate setting within a latency budget, kept in deploy.json."""

import json
import pathlib

import numpy as np
import pytest
from PIL import Image
from test_inference import STEP, make_tiny_run, tiny_config

from unetjax import rundir
from unetjax.cli import export, predict
from unetjax.inference.deploy import artifact_format, deploy_choice


def test_the_depth_picker_takes_the_most_accurate_setting_within_the_budget(tmp_path):
    def row(depth, mode, latency, iou, threshold=0.5):
        return {
            "depth": depth,
            "mode": mode,
            "latency_ms": latency,
            "sweep": {"best_threshold": threshold, "validation_iou": iou},
        }

    report = {
        "split": "test",
        "device": "cpu x1",
        "step": 9,
        "results": [
            row(1, "fast", 2.0, 0.70),
            row(2, "fast", 4.0, 0.80, threshold=0.35),
            row(2, "accurate", 3.5, 0.80, threshold=0.4),
            row(3, "fast", 9.0, 0.90),
        ],
    }
    choice = deploy_choice.choose(report, 5.0, (96, 96))
    # L3 is the most accurate but over budget; L2 ties on IoU, and the faster one wins.
    assert (choice["depth"], choice["mode"], choice["threshold"]) == (2, "accurate", 0.4)
    assert choice["budget_ms"] == 5.0 and choice["image_size"] == [96, 96]
    assert deploy_choice.choose(report, 100, (96, 96))["depth"] == 3
    with pytest.raises(ValueError, match=r"fastest is L1 fast at 2.00 ms"):
        deploy_choice.choose(report, 1.0, (96, 96))

    assert deploy_choice.resolve(tmp_path, None, None).depth is None  # no deploy.json yet
    deploy_choice.write(tmp_path, choice)
    setting = deploy_choice.resolve(tmp_path, None, None)
    assert (setting.depth, setting.mode, setting.threshold) == (2, "accurate", 0.4)
    assert "deploy.json: the most accurate setting within 5 ms at 96x96 on cpu x1" in setting.reason
    given = deploy_choice.resolve(tmp_path, 1, None)  # the user's choice wins
    assert (given.depth, given.mode, given.threshold) == (1, "fast", None)
    (tmp_path / "deploy.json").write_text("{")
    with pytest.raises(ValueError, match=r"deploy\.json: not readable JSON"):
        deploy_choice.read(tmp_path)


def test_an_exported_artifact_and_predict_on_its_run_apply_the_same_threshold(tmp_path, capsys):
    # No deploy.json; `evaluate --sweep` chose 0.3 for L2 fast at the checkpoint's step, and
    # training validated at 0.7: both commands must take the sweep's 0.3.
    config = tiny_config()
    config.train.eval_threshold = 0.7
    run = tmp_path / "run"
    make_tiny_run(run, config)
    rundir.save_thresholds(run, STEP, "validation", {(2, "fast"): 0.3})
    image = np.random.default_rng(3).integers(0, 256, (32, 32), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "cell.png")
    artifact = tmp_path / "model.stablehlo"
    exported = ["--model", str(run), "--format", "stablehlo", "--output", str(artifact)]
    assert export.run(exported) == 0
    sidecar = json.loads(pathlib.Path(artifact_format.sidecar_path(artifact)).read_text())
    assert sidecar["output"]["threshold"] == 0.3
    masks = {}
    for name, model in (("run", run), ("artifact", artifact)):
        out = tmp_path / name
        args = ["--model", str(model), "--output", str(out), "--format", "npy", "--probabilities"]
        assert predict.run([*args, "--no-progress", str(tmp_path / "cell.png")]) == 0
        masks[name] = np.load(out / "cell.npy")
        expected = np.load(out / "cell_probabilities.npy")[..., 0] >= 0.3
        np.testing.assert_array_equal(masks[name], expected)
    assert "threshold 0.3 (evaluate --sweep on the validation split" in capsys.readouterr().out
    np.testing.assert_array_equal(masks["run"], masks["artifact"])
