"""Pretrained-encoder blocks against their source libraries: timm, torchvision and smp.

torch, timm, torchvision and segmentation_models_pytorch are test-side references only (the
`reference` extra). Reference models get random weights *and* random norm statistics, layer
scales and biases, so that a swapped scale/shift, a wrong permutation or an ignored running
variance changes the numbers.
"""

from __future__ import annotations

import copy
import functools
import math

import jax
import numpy as np
import pytest
from conftest import import_torch_references
from flax import nnx

from unetjax import encoders, models
from unetjax.encoders import weights

torch = import_torch_references()
timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")
feature_extraction = pytest.importorskip("torchvision.models.feature_extraction")
smp_utils = pytest.importorskip("segmentation_models_pytorch.encoders._utils")
safetensors_torch = pytest.importorskip("safetensors.torch")

IMAGE_SHAPE = (1, 64, 64, 3)
# Float32 agreement, relative to each map's largest value once that exceeds 1: with random norm
# statistics ResNet-50's deep maps reach ~50, where float32 summation order alone moves ~1e-4.
TOLERANCE = 1e-4
# The library each encoder is compared with: torchvision for ResNet-18, timm for the others.
REFERENCE_LIBRARY = {"resnet18": "torchvision", "resnet50": "timm", "convnext_tiny": "timm"}
TORCHVISION_STAGES = {"relu": "0", "layer1": "1", "layer2": "2", "layer3": "3", "layer4": "4"}


def randomise(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random norm scales/shifts, biases, layer scales and batch-norm statistics; eval mode."""
    generator = torch.Generator().manual_seed(seed)

    def uniform(tensor, low, high):
        tensor.copy_(low + (high - low) * torch.rand(tensor.shape, generator=generator))

    with torch.no_grad():
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            leaf = name.rpartition(".")[2]
            if leaf in ("weight", "gamma") and tensor.ndim == 1:
                uniform(tensor, 0.5, 1.5)
            elif leaf in ("bias", "running_mean"):
                uniform(tensor, -0.2, 0.2)
            elif leaf == "running_var":
                uniform(tensor, 0.5, 2.0)
    return model.eval()


def random_image(shape=IMAGE_SHAPE, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def to_torch(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def channels_last(features) -> list[np.ndarray]:
    return [f.detach().numpy().transpose(0, 2, 3, 1) for f in features]


@functools.cache
def reference(name: str) -> torch.nn.Module:
    """The full classifier (its state_dict is what a user's file holds), randomised."""
    if REFERENCE_LIBRARY.get(name) == "torchvision":
        return randomise(getattr(torchvision.models, name)(weights=None), seed=1)
    return randomise(timm.create_model(name, pretrained=False), seed=1)


def features_from_file(name: str, path: str) -> list[np.ndarray]:
    """The source library's feature maps of `random_image()` after it reads `path` itself."""
    if REFERENCE_LIBRARY[name] == "torchvision":
        model = getattr(torchvision.models, name)(weights=None).eval()
        if path.endswith(".safetensors"):
            model.load_state_dict(safetensors_torch.load_file(path))
        else:
            model.load_state_dict(torch.load(path, weights_only=True))
        return torchvision_features(model)
    # timm's own way to load a local file, as a user would (features_only remaps the names).
    model = timm.create_model(
        name, pretrained=True, features_only=True, pretrained_cfg_overlay={"file": path}
    ).eval()
    with torch.no_grad():
        return channels_last(model(to_torch(random_image())))


def torchvision_features(model: torch.nn.Module) -> list[np.ndarray]:
    extractor = feature_extraction.create_feature_extractor(model, TORCHVISION_STAGES)
    with torch.no_grad():
        return channels_last(extractor(to_torch(random_image())).values())


@functools.cache
def resnet18_features() -> list[np.ndarray]:
    """torchvision's ResNet-18 feature maps of `random_image()` with `reference("resnet18")`."""
    return torchvision_features(reference("resnet18"))


@functools.cache
def timm_features(name: str) -> torch.nn.Module:
    return timm.create_model(name, pretrained=False, features_only=True).eval()


def write_state_dict(state_dict, path) -> str:
    state_dict = {k: v.contiguous() for k, v in state_dict.items()}
    if str(path).endswith(".safetensors"):
        safetensors_torch.save_file(state_dict, str(path))
    else:
        torch.save(state_dict, str(path))
    return str(path)


@functools.cache
def forward(name: str):
    """A jitted forward of (state, x) for encoder `name`, compiled once per architecture.

    Tests build each model shape-only and fill it from a file, so a load that did nothing would
    leave no numbers to compare; models of one architecture share this compiled function.
    """
    graphdef, _ = nnx.split(nnx.eval_shape(lambda: encoders.create_encoder(name, rngs=nnx.Rngs(0))))
    return jax.jit(lambda state, x: nnx.merge(graphdef, state)(x, train=False))


def shape_only(constructor, **options) -> nnx.Module:
    return nnx.eval_shape(lambda: constructor(rngs=nnx.Rngs(0), **options))


def numpy_state_dict(name: str) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in reference(name).state_dict().items()}


def assert_close(actual, expected: np.ndarray) -> None:
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=0, atol=TOLERANCE * scale)


def arrays(model: nnx.Module, kind=nnx.Variable) -> dict[tuple, np.ndarray]:
    """Our state as path -> numpy copy, to compare before and after a call."""
    return {path: np.array(v[...]) for path, v in nnx.to_flat_state(nnx.state(model, kind))}


def assert_same_arrays(expected: dict, actual: dict) -> None:
    assert expected.keys() == actual.keys()
    for path, array in expected.items():
        np.testing.assert_array_equal(actual[path], array, err_msg=str(path))


def count(params) -> int:
    return sum(math.prod(p.shape) for p in params)


@pytest.mark.parametrize(
    "name, suffix",
    [
        ("resnet18", ".pth"),
        ("resnet18", ".safetensors"),
        ("resnet50", ".safetensors"),
        ("resnet50", ".pth"),
        ("convnext_tiny", ".safetensors"),
        ("convnext_tiny", ".pth"),
    ],
)
def test_feature_maps_equal_the_source_library_at_every_stride_after_loading_its_file(
    name, suffix, tmp_path
):
    path = write_state_dict(reference(name).state_dict(), tmp_path / f"{name}{suffix}")
    model = shape_only(encoders.encoder_info(name).constructor)
    weights.load_weights(model, path)
    features = forward(name)(nnx.state(model), random_image())
    expected = features_from_file(name, path)
    assert len(features) == len(expected) == len(model.reductions)
    for feature, want, reduction, channels in zip(
        features, expected, model.reductions, model.channels, strict=True
    ):
        assert feature.shape == (1, 64 // reduction, 64 // reduction, channels)
        assert_close(feature, want)


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50", "convnext_tiny"])
def test_registry_channels_strides_parameter_count_and_normalisation_equal_timm(name):
    info = encoders.encoder_info(name)
    model = nnx.eval_shape(lambda: info.constructor(rngs=nnx.Rngs(0)))
    theirs = timm_features(name)
    assert info.channels == model.channels == tuple(theirs.feature_info.channels())
    assert info.reductions == model.reductions == tuple(theirs.feature_info.reduction())
    params = jax.tree.leaves(nnx.state(model, nnx.Param))
    assert count(params) == count(theirs.parameters())
    pretrained = timm.models.get_pretrained_cfg(name)  # the default weights' config
    mean, std = models.NORMALIZATIONS["imagenet"]  # what `import_smp --normalize imagenet` applies
    np.testing.assert_allclose(mean, pretrained.mean)
    np.testing.assert_allclose(std, pretrained.std)


@pytest.mark.parametrize("in_channels", [1, 2, 4])
def test_first_conv_adaptation_equals_smp_patch_first_conv(in_channels, caplog):
    source = reference("resnet18")
    patched = torchvision.models.resnet18(weights=None).eval()
    patched.load_state_dict(source.state_dict())
    smp_utils.patch_first_conv(patched, new_in_channels=in_channels, pretrained=True)
    stem = shape_only(encoders.ResNet18, in_channels=in_channels, num_features=1)
    with caplog.at_level("INFO", logger=weights.__name__):
        weights.load_weights(stem, numpy_state_dict("resnet18"))
    assert f"for {in_channels} input channels" in caplog.text
    assert "segmentation_models_pytorch" in caplog.text
    x = random_image((1, 32, 32, in_channels))
    with torch.no_grad():
        want = patched.relu(patched.bn1(patched.conv1(to_torch(x))))
    np.testing.assert_allclose(np.asarray(stem(x)[0]), channels_last([want])[0], atol=TOLERANCE)


def test_an_encoder_with_fewer_stages_skips_the_rest_of_the_file_and_equals_the_first_maps():
    model = encoders.load_encoder("resnet18", numpy_state_dict("resnet18"), num_features=2)
    stages = timm_features("resnet18")
    shallow = [stages.conv1, stages.bn1, stages.layer1]
    assert count(jax.tree.leaves(nnx.state(model, nnx.Param))) == count(
        p for module in shallow for p in module.parameters()
    )
    features = model(random_image())
    assert len(features) == 2
    for feature, want in zip(features, resnet18_features()[:2], strict=True):
        assert_close(feature, want)


def test_frozen_batch_norm_trains_with_the_running_statistics_and_keeps_them():
    model = encoders.load_encoder(
        "resnet18", numpy_state_dict("resnet18"), num_features=2, freeze_bn=True
    )
    statistics = arrays(model, nnx.BatchStat)
    features = model(random_image(), train=True)
    for feature, want in zip(features, resnet18_features()[:2], strict=True):
        assert_close(feature, want)
    assert_same_arrays(statistics, arrays(model, nnx.BatchStat))
    # Unfrozen, the same call normalises with the batch's statistics and moves the running ones.
    model.freeze_bn = False
    features = model(random_image(), train=True)
    assert not np.allclose(np.asarray(features[1]), resnet18_features()[1], atol=1e-2)
    moved = arrays(model, nnx.BatchStat)
    assert not np.allclose(moved["bn1", "mean"], statistics["bn1", "mean"])


def test_in_training_mode_batch_norm_normalises_with_the_batch_and_moves_like_torch():
    model = encoders.load_encoder("resnet50", numpy_state_dict("resnet50"), num_features=2)
    torch_model = copy.deepcopy(reference("resnet50")).train()
    x = random_image((2, 32, 32, 3))
    with torch.no_grad():
        want = torch_model.forward_intermediates(
            to_torch(x), indices=[0, 1], intermediates_only=True, stop_early=True
        )
    for feature, expected in zip(model(x, train=True), channels_last(want), strict=True):
        assert_close(feature, expected)
    # Running means move 0.1 of the way (torch's momentum), shortcut projection included.
    # (Running variances differ slightly by design: torch updates them with the unbiased one.)
    for ours, theirs in [
        (model.bn1, torch_model.bn1),
        (model.layer1[0].downsample[1], torch_model.layer1[0].downsample[1]),
    ]:
        np.testing.assert_allclose(ours.mean[...], theirs.running_mean.numpy(), atol=1e-5)


def _wrong_shape(state_dict):
    state_dict["layer1.0.conv1.weight"] = np.zeros((64, 64, 1, 1), np.float32)
    return r"key 'layer1\.0\.conv1\.weight' has shape \(64, 64, 1, 1\), expected \(64, 64, 3, 3\)"


def _wrong_rank(state_dict):
    state_dict["layer3.1.conv2.weight"] = np.zeros(256, np.float32)
    return r"key 'layer3\.1\.conv2\.weight' has shape \(256,\), expected \(256, 256, 3, 3\)"


def _missing(state_dict):
    del state_dict["layer2.0.bn1.running_var"]
    return r"missing key 'layer2\.0\.bn1\.running_var' \(our layer2\.0\.bn1\.var \(128,\)\)"


def _unexpected_block(state_dict):
    state_dict["layer1.2.conv1.weight"] = state_dict["layer1.1.conv1.weight"]
    return r"unexpected key 'layer1\.2\.conv1\.weight' \(64, 64, 3, 3\)"


def _unexpected_prefix(state_dict):
    state_dict["encoder.conv1.weight"] = state_dict.pop("conv1.weight")
    return r"unexpected key 'encoder\.conv1\.weight'"


@pytest.mark.parametrize(
    "break_it", [_wrong_shape, _wrong_rank, _missing, _unexpected_block, _unexpected_prefix]
)
def test_a_bad_key_is_a_one_line_error_naming_it_and_the_model_stays_unchanged(break_it):
    model = encoders.load_encoder("resnet18", numpy_state_dict("resnet18"))
    before = arrays(model)
    state_dict = numpy_state_dict("resnet18")
    pattern = break_it(state_dict)
    with pytest.raises(ValueError, match=pattern) as error:
        weights.load_weights(model, state_dict)
    assert "\n" not in str(error.value)
    assert_same_arrays(before, arrays(model))


def test_the_classifier_head_is_ignored_but_a_stray_head_key_is_not():
    state_dict = numpy_state_dict("resnet18")
    assert {"fc.weight", "fc.bias"} <= set(state_dict)  # a user's file has the head
    state_dict["head.fc.weight"] = state_dict["fc.weight"]  # ConvNeXt's head, not ResNet's
    stem = shape_only(encoders.ResNet18, num_features=1)
    with pytest.raises(ValueError, match=r"unexpected key 'head\.fc\.weight'"):
        weights.load_weights(stem, state_dict)


def test_a_pth_checkpoint_dict_is_unwrapped_and_a_prefix_stripped(tmp_path):
    state_dict = {f"encoder.{k}": v for k, v in reference("resnet18").state_dict().items()}
    state_dict["decoder.blocks.0.weight"] = torch.zeros(3)
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": state_dict, "epoch": 7}, path)
    stem = encoders.load_encoder("resnet18", path, prefix="encoder.", num_features=1)
    np.testing.assert_allclose(
        np.asarray(stem(random_image())[0]), resnet18_features()[0], atol=TOLERANCE
    )


@pytest.mark.parametrize(
    "file_name, pattern",
    [("weights.bin", r"unknown suffix '\.bin'"), ("absent.safetensors", "does not exist")],
)
def test_an_unreadable_weights_file_is_a_one_line_error_naming_it(tmp_path, file_name, pattern):
    path = tmp_path / file_name
    if file_name.endswith(".bin"):
        path.write_bytes(b"\0")
    with pytest.raises(ValueError, match=pattern) as error:
        weights.read_state_dict(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_an_input_with_the_wrong_channel_count_names_the_layout():
    stem = shape_only(encoders.ResNetTiny, in_channels=1, num_features=1)
    with pytest.raises(
        ValueError, match=r"has 3 channels; the encoder expects 1 \(channels last\)"
    ):
        stem(np.zeros((1, 32, 32, 3), np.float32))
