"""The nested decoder over a pretrained encoder, against smp's UnetPlusPlus and hand counts.

torch and segmentation_models_pytorch are test-side references only. The smp model gets random
weights and random batch-norm statistics, so a swapped scale / shift, a wrong concatenation
order or a lost running variance changes the probabilities.
"""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import optax
import pytest
from conftest import import_torch_references
from flax import nnx
from PIL import Image

from unetjax import inference, models, nested_unet, optim
from unetjax.cli import import_smp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)  # torchvision's published values
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def smp_model_config(**overrides) -> dict:
    config = import_smp.import_config(
        encoder="resnet34", classes=1, in_channels=3, normalize="imagenet", source="-"
    )
    return {**config.model.to_dict(), **overrides}


def double_conv(in_channels: int, width: int) -> int:
    """Two 3x3 convs without bias, each followed by batch norm (scale and shift)."""
    return 9 * in_channels * width + 2 * width + 9 * width * width + 2 * width


def basic_block(in_channels: int, width: int) -> int:
    projection = in_channels * width + 2 * width if in_channels != width else 0
    return double_conv(in_channels, width) + projection


def resnet34_stages(count: int) -> int:
    """Parameters of the stem and the first count - 1 stages of ResNet-34 (3, 4, 6, 3 blocks)."""
    total = 7 * 7 * 3 * 64 + 2 * 64
    for blocks, (in_channels, width) in list(
        zip((3, 4, 6, 3), [(64, 64), (64, 128), (128, 256), (256, 512)], strict=True)
    )[: count - 1]:
        total += basic_block(in_channels, width) + (blocks - 1) * basic_block(width, width)
    return total


HEAD = 9 * 16 * 1 + 1  # 3x3 conv from 16 channels to 1 class, with bias
# Decoder nodes of the pruned ResNet-34 UNet++ as (input channels, width), read off the layer
# shapes: encoder widths 64, 64, 128, 256, 512 at levels 1..5; nodes off the decoder path take
# the encoder's width, the path x_{i}_{5-i} and the level-0 nodes smp's 256, 128, 64, 32, 16.
PRUNED_NODES = {
    1: [(64 + 64, 64), (64, 16)],  # x_1_1, x_0_1
    2: [(64 + 64, 64), (128 + 64, 64), (64 + 64 + 64, 64), (64, 16)],
    3: [
        (64 + 64, 64),  # x_1_1
        (128 + 64, 64),  # x_2_1
        (256 + 128, 128),  # x_3_1
        (64 + 2 * 64, 64),  # x_1_2
        (128 + 2 * 64, 64),  # x_2_2
        (64 + 3 * 64, 64),  # x_1_3
        (64, 16),  # x_0_3
    ],
}


@pytest.fixture(scope="module")
def torch():
    return import_torch_references()


@pytest.fixture(scope="module")
def smp(torch):
    return pytest.importorskip("segmentation_models_pytorch")


@pytest.fixture(scope="module")
def smp_reference(torch, smp):
    """smp's UnetPlusPlus("resnet34") with random weights and batch-norm statistics, eval mode."""
    torch.manual_seed(0)
    model = smp.UnetPlusPlus("resnet34", encoder_weights=None, classes=1)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            leaf = name.rpartition(".")[2]
            low, high = {"running_var": (0.5, 2.0), "weight": (0.5, 1.5)}.get(leaf, (-0.2, 0.2))
            if tensor.ndim == 1 and leaf in ("weight", "bias", "running_mean", "running_var"):
                tensor.copy_(low + (high - low) * torch.rand(tensor.shape, generator=generator))
    return model.eval()


def test_the_smp_compatible_unetpp_has_exactly_smps_parameter_count(smp_reference):
    ours = nnx.eval_shape(lambda: models.from_config(smp_model_config()))
    expected = sum(p.numel() for p in smp_reference.parameters())
    assert nested_unet.count_params(ours) == expected == 26_078_609


def test_an_imported_smp_checkpoint_predicts_smps_probabilities_at_two_sizes(
    torch, smp_reference, tmp_path
):
    path = str(tmp_path / "model.pth")
    torch.save(smp_reference.state_dict(), path)
    workdir = str(tmp_path / "run")
    assert import_smp.main([path, "--encoder", "resnet34", "--workdir", workdir]) == 0
    predictor = inference.load_predictor(workdir)
    rng = np.random.default_rng(0)
    for shape in [(2, 64, 64, 3), (1, 64, 96, 3)]:
        images = rng.uniform(0, 1, shape).astype(np.float32)
        normalised = (images - IMAGENET_MEAN) / IMAGENET_STD
        with torch.no_grad():
            logits = smp_reference(torch.from_numpy(normalised.transpose(0, 3, 1, 2).copy()))
        expected = torch.sigmoid(logits).numpy().transpose(0, 2, 3, 1)
        np.testing.assert_allclose(predictor.predict_batch(images), expected, atol=1e-4)


def test_predict_on_an_imported_smp_run_writes_smps_probabilities_at_two_sizes(
    torch, smp_reference, tmp_path
):
    """The user's path: a .safetensors state dict, `unetjax-import-smp`, then `predict.py
    --probabilities` on PNG files; an imported run predicts whole images, as smp does."""
    safetensors_torch = pytest.importorskip("safetensors.torch")
    path = str(tmp_path / "model.safetensors")
    safetensors_torch.save_file(smp_reference.state_dict(), path)
    workdir = str(tmp_path / "run")
    command = [path, "--encoder", "resnet34", "--normalize", "imagenet", "--workdir", workdir]
    assert import_smp.main(command) == 0
    images, rng = tmp_path / "images", np.random.default_rng(2)
    images.mkdir()
    pixels = {"square": (256, 256, 3), "wide": (224, 320, 3)}
    for name, shape in pixels.items():
        pixels[name] = rng.integers(0, 256, shape, dtype=np.uint8)
        Image.fromarray(pixels[name]).save(images / f"{name}.png")
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
    output = ["--output", str(tmp_path / "out"), "--probabilities", "--format", "npy"]
    completed = subprocess.run(
        [sys.executable, "predict.py", "--model", workdir, *output, "--no-progress", str(images)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    for name, image in pixels.items():
        normalised = (image.astype(np.float32) / 255 - IMAGENET_MEAN) / IMAGENET_STD
        with torch.no_grad():
            logits = smp_reference(torch.from_numpy(normalised.transpose(2, 0, 1)[None].copy()))
        expected = torch.sigmoid(logits).numpy()[0].transpose(1, 2, 0)
        written = np.load(tmp_path / "out" / f"{name}_probabilities.npy")
        np.testing.assert_allclose(written, expected, atol=1e-4, err_msg=name)


def test_a_mistyped_smp_key_is_one_line_naming_it(smp_reference, tmp_path):
    state_dict = {k: v.numpy() for k, v in smp_reference.state_dict().items()}
    state_dict["decoder.blocks.x_9_9.conv1.0.weight"] = state_dict.pop(
        "decoder.blocks.x_1_2.conv1.0.weight"
    )
    model = nnx.eval_shape(lambda: models.from_config(smp_model_config()))
    from unetjax.encoders import smp as smp_import

    with pytest.raises(ValueError, match=r"unexpected key 'decoder\.blocks\.x_9_9\.") as error:
        smp_import.load_smp_state_dict(model, state_dict)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_pruned_parameter_counts_equal_the_hand_counts_from_the_layer_shapes(depth, smp_reference):
    full = nnx.eval_shape(lambda: models.from_config(smp_model_config(deep_supervision=True)))
    pruned = nested_unet.pruned_abstract(full, depth)
    if depth == 4:  # head 4's subgraph is smp's whole network
        expected = sum(p.numel() for p in smp_reference.parameters())
    else:
        decoder = sum(double_conv(c, w) for c, w in PRUNED_NODES[depth])
        expected = resnet34_stages(depth + 1) + decoder + HEAD
    assert nested_unet.count_params(pruned) == expected
    assert pruned.encoder.num_features == depth + 1


def test_a_pruned_call_runs_only_the_encoder_stages_its_head_needs():
    model = models.from_config(
        smp_model_config(
            encoder="resnet_tiny", decoder_channels=(16, 8, 8, 4, 4), deep_supervision=True
        )
    )
    stages = []
    original = type(model.encoder).__call__

    def spy(self, x, **kwargs):
        features = original(self, x, **kwargs)
        stages.append(len(features))
        return features

    images = np.zeros((1, 32, 32, 3), np.float32)
    type(model.encoder).__call__ = spy
    try:
        model.predict(images, depth=1)
        model.predict(images, depth=3)
        model(images)
    finally:
        type(model.encoder).__call__ = original
    assert stages == [2, 4, 5]


def test_encoder_learning_rate_is_scaled_and_frozen_for_the_warm_up_steps():
    config = ml_collections.ConfigDict(
        dict(
            name="sgd",
            learning_rate=0.1,
            schedule="constant",
            warmup_steps=0,
            end_lr_factor=0.0,
            momentum=0.0,
            nesterov=False,
            weight_decay=0.0,
            grad_clip_norm=0.0,
            encoder_lr_multiplier=0.5,
            encoder_frozen_steps=2,
        )
    )
    optimizer, _ = optim.make_optimizer(config, total_steps=10)
    params = {"encoder": {"w": np.ones(2, np.float32)}, "nodes": {"w": np.ones(2, np.float32)}}
    grads = jax.tree.map(np.ones_like, params)
    state = optimizer.init(params)
    moves = []
    for _ in range(3):
        updates, state = optimizer.update(grads, state, params)
        moves.append((float(updates["encoder"]["w"][0]), float(updates["nodes"]["w"][0])))
    # Plain SGD moves by -lr * grad: 0 then -0.05 for the encoder, -0.1 throughout otherwise.
    np.testing.assert_allclose(moves, [(0.0, -0.1), (0.0, -0.1), (-0.05, -0.1)], atol=1e-7)
    assert isinstance(state, optax.MultiTransformState)


TINY_ENCODER = [
    "--config",
    "configs/tiny.py",
    "--config.model.encoder=resnet_tiny",
    "--config.model.decoder_channels=(16,8,8,4,4)",
    "--config.model.input_mean=(0.5,)",
    "--config.model.input_std=(0.25,)",
    "--config.optimizer.encoder_lr_multiplier=0.1",
    "--config.train.num_steps=4",
    "--config.train.eval_every=4",
    "--config.train.checkpoint_every=2",
    "--config.train.num_overlays=0",
    "--config.train.progress_bar=False",
]


def tiny_encoder_config(data_dir, **train_overrides) -> ml_collections.ConfigDict:
    """configs/tiny.py on a tiny ResNet encoder: TINY_ENCODER's settings, in-process."""
    from configs import tiny

    config = tiny.get_config()
    config.model.encoder = "resnet_tiny"
    config.model.decoder_channels = (16, 8, 8, 4, 4)
    config.model.input_mean, config.model.input_std = (0.5,), (0.25,)
    config.optimizer.encoder_lr_multiplier = 0.1
    config.data.data_dir = str(data_dir)
    config.train.update(
        num_steps=4, eval_every=4, checkpoint_every=2, num_overlays=0, progress_bar=False
    )
    config.train.update(train_overrides)
    return config


@pytest.mark.slow
def test_a_tiny_encoder_run_trains_resumes_exactly_predicts_and_exports(tmp_path):
    # In-process: the three runs share their compiled steps.
    from unetjax import train

    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    train.train_and_evaluate(tiny_encoder_config(tmp_path / "tfds"), straight)
    first = train.train_and_evaluate(
        tiny_encoder_config(tmp_path / "tfds", stop_after_steps=2), resumed
    )
    assert first.interrupted and first.step == 2
    second = train.train_and_evaluate(tiny_encoder_config(tmp_path / "tfds"), resumed)
    assert second.resumed_from == 2 and second.step == 4
    exported = str(tmp_path / "exported")
    inference.export(resumed, exported, depth=1, mode="fast")

    expected = inference.load_predictor(straight, depth=4)
    actual = inference.load_predictor(resumed, depth=4)
    for path, value in nnx.to_flat_state(expected.state):
        np.testing.assert_array_equal(
            np.asarray(dict(nnx.to_flat_state(actual.state))[path]), np.asarray(value)
        )
    # The L1 export holds the stem and layer1 of the encoder, nothing deeper.
    pruned = inference.load_predictor(exported, depth=1)
    encoder_paths = {path[2] for path in pruned.restored_paths if path[1] == "encoder"}
    assert encoder_paths == {"conv1", "bn1", "layer1"}
    image = np.random.default_rng(0).uniform(0, 1, (40, 36, 1)).astype(np.float32)
    probabilities = pruned.predict(image)
    assert probabilities.shape == (40, 36, 1) and np.all(
        (probabilities >= 0) & (probabilities <= 1)
    )


def test_imagenet_weights_offline_stop_with_one_line_naming_the_file_to_place(tmp_path):
    # No network here (as on many hospital machines): the hub cannot be reached, and the
    # message says which file to download and which option takes it, before any training.
    env = dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        PYTHONPATH=ROOT,
        HF_HUB_OFFLINE="1",
        HF_HOME=str(tmp_path / "hf"),
    )
    completed = subprocess.run(
        [sys.executable, "train.py", "--workdir", str(tmp_path / "run"), *TINY_ENCODER,
         "--config.model.encoder=resnet34", "--config.model.encoder_weights=imagenet",
         f"--config.data.data_dir={tmp_path / 'tfds'}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 2, completed.stderr[-2000:]  # a config error (cli/common.py)
    assert "Traceback" not in completed.stderr
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    assert len(lines) <= 2, lines
    assert "huggingface.co/timm/resnet34" in lines[-1] and "model.safetensors" in lines[-1]
    assert "--config.model.encoder_weights=/path/to/model.safetensors" in lines[-1]
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert not (tmp_path / "tfds").exists()  # stopped before preparing any data
