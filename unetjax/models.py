"""From a `config.model` section to a network: the one config-to-model builder.

Training, inference, export, the benchmarks and the tests build their networks with
`from_config`: a `nested_unet.NestedUNet` for the plain encoder, an
`encoder_unet.EncoderNestedUNet` when `model.encoder` is set. The model modules hold Flax
modules only; reading a config, a run's checkpoint or downloaded weights happens here.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
from flax import nnx

from unetjax import checkpoint, encoders, rundir
from unetjax import graph as graph_lib
from unetjax.encoder_unet import SMP_DECODER_CHANNELS, EncoderNestedUNet, EncoderNetworkSpec
from unetjax.layers import NetworkSpec
from unetjax.nested_unet import NestedUNet

logger = logging.getLogger(__name__)

# Compute dtypes by config name; float32 computes in the parameters' dtype.
DTYPES = {"float32": None, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
# Input normalisations by name (`import_smp --normalize`): (mean, std) per RGB channel.
NORMALIZATIONS = {"imagenet": (encoders.IMAGENET_MEAN, encoders.IMAGENET_STD)}
HUB_FILE = "model.safetensors"


def from_config(
    model_config: Mapping[str, Any], *, seed: int = 0, pretrained: bool = False
) -> NestedUNet:
    """The network a `config.model` section describes, freshly initialised.

    With `model.encoder` set, an `EncoderNestedUNet`; `pretrained` then loads
    `model.encoder_weights` (a file, or "imagenet" through huggingface_hub) into its encoder,
    and then every array of the run `model.init_from` with the same path and shape (training
    asks for it; inference restores a run instead).
    """
    graph = graph_lib.graph_from_config(model_config)
    if not model_config.get("encoder"):
        return NestedUNet(graph, spec_from_config(model_config), rngs=nnx.Rngs(seed))
    model = EncoderNestedUNet(graph, encoder_spec_from_config(model_config), rngs=nnx.Rngs(seed))
    weights = model_config.get("encoder_weights")
    if pretrained and weights:
        encoders.load_weights(model.encoder, resolve_weights(model_config["encoder"], weights))
    if pretrained and model_config.get("init_from"):
        initialize_from_run(model, model_config["init_from"])
    return model


def spec_from_config(model_config: Mapping[str, Any]) -> NetworkSpec:
    """The layer options of a `config.model` section (in_channels, num_classes,
    output_activation and spatial_dims must be resolved, as training does from the dataset)."""
    for key in ("in_channels", "num_classes", "output_activation", "spatial_dims"):
        if model_config.get(key) is None:
            raise ValueError(f"config.model.{key} is not set; it is filled in from the dataset")
    if model_config["dtype"] not in DTYPES:
        raise ValueError(
            f"config.model.dtype={model_config['dtype']!r}; expected one of {list(DTYPES)}"
        )
    return NetworkSpec(
        in_channels=model_config["in_channels"],
        num_classes=model_config["num_classes"],
        filters=graph_lib.model_filters(
            model_config["architecture"],
            depth=model_config.get("depth"),
            filters=model_config.get("filters"),
            base_filters=model_config.get("base_filters"),
        ),
        spatial_dims=model_config["spatial_dims"],
        norm=model_config["norm"],
        activation=model_config["activation"],
        dropout=model_config["dropout"],
        upsample=model_config["upsample"],
        cat_channels=model_config["cat_channels"],
        output_activation=model_config["output_activation"],
        strides=model_config.get("strides"),
        kernels=model_config.get("kernels"),
        dtype=DTYPES[model_config["dtype"]],
    )


def encoder_spec_from_config(model_config: Mapping[str, Any]) -> EncoderNetworkSpec:
    """The layer options of a `config.model` section with `encoder` set."""
    base = spec_from_config(model_config)
    fields = {field.name: getattr(base, field.name) for field in dataclasses.fields(NetworkSpec)}
    mean, std = model_config.get("input_mean"), model_config.get("input_std")
    decoder_channels = model_config.get("decoder_channels") or SMP_DECODER_CHANNELS
    return EncoderNetworkSpec(
        **fields,
        encoder=model_config["encoder"],
        decoder_channels=tuple(int(c) for c in decoder_channels),
        input_mean=None if mean is None else tuple(float(v) for v in mean),
        input_std=None if std is None else tuple(float(v) for v in std),
        freeze_encoder_bn=bool(model_config.get("freeze_encoder_bn", False)),
    )


def initialize_from_run(model: nnx.Module, run_dir: str) -> None:
    """Copies into `model` the arrays of run `run_dir`'s latest checkpoint whose path and shape
    it shares (e.g. an imported smp network under a model with deep supervision added)."""
    config = rundir.load_config(run_dir)
    saved = nnx.eval_shape(lambda: from_config(config.model))
    ours = {path: v.shape for path, v in nnx.to_flat_state(nnx.state(model))}
    _, params, model_state = nnx.split(saved, nnx.Param, ...)
    target = {}
    for key, tree in (("params", params), ("model_state", model_state)):
        shared = [(p, v) for p, v in nnx.to_flat_state(tree) if ours.get(p) == v.shape]
        if shared:
            target[key] = nnx.from_flat_state(shared)
    directory = rundir.checkpoint_dir(run_dir)
    step = checkpoint.resolve_step(directory, None)
    restored = checkpoint.restore_subtree(directory, target, step)
    for tree in restored.values():
        nnx.update(model, tree)
    count = sum(len(nnx.to_flat_state(tree)) for tree in restored.values())
    logger.info("initialised %d of %d arrays from %s step %d", count, len(ours), run_dir, step)


def check_weights(model_config: Mapping[str, Any]) -> None:
    """Raises ValueError now, before any data is prepared, when `model.encoder_weights` names
    a file that is not there or ImageNet weights that cannot be fetched."""
    weights = model_config.get("encoder_weights")
    if not model_config.get("encoder") or not weights:
        return
    path = resolve_weights(model_config["encoder"], weights)
    if not os.path.isfile(path):
        raise ValueError(
            f"model.encoder_weights={path}: no such file (a timm or torchvision state_dict as "
            ".safetensors or .pth; docs/encoders.md)"
        )


def resolve_weights(encoder: str, weights: str) -> str:
    """A weights file path: `weights` itself, or for "imagenet" the encoder's timm file from the
    Hugging Face hub (only with huggingface_hub installed and online)."""
    if weights != "imagenet":
        return os.fspath(weights)
    files = [
        name for name in encoders.encoder_info(encoder).weight_files if name.startswith("timm/")
    ]
    if not files:
        raise ValueError(f"encoder {encoder!r} has no published ImageNet weights")
    repo = files[0]
    place = (
        f"download {HUB_FILE} of https://huggingface.co/{repo} and set "
        f"--config.model.encoder_weights=/path/to/{HUB_FILE}"
    )
    try:
        import huggingface_hub  # optional: only "imagenet" downloads
    except ImportError:
        raise ValueError(f"encoder_weights=imagenet needs huggingface_hub; or {place}") from None
    try:
        return huggingface_hub.hf_hub_download(repo, HUB_FILE)
    except Exception as error:  # offline, no such file, no access: all say the same fix
        raise ValueError(
            f"encoder_weights=imagenet: could not fetch {repo}/{HUB_FILE} "
            f"({type(error).__name__}); {place}"
        ) from None
