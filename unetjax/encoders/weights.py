"""timm / torchvision `state_dict`s (name -> array) into our encoders' NNX state.

Our encoders name their modules exactly as timm and torchvision do (`layer1.0.conv1`,
`stages.2.blocks.5.mlp.fc1`), so a conversion rule only says which modules are convolutions,
norms or linear layers: a regex over the source module name and, per source tensor, our variable
name and the axis permutation that turns torch's layout into ours (conv OIHW -> HWIO, linear
(out, in) -> (in, out)). Every source key must find a place and every variable of ours must be
filled, with matching shapes; otherwise a one-line ValueError names the key and the shapes.

Files: `.safetensors` needs only the `safetensors` package; `.pth` / `.pt` imports torch, and
only then.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Mapping
from typing import Any, ClassVar, Protocol

import jax.numpy as jnp
import numpy as np
from flax import nnx

logger = logging.getLogger(__name__)

IGNORED = "ignored"
"""Marks a source tensor that has no counterpart in our state (batch norm's step counter)."""

# source tensor name -> (our variable name, axis permutation from torch's layout, None = as is)
TensorMap = Mapping[str, tuple[str, tuple[int, ...] | None] | str]

CONV: TensorMap = {"weight": ("kernel", (2, 3, 1, 0)), "bias": ("bias", None)}
LINEAR: TensorMap = {"weight": ("kernel", (1, 0)), "bias": ("bias", None)}
LAYER_NORM: TensorMap = {"weight": ("scale", None), "bias": ("bias", None)}
BATCH_NORM: TensorMap = {
    "weight": ("scale", None),
    "bias": ("bias", None),
    "running_mean": ("mean", None),
    "running_var": ("var", None),
    "num_batches_tracked": IGNORED,
}

Path = tuple[str | int, ...]


@dataclasses.dataclass(frozen=True)
class WeightRules:
    """How one architecture's source names map onto our state.

    Attributes:
      modules: (regex, tensor map) pairs; a source key `a.b.c.weight` is module `a.b.c` and tensor
        `weight`, and the first regex that fully matches the module decides.
      ignored: regex of source keys that are dropped on purpose (the classifier head).
      first_conv: the module whose RGB kernel is adapted when `in_channels != 3`.
      stages: source module prefixes of each feature map's stage, shallow to deep; an encoder that
        builds only its first `num_features` stages skips the keys of the rest.
    """

    modules: tuple[tuple[str, TensorMap], ...]
    ignored: str
    first_conv: str
    stages: tuple[tuple[str, ...], ...]

    def target(self, key: str) -> tuple[Path, tuple[int, ...] | None] | str | None:
        """Our path and permutation for source `key`; IGNORED; or None when no rule knows it."""
        if re.fullmatch(self.ignored, key):
            return IGNORED
        module, _, tensor = key.rpartition(".")
        for pattern, tensors in self.modules:
            if re.fullmatch(pattern, module):
                mapped = tensors.get(tensor)
                if mapped is None or mapped == IGNORED:
                    return mapped
                variable, permutation = mapped
                return (*_module_path(module), variable), permutation
        return None

    def source_key(self, path: Path) -> str:
        """The source key that fills our variable at `path` (for error messages)."""
        module = ".".join(str(part) for part in path[:-1])
        for pattern, tensors in self.modules:
            if re.fullmatch(pattern, module):
                for tensor, mapped in tensors.items():
                    if mapped != IGNORED and mapped[0] == path[-1]:
                        return f"{module}.{tensor}"
        return ".".join(str(part) for part in path)


class Encoder(Protocol):
    """What `load_weights` needs of an encoder module."""

    weight_rules: ClassVar[WeightRules]
    num_features: int


def _module_path(module: str) -> Path:
    # nnx.List entries are addressed by int in NNX paths, by their digits in torch names.
    return tuple(int(part) if part.isdigit() else part for part in module.split("."))


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A `state_dict` from `.safetensors` or `.pth` / `.pt` (also a checkpoint holding one).

    A `.pth` checkpoint dict is unwrapped from its "state_dict" or "model" entry.
    """
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if not os.path.isfile(path):
        raise ValueError(f"encoder weights file {path} does not exist")
    if suffix == ".safetensors":
        try:
            from safetensors.numpy import load_file
        except ImportError as error:
            raise ValueError(
                f"reading {path} needs the safetensors package: pip install safetensors"
            ) from error
        return load_file(path)
    if suffix in (".pth", ".pt"):
        return _read_torch(path)
    raise ValueError(
        f"encoder weights file {path}: unknown suffix {suffix!r}; use a .safetensors, .pth or "
        ".pt state_dict"
    )


def _read_torch(path: str) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError as error:
        raise ValueError(
            f"reading {path} needs torch (pip install torch); a .safetensors file needs only "
            "the safetensors package"
        ) from error
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("state_dict", "model"):
        if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get(wrapper), Mapping):
            checkpoint = checkpoint[wrapper]
            break
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{path} holds a {type(checkpoint).__name__}, not a state_dict")
    state_dict = {}
    for key, value in checkpoint.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(
                f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor; "
                "expected a state_dict (or a checkpoint with a 'state_dict' or 'model' entry)"
            )
        # numpy has no bfloat16: widen it (and float16) to float32 before the hand-over.
        if value.is_floating_point():
            value = value.float()
        state_dict[key] = value.detach().cpu().numpy()
    return state_dict


def adapt_first_conv(weight: np.ndarray, in_channels: int) -> np.ndarray:
    """An RGB kernel (out, 3, h, w) for `in_channels` inputs, as smp's `patch_first_conv` does.

    One channel: the sum over RGB. Otherwise input channel i takes RGB filter i % 3, and all are
    scaled by 3 / in_channels so that an input repeating its channels keeps the RGB response.
    """
    if in_channels == 1:
        return weight.sum(axis=1, keepdims=True)
    rgb = weight.shape[1]
    return weight[:, np.arange(in_channels) % rgb] * (rgb / in_channels)


def convert_state_dict(
    state_dict: Mapping[str, Any],
    rules: WeightRules,
    expected: Mapping[Path, tuple[int, ...]],
    *,
    num_features: int,
    source: str = "state_dict",
) -> dict[Path, np.ndarray]:
    """Our arrays (path -> array in our layout) for the variables in `expected` (path -> shape).

    Raises a one-line ValueError for the first missing, unexpected or wrongly shaped key (and
    says how many more problems there are).
    """
    skipped = tuple(f"{prefix}." for stage in rules.stages[num_features:] for prefix in stage)
    converted: dict[Path, np.ndarray] = {}
    wrongly_shaped: set[Path] = set()
    problems: list[str] = []
    for key, value in state_dict.items():
        value = np.asarray(value)
        target = rules.target(key)
        if target == IGNORED or key.startswith(skipped):
            continue
        if target is None or target[0] not in expected:
            problems.append(f"unexpected key {key!r} {value.shape}: no tensor of ours takes it")
            continue
        path, permutation = target
        if _dotted(path[:-1]) == rules.first_conv and path[-1] == "kernel":
            value = _maybe_adapt_first_conv(key, value, expected[path], source)
        if permutation is None:
            array = value
        elif value.ndim == len(permutation):
            array = np.transpose(value, permutation)
        else:
            array = None
        if array is None or array.shape != expected[path]:
            wrongly_shaped.add(path)
            problems.append(
                f"key {key!r} has shape {value.shape}, expected "
                f"{_source_shape(expected[path], permutation)} "
                f"(our {_dotted(path)} is {expected[path]})"
            )
            continue
        converted[path] = array
    problems += [
        f"missing key {rules.source_key(path)!r} (our {_dotted(path)} {shape})"
        for path, shape in expected.items()
        if path not in converted and path not in wrongly_shaped
    ]
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise ValueError(f"{source}: {problems[0]}{more}")
    return converted


def _maybe_adapt_first_conv(
    key: str, value: np.ndarray, ours: tuple[int, ...], source: str
) -> np.ndarray:
    in_channels = ours[2]  # ours is HWIO
    if value.ndim != 4 or value.shape[1] != 3 or in_channels == 3:
        return value
    rule = (
        "the sum of the RGB filters"
        if in_channels == 1
        else f"the RGB filters repeated cyclically and scaled by 3/{in_channels}"
    )
    logger.info(
        "%s: %s is an RGB kernel; for %d input channels it becomes %s, as "
        "segmentation_models_pytorch does",
        source,
        key,
        in_channels,
        rule,
    )
    return adapt_first_conv(value, in_channels)


def _source_shape(ours: tuple[int, ...], permutation: tuple[int, ...] | None) -> tuple[int, ...]:
    """The torch-layout shape that `permutation` turns into `ours`."""
    if permutation is None or len(permutation) != len(ours):
        return ours
    shape = [0] * len(ours)
    for our_axis, source_axis in enumerate(permutation):
        shape[source_axis] = ours[our_axis]
    return tuple(shape)


def _dotted(path: Path) -> str:
    return ".".join(str(part) for part in path)


def load_weights(
    encoder: Encoder,
    weights: str | os.PathLike | Mapping[str, Any],
    *,
    prefix: str = "",
) -> None:
    """Fills `encoder` in place from a timm / torchvision state_dict (a file or name -> array).

    `prefix` keeps only keys that start with it, stripped (e.g. "encoder." in an smp
    checkpoint). Nothing is changed when a key is missing, unexpected or wrongly shaped.
    """
    source = "state_dict" if isinstance(weights, Mapping) else os.fspath(weights)
    state_dict = weights if isinstance(weights, Mapping) else read_state_dict(weights)
    if prefix:
        state_dict = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if not state_dict:
            raise ValueError(f"{source}: no key starts with the prefix {prefix!r}")
    flat = dict(nnx.to_flat_state(nnx.state(encoder)))
    expected = {path: tuple(variable.shape) for path, variable in flat.items()}
    converted = convert_state_dict(
        state_dict,
        type(encoder).weight_rules,
        expected,
        num_features=encoder.num_features,
        source=source,
    )
    nnx.update(
        encoder,
        nnx.from_flat_state(
            [
                (path, jnp.asarray(array, dtype=flat[path].dtype))
                for path, array in converted.items()
            ]
        ),
    )
    logger.info("loaded %d tensors from %s", len(converted), source)
