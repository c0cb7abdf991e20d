"""Pruned inference from a saved run: partial restore, export round trip, TTA, post-processing."""

import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from unetjax import checkpoint, inference, models, nested_unet, rundir

REPO = pathlib.Path(__file__).resolve().parents[1]
STEP = 7


def tiny_config(spatial_dims: int = 2) -> ml_collections.ConfigDict:
    """configs/default.py with a depth-2 UNet++ of filters (4, 8, 16) on 32x32 synthetic cells."""
    spec = importlib.util.spec_from_file_location("default_config", REPO / "configs" / "default.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    config.model.filters = (4, 8, 16)
    config.model.depth = 2
    config.model.spatial_dims = spatial_dims
    config.model.in_channels = 1
    config.model.num_classes = 1
    config.model.output_activation = "sigmoid"
    config.data.spatial_dims = spatial_dims
    config.data.image_size = 32
    config.data.patch_size = (32,) * spatial_dims
    config.data.num_train, config.data.num_val, config.data.num_test = 4, 3, 3
    return config


def make_tiny_run(workdir, config=None, *, seed: int = 0) -> nested_unet.NestedUNet:
    """Saves a run (config.json + one checkpoint) like train.py's, with non-trivial batch
    statistics, and returns the full model it holds."""
    config = config or tiny_config()
    model = models.from_config(config.model, seed=seed)
    graphdef, params, model_state = nnx.split(model, nnx.Param, ...)
    rng = np.random.default_rng(seed)

    def perturb(path, x):  # statistics that differ from the initial ones but keep units alive
        if "var" in jax.tree_util.keystr(path):
            return jnp.asarray(rng.uniform(0.5, 1.5, x.shape), x.dtype)
        return jnp.asarray(rng.normal(0.0, 0.05, x.shape), x.dtype)

    model_state = jax.tree_util.tree_map_with_path(perturb, model_state)
    model = nnx.merge(graphdef, params, model_state)
    state = {
        "step": jnp.asarray(STEP, jnp.int32),
        "params": params,
        "model_state": model_state,
        "opt_state": {"mu": params},  # stands in for the optimizer state; never read here
    }
    manager = checkpoint.CheckpointManager(rundir.checkpoint_dir(workdir))
    manager.save(STEP, state, data_state={})
    manager.wait_until_finished()
    manager.close()
    rundir.save_config(workdir, config)
    return model


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    model = make_tiny_run(workdir)
    image = np.random.default_rng(1).random((2, 32, 32, 1)).astype(np.float32)
    return workdir, model, image


# The modules each setting of the depth-2 UNet++ needs, read off the paper's Fig. 1 by hand.
L1_FAST = {"x_0_0", "x_1_0", "x_0_1", "head_1"}
L2_FAST = {"x_0_0", "x_1_0", "x_2_0", "x_0_1", "x_1_1", "x_0_2", "head_2"}
L2_ACCURATE = L2_FAST | {"head_1"}
NEEDED = {(1, "fast"): L1_FAST, (2, "fast"): L2_FAST, (2, "accurate"): L2_ACCURATE}


def _expected_paths(model, depth, mode):
    """Every saved array (parameters and batch statistics) of the modules the setting needs."""
    _, params, model_state = nnx.split(model, nnx.Param, ...)
    saved = {("params", *map(str, p)) for p, _ in nnx.to_flat_state(params)}
    saved |= {("model_state", *map(str, p)) for p, _ in nnx.to_flat_state(model_state)}
    return {path for path in saved if path[2] in NEEDED[depth, mode]}


@pytest.mark.parametrize("depth", [1, 2])
def test_partial_restore_reads_only_the_subgraph_and_predicts_head_l(saved_run, depth):
    workdir, model, image = saved_run
    predictor = inference.load_predictor(workdir, depth=depth, mode="fast")
    restored = set(predictor.restored_paths)
    assert restored == _expected_paths(model, depth, "fast")
    full_paths = _expected_paths(model, 2, "accurate")
    if depth == 1:
        assert restored < full_paths
        assert not any("x_2_0" in path or "head_2" in path for path in restored)
    assert predictor.step == STEP
    assert predictor.num_params == nested_unet.count_params(nested_unet.prune(model, depth))

    head_logits = model(jnp.asarray(image), depth=depth)[-1]
    expected = np.asarray(jax.nn.sigmoid(head_logits))
    assert expected.std() > 1e-3  # the comparison below is not between constants
    np.testing.assert_allclose(predictor.predict_batch(image), expected, atol=1e-6, rtol=0)


def test_accurate_mode_averages_heads_up_to_l(saved_run):
    workdir, model, image = saved_run
    predictor = inference.load_predictor(workdir, depth=2, mode="accurate")
    assert set(predictor.restored_paths) == _expected_paths(model, 2, "accurate")
    heads = model(jnp.asarray(image), depth=2)
    expected = np.mean([np.asarray(jax.nn.sigmoid(h)) for h in heads], axis=0)
    np.testing.assert_allclose(predictor.predict_batch(image), expected, atol=1e-6, rtol=0)


def test_export_load_round_trip_gives_identical_outputs(saved_run, tmp_path):
    workdir, model, image = saved_run
    out = inference.export(workdir, tmp_path / "exported", depth=1, mode="fast")
    exported = inference.load_predictor(out)  # defaults to the exported depth and mode
    original = inference.load_predictor(workdir, depth=1, mode="fast")
    assert (exported.depth, exported.mode, exported.step) == (1, "fast", STEP)
    assert set(exported.restored_paths) == _expected_paths(model, 1, "fast")
    np.testing.assert_array_equal(exported.predict_batch(image), original.predict_batch(image))
    # At depth 1, accurate mode averages head 1 alone: the same subgraph.
    assert inference.available_settings(rundir.load_config(out)) == [(1, "fast"), (1, "accurate")]
    with pytest.raises(ValueError, match="cannot predict at depth 2"):
        inference.load_predictor(out, depth=2)


def test_any_size_tiles_and_flip_tta(saved_run):
    workdir, _, _ = saved_run
    predictor = inference.load_predictor(workdir, depth=2, mode="fast")
    image = np.random.default_rng(2).random((30, 21, 1)).astype(np.float32)
    direct = predictor.predict(image)
    assert direct.shape == (30, 21, 1)
    one_tile = predictor.predict(image, tile=inference.TileOptions(tile=32))
    np.testing.assert_array_equal(one_tile, direct)

    # Flip TTA averages over every mirror, so it commutes with mirroring the input.
    tta = predictor.predict(image, tta=True)
    tta_of_flipped = predictor.predict(image[::-1, ::-1], tta=True)
    np.testing.assert_allclose(tta_of_flipped[::-1, ::-1], tta, atol=1e-6)
    assert len(predictor.flips(True)) == 4
    aligned = image[:28, :20]  # in-jit flips of a batch agree with host flips of an image
    np.testing.assert_allclose(
        predictor.predict_batch(aligned[None], tta=True)[0],
        predictor.predict(aligned, tta=True),
        atol=1e-6,
    )


def test_bfloat16_compute_stays_close_to_float32(saved_run):
    workdir, _, image = saved_run
    bf16 = inference.load_predictor(workdir, depth=2, dtype="bfloat16")
    f32 = inference.load_predictor(workdir, depth=2)
    assert bf16.spec.dtype == jnp.bfloat16
    np.testing.assert_allclose(bf16.predict_batch(image), f32.predict_batch(image), atol=3e-2)


def test_bad_requests_raise_errors_naming_the_problem(saved_run):
    workdir, _, _ = saved_run
    with pytest.raises(ValueError, match="cannot predict at depth 3"):
        inference.load_predictor(workdir, depth=3)
    with pytest.raises(ValueError, match="mode must be one of"):
        inference.load_predictor(workdir, mode="quick")
    with pytest.raises(FileNotFoundError, match="no checkpoint for step 3"):
        inference.load_predictor(workdir, step=3)
    predictor = inference.load_predictor(workdir, depth=1)
    with pytest.raises(ValueError, match=r"rgb.png: shape \(8, 8, 3\) has 3 channels"):
        predictor.check_image(np.zeros((8, 8, 3)), "rgb.png")


def test_postprocess_thresholds_argmaxes_and_removes_small_components():
    probabilities = np.zeros((10, 10, 1), np.float32)
    probabilities[1:5, 1:5] = 0.9  # 16 pixels
    probabilities[8, 8] = 0.7  # 1 pixel
    labels = inference.postprocess(probabilities, output_activation="sigmoid", threshold=0.5)
    assert labels.shape == (10, 10) and labels.sum() == 17
    labels = inference.postprocess(
        probabilities, output_activation="sigmoid", threshold=0.8, min_size=1
    )
    assert labels.sum() == 16
    labels = inference.postprocess(probabilities, output_activation="sigmoid", min_size=2)
    assert labels.sum() == 16 and labels[8, 8] == 0

    softmax = np.concatenate([1 - probabilities, probabilities], axis=-1)
    labels = inference.postprocess(softmax, output_activation="softmax", min_size=2)
    assert labels.dtype == np.uint8 and labels.sum() == 16
