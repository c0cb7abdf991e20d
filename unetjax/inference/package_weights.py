"""A model package's weights: model.safetensors, one tensor per '/'-joined state path, and the
manifest that marks a folder as a package (`package` writes both). The predictor restores from
here without importing the package writer (which exports artifacts through the predictor).
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import numpy as np
from flax import nnx

MANIFEST_FILE = "unetjax_package.json"
WEIGHTS_FILE = "model.safetensors"


def is_package(path: str | os.PathLike) -> bool:
    return os.path.isfile(os.path.join(os.fspath(path), MANIFEST_FILE))


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    with open(os.path.join(os.fspath(path), MANIFEST_FILE)) as f:
        return json.load(f)


def _is_key(value) -> bool:
    """A typed PRNG key (a dropout stream): stored as its raw key data."""
    return hasattr(value, "dtype") and jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key)


def _key(prefix: str, path: tuple) -> str:
    return "/".join((prefix, *(str(part) for part in path)))


def flat_tensors(state: dict[str, nnx.State]) -> dict[str, np.ndarray]:
    """{"params/nodes/x_0_0/conv1/conv/kernel": array, ...}: every leaf of `state` (keys
    "params" and "model_state") under its '/'-joined path; PRNG keys as their key data."""
    tensors = {}
    for prefix, tree in state.items():
        for path, variable in nnx.to_flat_state(tree):
            value = variable.get_value()
            if _is_key(value):
                value = jax.random.key_data(value)
            tensors[_key(prefix, path)] = np.ascontiguousarray(np.asarray(value))
    return tensors


def restore(model_dir: str | os.PathLike, target: dict[str, nnx.State], step: int | None):
    """The leaves of `target` (abstract "params" and "model_state" states, e.g. of a pruned
    model) read from the package's model.safetensors, and the package's step.

    Raises a ValueError naming the tensor when one is missing or has another shape or dtype.
    """
    from safetensors.numpy import load_file

    manifest = read_manifest(model_dir)
    if step is not None and step != manifest["step"]:
        raise ValueError(
            f"{os.fspath(model_dir)} is a model package of step {manifest['step']} only; "
            f"drop --step {step}"
        )
    path = os.path.join(os.fspath(model_dir), WEIGHTS_FILE)
    tensors = load_file(path)
    restored = {}
    for prefix, tree in target.items():
        flat = []
        for state_path, variable in nnx.to_flat_state(tree):
            key, like = _key(prefix, state_path), variable.get_value()
            if key not in tensors:
                raise ValueError(f"{path}: no tensor {key!r}; it does not match config.json")
            value = tensors[key]
            if _is_key(like):
                value = jax.random.wrap_key_data(value, impl=jax.random.key_impl(like))
            elif value.shape != like.shape or value.dtype != like.dtype:
                raise ValueError(
                    f"{path}: {key} is {value.dtype}{list(value.shape)}; the config's model "
                    f"expects {like.dtype}{list(like.shape)}"
                )
            flat.append((state_path, variable.replace(value=jax.numpy.asarray(value))))
        restored[prefix] = nnx.from_flat_state(flat)
    return restored, manifest["step"]
