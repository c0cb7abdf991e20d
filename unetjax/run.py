"""A training run on disk: its saved config, its checkpoints, and the model the config describes.

Layout of a run's workdir:
  config.json         the full config, with the data-derived model fields filled in
  checkpoints/<step>/ Orbax checkpoints (see `unetjax.checkpoint`)
  metrics.jsonl       one JSON object per logged step or evaluation
  tensorboard/        TensorBoard event files
  overlays/           prediction overlays of validation images, per evaluation
"""

from __future__ import annotations

import json
import os

import jax.numpy as jnp
import ml_collections
from flax import nnx

from unetjax import graph, nested_unet

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def checkpoint_dir(workdir: str | os.PathLike) -> str:
    return os.path.join(os.fspath(workdir), CHECKPOINT_DIR)


def save_config(workdir: str | os.PathLike, config: ml_collections.ConfigDict) -> None:
    """Writes config.json atomically (a temporary file renamed over the old one)."""
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(os.fspath(workdir), CONFIG_FILE)
    with open(path + ".tmp", "w") as f:
        f.write(config.to_json_best_effort(indent=2, sort_keys=True))
    os.replace(path + ".tmp", path)


def load_config(workdir: str | os.PathLike) -> ml_collections.ConfigDict:
    path = os.path.join(os.fspath(workdir), CONFIG_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} not found: expected a run directory written by train.py (or an exported model)"
        )
    with open(path) as f:
        return ml_collections.ConfigDict(json.load(f))


def network_spec(model_config: ml_collections.ConfigDict) -> nested_unet.NetworkSpec:
    """The layer options of `config.model` (in_channels, num_classes and output_activation must be
    resolved, as train.py does from the dataset)."""
    for key in ("in_channels", "num_classes", "output_activation"):
        if model_config.get(key) is None:
            raise ValueError(f"config.model.{key} is not set; it is filled in from the dataset")
    if model_config.dtype not in DTYPES:
        raise ValueError(
            f"config.model.dtype={model_config.dtype!r}; expected one of {list(DTYPES)}"
        )
    return nested_unet.NetworkSpec(
        in_channels=model_config.in_channels,
        num_classes=model_config.num_classes,
        filters=tuple(model_filters(model_config)),
        spatial_dims=model_config.spatial_dims,
        norm=model_config.norm,
        activation=model_config.activation,
        dropout=model_config.dropout,
        upsample=model_config.upsample,
        cat_channels=model_config.cat_channels,
        output_activation=model_config.output_activation,
        dtype=None if model_config.dtype == "float32" else DTYPES[model_config.dtype],
    )


def model_filters(model_config: ml_collections.ConfigDict) -> tuple[int, ...]:
    """`filters` if given, else `base_filters` doubled per level for `depth` + 1 levels."""
    if model_config.get("filters"):
        return tuple(int(f) for f in model_config.filters)
    return tuple(model_config.base_filters * 2**level for level in range(model_config.depth + 1))


def build_graph(model_config: ml_collections.ConfigDict) -> graph.Graph:
    depth = len(model_filters(model_config)) - 1
    return graph.build_graph(
        model_config.architecture, depth, deep_supervision=model_config.deep_supervision
    )


def build_model(
    model_config: ml_collections.ConfigDict, *, seed: int = 0
) -> nested_unet.NestedUNet:
    """The network `config.model` describes, freshly initialised."""
    return nested_unet.NestedUNet(
        build_graph(model_config), network_spec(model_config), rngs=nnx.Rngs(seed)
    )
