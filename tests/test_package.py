"""Model packages (`unetjax-export --package`): a trained run round-trips through the package
with identical predictions, and its README.md is a model card the Hugging Face Hub parses."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from flax import nnx

from tests.conftest import REPO, run_command
from unetjax import inference
from unetjax.inference import package
from unetjax.inference.deploy import artifact_runner

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def packaged(tiny_run, tmp_path_factory):
    """The tiny run packaged by the command a user types."""
    out = tmp_path_factory.mktemp("package") / "cells_model"
    result = run_command(
        ["-m", "unetjax.cli.export", "--model", str(tiny_run.workdir), "--package", str(out)],
        tiny_run.env,
    )
    assert f"wrote package {out}: step 15" in result.stdout
    return out


def test_the_package_predicts_exactly_what_its_run_predicts_at_every_depth_and_mode(
    tiny_run, packaged
):
    import unetjax

    image = np.random.default_rng(0).random((40, 36, 1), dtype=np.float32)
    for depth, mode in [(1, "fast"), (1, "accurate"), (2, "fast"), (2, "accurate")]:
        from_run = inference.load_predictor(tiny_run.workdir, depth=depth, mode=mode)
        from_package = unetjax.load_pretrained(packaged, depth=depth, mode=mode)
        assert (from_package.step, from_package.num_params) == (from_run.step, from_run.num_params)
        np.testing.assert_array_equal(from_package.predict(image), from_run.predict(image))
    default = unetjax.load_pretrained(str(packaged))
    assert (default.depth, default.mode) == (2, "fast")  # load_predictor's default: the deepest


def test_predict_writes_the_same_arrays_from_the_package_as_from_the_run(
    tiny_run, packaged, tmp_path
):
    images = tmp_path / "images"
    images.mkdir()
    np.save(images / "cell.npy", np.random.default_rng(1).random((48, 40), dtype=np.float32))
    outputs = {}
    for name, model in [("run", tiny_run.workdir), ("package", packaged)]:
        out = tmp_path / name
        run_command(
            [
                "-m",
                "unetjax.cli.predict",
                "--model",
                str(model),
                "--output",
                str(out),
                str(images),
                "--format",
                "npy",
                "--probabilities",
                "--no-progress",
            ],
            tiny_run.env,
        )
        outputs[name] = {p.name: np.load(p) for p in sorted(out.rglob("*.npy"))}
    assert outputs["run"] and outputs["run"].keys() == outputs["package"].keys()
    for file, array in outputs["run"].items():
        np.testing.assert_array_equal(outputs["package"][file], array)


def test_the_weights_are_safetensors_under_their_state_paths(tiny_run, packaged):
    from safetensors.numpy import load_file

    tensors = load_file(packaged / package.WEIGHTS_FILE)
    predictor = inference.load_predictor(tiny_run.workdir, depth=2, mode="accurate")
    _, params, model_state = nnx.split(predictor.model(), nnx.Param, ...)
    expected = {}
    for key, state in (("params", params), ("model_state", model_state)):
        for path, variable in nnx.to_flat_state(state):
            expected["/".join((key, *map(str, path)))] = np.asarray(variable.get_value())
    assert set(tensors) == set(expected)
    assert "params/nodes/x_0_1/conv1/conv/kernel" in tensors
    for key, array in expected.items():
        np.testing.assert_array_equal(tensors[key], array)


def test_the_manifest_names_the_classes_channels_and_normalisation(tiny_run, packaged):
    manifest = json.loads((packaged / package.MANIFEST_FILE).read_text())
    config = json.loads((tiny_run.workdir / "config.json").read_text())
    assert manifest["step"] == 15 and manifest["architecture"] == "unet_plusplus"
    assert manifest["channel_names"] == ["gray"] and manifest["output_names"] == ["foreground"]
    assert manifest["normalization"] == config["normalization"]
    assert manifest["default_setting"]["depth"] == 2 and manifest["evaluations"] == {}
    for name in ("config.json", "dataset_summary.json", "README.md", package.WEIGHTS_FILE):
        assert (packaged / name).is_file()


def test_an_unevaluated_run_has_a_card_that_says_so_and_parses_on_the_hub(packaged):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    card = huggingface_hub.ModelCard.load(packaged / "README.md")
    fields = card.data.to_dict()
    assert fields["library_name"] == "unetjax" and fields["license"] == "other"
    assert fields["tags"] == ["medical-imaging", "segmentation", "unet++", "jax"]
    assert fields["datasets"] == ["synthetic_cells"] and "model-index" not in fields
    assert "Not evaluated" in card.text and "## Intended use" in card.text
    assert "dataset synthetic_cells (2d_32px_8_4_4_seed0)" in card.text


def _summary(depth, mode, metric, mean, low, high):
    return {
        "depth": depth,
        "mode": mode,
        "class": "1",
        "metric": metric,
        "mean": mean,
        "sd": 0.1,
        "median": mean,
        "n": 4,
        "n_nan": 0,
        "ci_low": low,
        "ci_high": high,
        "confidence": 0.95,
    }


def test_an_evaluated_run_has_its_tables_a_model_index_and_with_artifacts_a_stablehlo_file(
    tiny_run, tmp_path
):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    run = tmp_path / "run"
    shutil.copytree(tiny_run.workdir, run, ignore=shutil.ignore_patterns("tensorboard"))
    evaluation = run / "eval_test"
    evaluation.mkdir()
    summaries = [
        _summary(d, m, metric, mean, mean - 0.05, mean + 0.05)
        for d, m, base in [(1, "fast", 0.6), (2, "fast", 0.7)]
        for metric, mean in [("dice", base), ("iou", base - 0.2)]
    ]
    context = {"model": str(run), "step": 15, "split": "test", "scored": "full images"}
    (evaluation / "summary.json").write_text(
        json.dumps({**context, "device": "cpu x1", "threshold": 0.5, "summaries": summaries})
    )
    results = [
        {"depth": 1, "mode": "fast", "params": 1677, "latency_ms": 1.25},
        {"depth": 2, "mode": "fast", "params": 8201, "latency_ms": 3.5},
    ]
    report = {**context, "device": "cpu x1", "latency": "batch 1", "results": results}
    report.update(latency_image_size=[32, 32], headline_class="1")
    (evaluation / "evaluation.json").write_text(json.dumps(report))
    out = tmp_path / "pkg"
    manifest = package.write(run, out, license="cc-by-4.0", with_artifacts=True)
    card = huggingface_hub.ModelCard.load(out / "README.md")
    fields = card.data.to_dict()
    assert fields["license"] == "cc-by-4.0" and fields["metrics"] == ["dice", "iou"]
    (result,) = fields["model-index"][0]["results"]
    assert result["dataset"] == {
        "name": "synthetic_cells",
        "type": "synthetic_cells",
        "split": "test",
    }
    assert [(m["type"], m["value"]) for m in result["metrics"]] == [("dice", 0.7), ("iou", 0.5)]
    assert "| L1 | fast | 0.6000 [0.5500, 0.6500] | 0.4000 [0.3500, 0.4500] | 4 | 0 |" in card.text
    assert "| L2 | fast | 0.7000 [0.6500, 0.7500] | 0.5000 [0.4500, 0.5500] | 4 | 0 |" in card.text
    assert "| L2 | fast | 8,201 | 3.50 |" in card.text and "Not evaluated" not in card.text
    assert (out / "evaluation" / "test" / "summary.json").is_file()
    # The artifact runs in its own runtime and predicts what the run does at the same setting.
    stablehlo = "artifacts/model_L2_fast.stablehlo"
    assert manifest["artifacts"] == [stablehlo, f"{stablehlo}.json"]
    image = np.random.default_rng(2).random((32, 32, 1), dtype=np.float32)
    runner = artifact_runner.load_artifact(out / stablehlo)
    predictor = inference.load_predictor(tiny_run.workdir, depth=2, mode="fast")
    np.testing.assert_allclose(runner.predict(image), predictor.predict(image), atol=1e-5)


def test_packaging_into_a_folder_in_use_or_a_package_again_is_a_one_line_error(
    tiny_run, packaged, tmp_path
):
    for model, folder, message in [
        (tiny_run.workdir, packaged, f"{packaged} exists and is not empty; package into a new"),
        (packaged, tmp_path / "again", f"{packaged} is a model package already"),
    ]:
        result = run_command(
            ["-m", "unetjax.cli.export", "--model", str(model), "--package", str(folder)],
            tiny_run.env,
            check_rc=2,
        )
        assert result.stderr.startswith(f"export: error: {message}")
        assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1


def test_a_package_refuses_another_step_naming_the_one_it_holds(packaged):
    with pytest.raises(ValueError, match="model package of step 15 only"):
        inference.load_predictor(packaged, step=10)


def test_import_unetjax_stays_light_and_a_missing_hub_model_is_one_line(tmp_path):
    script = (
        "import sys, unetjax\n"
        "print('jax' in sys.modules)\n"
        "try:\n"
        "    unetjax.load_pretrained('nobody/no-such-unetjax-model')\n"
        "except OSError as error:\n"
        "    print(error)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    light, message = result.stdout.splitlines()
    assert light == "False"
    assert message.startswith("nobody/no-such-unetjax-model: not a local folder, and the Hugging")


def test_a_missing_local_folder_is_named():
    with pytest.raises(FileNotFoundError, match="no such model package folder"):
        package.load_pretrained("./no/such/package")
