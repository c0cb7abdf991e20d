"""Deployable artifacts: StableHLO and ONNX files that run without unetjax and agree with it.

Every setting (depth L and mode) of a 2D depth-3 and a 3D depth-2 UNet++ (with per-axis
pooling: the first axis unpooled at level 1, sizes multiples of (2, 4, 4)) is exported once per
module; a subprocess that imports only jax (or only onnxruntime) and numpy runs each artifact on
random inputs of two spatial sizes and is compared with `load_predictor(...).predict_batch`.
L1 accurate (the mean of head 1 alone) is L1 fast's graph, which is asserted, not exported twice.
"""

import hashlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from test_inference import make_tiny_run, tiny_config

from unetjax import graph as graph_lib
from unetjax import inference, nested_unet
from unetjax.inference import model as model_lib
from unetjax.inference import preprocessing
from unetjax.inference.deploy import artifact, artifact_format, artifact_runner

pytest.importorskip("jax2onnx", reason="needs the deploy extra (jax2onnx, onnx, onnxruntime)")
pytest.importorskip("onnxruntime", reason="needs the deploy extra (jax2onnx, onnx, onnxruntime)")

REPO = pathlib.Path(__file__).resolve().parents[1]
TOLERANCE = 1e-4
# Two spatial sizes per model (multiples of its divisor), each with its batch size.
SIZES = {2: [((32, 40), 2), ((16, 24), 1)], 3: [((8, 12, 16), 1), ((16, 8, 8), 1)]}


def anisotropic_config():
    """The 3D run: a depth-2 UNet++ pooling (1, 2, 2) then (2, 2, 2), kernels 1x3x3 at level 0."""
    config = tiny_config(3)
    config.model.strides = ((1, 2, 2), (2, 2, 2))
    config.model.kernels = ((1, 3, 3), (3, 3, 3), (3, 3, 3))
    return config


def depth3_config():
    """The 2D run: a depth-3 UNet++ (filters 4, 8, 16, 32), so pruning covers L1..L3."""
    config = tiny_config(2)
    config.model.filters = (4, 8, 16, 32)
    config.model.depth = 3
    return config


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Every setting of both runs exported (one StableHLO, one ONNX per size), with random
    inputs and the predictor's probabilities for them, listed in manifest.json."""
    root = tmp_path_factory.mktemp("artifacts")
    entries, predictors, models = [], {}, {}
    for dims, config in ((2, depth3_config()), (3, anisotropic_config())):
        run = root / f"run{dims}d"
        models[dims] = make_tiny_run(run, config, seed=dims)
        full_graph = graph_lib.graph_from_config(config.model)
        assert graph_lib.subgraph(full_graph, 1, mode="accurate") == graph_lib.subgraph(
            full_graph, 1, mode="fast"
        )
        for depth, mode in inference.available_settings(config):
            if (depth, mode) == (1, "accurate"):
                continue
            predictor = inference.load_predictor(run, depth=depth, mode=mode)
            predictors[dims, depth, mode] = predictor
            name = root / f"{dims}d_L{depth}_{mode}"
            artifact.export_stablehlo(predictor, f"{name}.stablehlo")
            entry = {"dims": dims, "depth": depth, "mode": mode, "cases": []}
            entry["stablehlo"] = f"{name}.stablehlo"
            for i, (size, batch) in enumerate(SIZES[dims]):
                onnx_path = f"{name}_{i}.onnx"
                artifact.export_onnx(predictor, onnx_path, spatial_shape=size)
                rng = np.random.default_rng(100 * depth + i)
                images = rng.random((batch, *size, 1)).astype(np.float32)
                expected = predictor.predict_batch(images)
                assert expected.std() > 1e-3  # the comparisons are not between constants
                np.save(f"{name}_{i}_images.npy", images)
                np.save(f"{name}_{i}_expected.npy", expected)
                entry["cases"].append(
                    {
                        "onnx": onnx_path,
                        "images": f"{name}_{i}_images.npy",
                        "expected": f"{name}_{i}_expected.npy",
                    }
                )
            entries.append(entry)
    manifest = root / "manifest.json"
    manifest.write_text(json.dumps(entries))
    return {
        "root": root,
        "manifest": manifest,
        "entries": entries,
        "predictors": predictors,
        "models": models,
    }


def _entry(exported, dims, depth, mode):
    """The manifest entry of one exported setting."""
    return next(
        e for e in exported["entries"] if (e["dims"], e["depth"], e["mode"]) == (dims, depth, mode)
    )


# Run by a bare interpreter: the runtime, numpy and json only; prints the largest differences.
STABLEHLO_CHECK = """
import json, sys
import jax, numpy as np
differences = []
for entry in json.load(open(sys.argv[1])):
    exported = jax.export.deserialize(open(entry["stablehlo"], "rb").read())
    call = jax.jit(exported.call)
    for case in entry["cases"]:
        got = np.asarray(call(np.load(case["images"])))
        differences.append(float(np.abs(got - np.load(case["expected"])).max()))
assert "unetjax" not in sys.modules and "flax" not in sys.modules, "imported our code"
print(json.dumps(differences))
"""
ONNX_CHECK = """
import json, sys
import numpy as np, onnxruntime
differences = []
for entry in json.load(open(sys.argv[1])):
    for case in entry["cases"]:
        session = onnxruntime.InferenceSession(case["onnx"])
        got = session.run(None, {"image": np.load(case["images"])})[0]
        differences.append(float(np.abs(got - np.load(case["expected"])).max()))
banned = {"unetjax", "flax", "jax"} & set(sys.modules)
assert not banned, f"imported {banned}"
print(json.dumps(differences))
"""


def _bare_python(code, *args, cwd):
    """Runs `code` in a fresh interpreter outside the repository (unetjax not importable by
    accident from the working directory); returns its stdout."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize("check", [STABLEHLO_CHECK, ONNX_CHECK], ids=["stablehlo", "onnx"])
def test_artifacts_agree_with_the_predictor_at_every_setting_and_two_sizes_without_unetjax(
    exported, check
):
    settings = {(e["dims"], e["depth"], e["mode"]) for e in exported["entries"]}
    assert settings == {
        *((2, depth, mode) for depth in (1, 2, 3) for mode in ("fast", "accurate")),
        *((3, depth, mode) for depth in (1, 2) for mode in ("fast", "accurate")),
    } - {(2, 1, "accurate"), (3, 1, "accurate")}
    output = _bare_python(check, exported["manifest"], cwd=exported["root"])
    differences = json.loads(output.strip().splitlines()[-1])
    assert len(differences) == 2 * len(settings)
    assert max(differences) <= TOLERANCE, differences


def test_an_artifact_holds_only_its_subgraph_and_is_smaller_when_pruned(exported):
    # The reference count prunes the model in memory (`nested_unet.prune`), not via the
    # checkpoint's partial restore that the predictor and the sidecar use.
    full_model = exported["models"][2]
    sizes = {}
    for entry in (e for e in exported["entries"] if e["dims"] == 2):
        depth, mode = entry["depth"], entry["mode"]
        sidecar = artifact_format.read_sidecar(entry["stablehlo"])
        expected = nested_unet.count_params(nested_unet.prune(full_model, depth, mode))
        assert sidecar["model"]["parameters"] == expected
        for path in (entry["stablehlo"], entry["cases"][0]["onnx"]):
            size = os.path.getsize(path)
            assert size >= 4 * expected  # every float32 parameter is in the file
            sizes[path.rsplit(".", 1)[1], depth, mode] = size
    for fmt in ("stablehlo", "onnx"):
        assert sizes[fmt, 1, "fast"] < sizes[fmt, 2, "fast"] < sizes[fmt, 3, "fast"]
        assert sizes[fmt, 1, "fast"] < 0.25 * sizes[fmt, 3, "accurate"]


def test_the_sidecar_describes_input_output_and_the_training_config(exported):
    entry = _entry(exported, 3, 2, "accurate")
    stablehlo = artifact_format.read_sidecar(entry["stablehlo"])
    onnx = artifact_format.read_sidecar(entry["cases"][1]["onnx"])
    inputs, model = stablehlo["input"], stablehlo["model"]
    expected_input = {"name": "image", "layout": "NDHWC", "dtype": "float32", "channels": 1}
    assert {key: inputs[key] for key in expected_input} == expected_input
    assert (inputs["value_range"], inputs["spatial_dims"], inputs["batch"]) == ([0, 1], 3, "any")
    assert inputs["spatial_size"] == {"multiple_of": [2, 4, 4]}
    assert onnx["input"]["spatial_size"] == {"fixed": [16, 8, 8]}
    assert stablehlo["output"]["activation"] == "sigmoid" and stablehlo["output"]["classes"] == 1
    expected_model = {"architecture": "unet_plusplus", "depth": 2, "full_depth": 2, "step": 7}
    assert {key: model[key] for key in expected_model} == expected_model
    assert model["strides"] == [[1, 2, 2], [2, 2, 2]]
    assert artifact_runner.load_artifact(entry["stablehlo"]).align == (2, 4, 4)
    assert model["mode"] == "accurate" and model["compute_dtype"] == "float32"
    assert stablehlo["normalization"] == {"kind": "unit", "mean": None, "std": None}
    assert set(stablehlo["runtime"]["platforms"]) == {"cpu", "cuda"}
    # The documented hash: SHA-256 of config.json as canonical JSON.
    config = json.loads((exported["root"] / "run3d" / "config.json").read_text())
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    assert stablehlo["config_sha256"] == onnx["config_sha256"]
    assert stablehlo["config_sha256"] == hashlib.sha256(canonical).hexdigest()


def test_the_runner_tiles_mirrors_and_pads_as_the_predictor_does(exported):
    entry = _entry(exported, 2, 2, "accurate")
    predictor = exported["predictors"][2, 2, "accurate"]
    stablehlo = artifact_runner.load_artifact(entry["stablehlo"])
    onnx = artifact_runner.load_artifact(entry["cases"][0]["onnx"])  # fixed at 32x40
    rng = np.random.default_rng(5)

    batch = rng.random((2, 32, 40, 1)).astype(np.float32)
    reference = predictor.predict_batch(batch, tta=True)
    np.testing.assert_allclose(stablehlo.predict_batch(batch, tta=True), reference, atol=1e-5)
    np.testing.assert_allclose(onnx.predict_batch(batch, tta=True), reference, atol=1e-5)

    image = rng.random((30, 21, 1)).astype(np.float32)  # any size: mirror-padded to 32x24
    np.testing.assert_allclose(
        stablehlo.predict(image, tta=True), predictor.predict(image, tta=True), atol=1e-5
    )
    # ONNX's fixed size is its tile: a small image is mirror-padded up to it (numpy's reflect),
    # a large one tiled with it, as the predictor tiles with that tile.
    padded = np.pad(image, [(0, 2), (0, 19), (0, 0)], mode="reflect")
    np.testing.assert_allclose(
        onnx.predict(image), predictor.predict_batch(padded[None])[0, :30, :21], atol=1e-5
    )
    large = rng.random((70, 45, 1)).astype(np.float32)
    tiles = inference.TileOptions(tile=(32, 40))
    np.testing.assert_allclose(onnx.predict(large), predictor.predict(large, tile=tiles), atol=1e-5)
    labels = onnx.postprocess(onnx.predict(large), min_size=0)
    assert labels.shape == (70, 45) and labels.dtype == np.uint8
    onnx.check_tile(tiles)  # its own size is the one tile it takes
    with pytest.raises(ValueError, match="takes 32x40 only and tiles with it"):
        onnx.check_tile(inference.TileOptions(tile=64))


def test_labels_and_dataset_normalisation_are_inside_the_artifact(exported, tmp_path):
    predictor = exported["predictors"][2, 1, "fast"]
    normalization = preprocessing.Normalization("zscore_dataset", mean=(0.4,), std=(0.2,))
    path = tmp_path / "normalised.stablehlo"
    artifact.export_stablehlo(
        predictor, path, threshold=0.45, labels=True, normalization=normalization
    )
    images = np.random.default_rng(6).random((2, 16, 24, 1)).astype(np.float32)
    import jax

    with open(path, "rb") as f:
        probabilities, labels = jax.export.deserialize(f.read()).call(images)
    expected = predictor.predict_batch((images - 0.4) / 0.2)
    np.testing.assert_allclose(np.asarray(probabilities), expected, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(labels), (expected[..., 0] >= 0.45).astype(np.uint8))
    runner = artifact_runner.load_artifact(path)
    assert runner.threshold == 0.45 and runner.normalization == normalization
    np.testing.assert_allclose(runner.predict_batch(images), expected, atol=1e-5)


def test_a_run_and_its_artifact_are_both_models_that_normalise_inside_predict(tmp_path):
    config = tiny_config(2)
    config.data.normalize = "zscore_dataset"
    config.normalization = {"kind": "zscore_dataset", "mean": [0.4], "std": [0.2]}
    make_tiny_run(tmp_path / "run", config)
    predictor = inference.load_predictor(tmp_path / "run", depth=2)
    artifact.export_stablehlo(predictor, tmp_path / "model.stablehlo")
    runner = artifact_runner.load_artifact(tmp_path / "model.stablehlo")
    image = np.random.default_rng(9).random((32, 40, 1)).astype(np.float32)  # as read: [0, 1]
    expected = predictor.predict_batch((image[None] - 0.4) / 0.2)[0]  # the numpy formula
    members = [name for name in vars(model_lib.Model) if not name.startswith("_")]
    assert {"predict", "default_tile", "training_resize", "color_mode"} <= set(members)
    for model in (predictor, runner):
        assert all(hasattr(model, name) for name in members), type(model).__name__
        np.testing.assert_allclose(model.predict(image, bucket=True), expected, atol=1e-5)
        assert model.training_resize is None and model.color_mode == "auto"
    assert (predictor.default_tile, runner.default_tile) == ([32, 32], None)


def test_normalisation_follows_the_numpy_formulas_and_reads_the_config():
    images = np.random.default_rng(7).random((2, 6, 5, 3)).astype(np.float32)
    per_image = preprocessing.normalize(images, preprocessing.Normalization("zscore_image"))
    mean = images.mean(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(
        per_image, (images - mean) / images.std(axis=(1, 2), keepdims=True), atol=1e-5
    )
    flat = preprocessing.normalize(
        np.ones((1, 4, 4, 1)), preprocessing.Normalization("zscore_image")
    )
    np.testing.assert_array_equal(flat, 0.0)  # a constant image is centred, not divided by 0
    dataset = preprocessing.Normalization("zscore_dataset", mean=(0.1, 0.2, 0.3), std=(1, 2, 4))
    np.testing.assert_allclose(
        preprocessing.normalize(images, dataset),
        (images - [0.1, 0.2, 0.3]) / np.array([1.0, 2.0, 4.0]),
        atol=1e-6,
    )
    config = tiny_config()
    assert preprocessing.normalization_from_config(config) == preprocessing.Normalization("unit")
    config.data.normalize = "zscore_dataset"
    with pytest.raises(ValueError, match="needs normalization"):
        preprocessing.normalization_from_config(config)
    config.normalization = {"kind": "zscore_dataset", "mean": 0.5, "std": 0.25}
    assert preprocessing.normalization_from_config(config) == preprocessing.Normalization(
        "zscore_dataset", mean=(0.5,), std=(0.25,)
    )


def test_the_artifact_normalisation_is_the_training_pipelines_image_by_image():
    from unetjax.data import normalization

    images = np.random.default_rng(4).random((3, 8, 8, 2)).astype(np.float32)
    stats = {"mean": [0.4, 0.6], "std": [0.2, 0.3]}
    batched = preprocessing.normalize(images, preprocessing.Normalization("zscore_image"))
    dataset = preprocessing.normalize(
        images, preprocessing.Normalization("zscore_dataset", mean=(0.4, 0.6), std=(0.2, 0.3))
    )
    for image, by_image, by_dataset in zip(images, batched, dataset, strict=True):
        own = normalization.standardize(
            image, "zscore_image", normalization.image_statistics(image)
        )
        np.testing.assert_allclose(by_image, own, atol=1e-5)
        np.testing.assert_allclose(
            by_dataset, normalization.standardize(image, "zscore_dataset", stats), atol=1e-6
        )


def _copy(path, target_dir):
    """The artifact at `path` and its sidecar copied into `target_dir`; the copy's path."""
    target = pathlib.Path(target_dir) / pathlib.Path(path).name
    shutil.copy(path, target)
    shutil.copy(artifact_format.sidecar_path(path), artifact_format.sidecar_path(target))
    return target


@pytest.mark.parametrize("fmt", ["stablehlo", "onnx"])
def test_bad_artifacts_give_one_line_errors_naming_the_problem(exported, tmp_path, fmt):
    entry = _entry(exported, 2, 1, "fast")
    source = entry["stablehlo"] if fmt == "stablehlo" else entry["cases"][0]["onnx"]

    truncated = _copy(source, tmp_path)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated or corrupt; export it again"):
        artifact_runner.load_artifact(truncated)

    # Bytes that no runtime reads, with a sidecar that matches them: the runtime's own error.
    (tmp_path / "garbage").mkdir()
    garbage = _copy(source, tmp_path / "garbage")
    garbage.write_bytes(b"\x00\x01 not a model " * 50)
    sidecar = json.loads(pathlib.Path(artifact_format.sidecar_path(garbage)).read_text())
    sidecar.pop("file")
    artifact_format.write_sidecar(garbage, sidecar)
    message = "not a readable StableHLO artifact" if fmt == "stablehlo" else "onnxruntime cannot"
    with pytest.raises(ValueError, match=message) as error:
        artifact_runner.load_artifact(garbage)
    assert "\n" not in str(error.value)

    (tmp_path / "alone").mkdir()
    alone = tmp_path / "alone" / pathlib.Path(source).name
    shutil.copy(source, alone)
    with pytest.raises(ValueError, match=r"its sidecar .*\.json is missing"):
        artifact_runner.load_artifact(alone)

    runner = artifact_runner.load_artifact(source)
    with pytest.raises(ValueError, match=r"has 2 channels; .* expects 1"):
        runner.predict_batch(np.zeros((1, 32, 40, 2), np.float32))
    if fmt == "stablehlo":
        with pytest.raises(
            ValueError, match=r"spatial size 30 is not a multiple of 2\^D = 8; use 24 or 32"
        ):
            runner.predict_batch(np.zeros((1, 30, 40, 1), np.float32))
    else:
        with pytest.raises(ValueError, match=r"takes spatial size \(32, 40\) only"):
            runner.predict_batch(np.zeros((1, 32, 48, 1), np.float32))
    with pytest.raises(ValueError, match="has rank 3"):
        runner.predict_batch(np.zeros((1, 32, 40), np.float32))


def test_export_refuses_sizes_the_network_cannot_take(exported, tmp_path):
    predictor = exported["predictors"][2, 1, "fast"]
    with pytest.raises(ValueError, match=r"multiple of 2\^D = 8 \(e.g. \(32, 40\)\)"):
        artifact.export_onnx(predictor, tmp_path / "bad.onnx", spatial_shape=(30, 40))
    with pytest.raises(ValueError, match="needs 2 sizes"):
        artifact.export_onnx(predictor, tmp_path / "bad.onnx", spatial_shape=(32,))
    with pytest.raises(ValueError, match=r"file name ends in \.onnx"):
        artifact.export_onnx(predictor, tmp_path / "bad.stablehlo", spatial_shape=(32, 32))


def test_the_cli_reports_a_truncated_artifact_in_one_line_with_exit_code_2(exported, tmp_path):
    entry = exported["entries"][0]
    truncated = _copy(entry["stablehlo"], tmp_path)
    truncated.write_bytes(truncated.read_bytes()[:100])
    image = tmp_path / "cell.npy"
    np.save(image, np.zeros((32, 32, 1), np.float32))
    result = subprocess.run(
        [
            *(sys.executable, "-m", "unetjax.cli.predict", "--model", str(truncated)),
            *("--output", str(tmp_path / "out"), str(image)),
        ],
        cwd=REPO,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(f"predict: error: {truncated}: 100 bytes")
    assert lines[0].endswith("the file is truncated or corrupt; export it again")


def test_the_deployer_snippet_in_the_docs_runs_as_written(exported, tmp_path):
    text = (REPO / "docs" / "inference.md").read_text()
    section = text[text.index("### Deploy") :]
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    entry = _entry(exported, 2, 3, "fast")
    for source, name in (
        (entry["stablehlo"], "model.stablehlo"),
        (entry["cases"][0]["onnx"], "model.onnx"),
    ):
        shutil.copy(source, tmp_path / name)
        shutil.copy(artifact_format.sidecar_path(source), tmp_path / f"{name}.json")
    check = "\nassert 'unetjax' not in sys.modules and 'flax' not in sys.modules\n"
    output = _bare_python(
        "import sys\n" + snippet + check + "print(probabilities.shape, mask.dtype)", cwd=tmp_path
    )
    assert output.strip().splitlines()[-1] == "(1, 32, 40, 1) bool"


def test_interpolating_models_export_to_stablehlo_and_onnx_says_it_cannot(tmp_path):
    config = tiny_config(2)
    config.model.upsample = "interpolate"  # jax.image.resize in every decoder node
    make_tiny_run(tmp_path / "run", config)
    predictor = inference.load_predictor(tmp_path / "run", depth=2, mode="fast")
    artifact.export_stablehlo(predictor, tmp_path / "model.stablehlo")
    images = np.random.default_rng(8).random((1, 20, 12, 1)).astype(np.float32)
    runner = artifact_runner.load_artifact(tmp_path / "model.stablehlo")
    np.testing.assert_allclose(
        runner.predict_batch(images), predictor.predict_batch(images), atol=1e-5
    )
    with pytest.raises(ValueError, match=r"cannot convert this network .* use --format stablehlo"):
        artifact.export_onnx(predictor, tmp_path / "model.onnx", spatial_shape=(32, 32))


def test_the_artifact_runner_imports_neither_flax_nor_the_training_stack():
    # The runner behind `predict --model x.onnx` (tiling, TTA, output labels) is ours, but a
    # deployment host should not need Flax, Orbax, optax, grain or TFDS to load it.
    code = (
        "import sys\nimport unetjax.inference.deploy.artifact_runner\n"
        "heavy = {'flax', 'orbax', 'optax', 'grain', 'tensorflow_datasets', 'jax'}\n"
        "print(sorted(heavy & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert result.stdout.strip() == "[]"
