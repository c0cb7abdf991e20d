"""Pruned inference from a trained run: load at depth L, predict, tile, post-process, export.

UNet++ trained with deep supervision can be cut at inference to any depth L <= D (the paper's
pruning): mode "fast" runs head L's subgraph alone, "accurate" averages heads 1..L.
`load_predictor(path, depth=L, mode=...)` reads the run's `config.json`, builds the depth-L
model's structure without allocating it, and restores only that subgraph's arrays from the Orbax
checkpoint (a partial restore), so memory and load time shrink with L.

`path` is a run directory written by train.py or a directory written by `export`: both hold
`config.json` and `checkpoints/<step>/`; an export holds only the L-subgraph's parameters and
records what it can serve under `config.export`.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import scipy.ndimage
from flax import nnx

from unetjax import checkpoint, nested_unet, parallel, run, tiling
from unetjax import graph as graph_lib
from unetjax.nested_unet import Mode, NestedUNet

logger = logging.getLogger(__name__)

MODES = ("fast", "accurate")
EXPORT_KEY = "export"


@dataclasses.dataclass(frozen=True)
class TileOptions:
    """Overlap-tile settings (see `unetjax.tiling`).

    Attributes:
      tile: tile size per spatial axis (an int for every axis); rounded up to a multiple of 2^D.
      overlap: minimum overlap of neighbouring tiles; None: half the tile (nnU-Net's step of
        0.5), which with Gaussian blending keeps tiled and whole-image predictions within 2e-3.
      blend: "gaussian" or "constant".
      batch_size: tiles per call of the network.
      border: pixels of mirrored context added around the image (0: none).
    """

    tile: int | tuple[int, ...]
    overlap: int | tuple[int, ...] | None = None
    blend: str = "gaussian"
    batch_size: int = 4
    border: int = 0

    def overlaps(self) -> int | tuple[int, ...]:
        if self.overlap is not None:
            return self.overlap
        if isinstance(self.tile, int):
            return self.tile // 2
        return tuple(t // 2 for t in self.tile)


class Predictor:
    """A network pruned to `depth` in `mode`, its restored state and a jit-compiled forward pass.

    Attributes:
      config: the run's config (`config.model` describes the full network).
      model_dir: the run or export directory it was loaded from.
      step: the checkpoint step restored.
      depth, mode: what it predicts (head `depth`, or the mean of heads <= depth).
      spec: the layer options; `spec.dtype` is the compute dtype.
      graph: the pruned graph (`subgraph(full_graph, depth, mode)`).
      restored_paths: the state paths read from the checkpoint, e.g. ("params", "nodes",
        "x_0_1", "conv1", "conv", "kernel"); only the subgraph's.
    """

    def __init__(
        self,
        model: NestedUNet,
        *,
        depth: int,
        mode: Mode,
        config: ml_collections.ConfigDict,
        model_dir: str,
        step: int,
        restored_paths: tuple[tuple[str, ...], ...],
    ):
        self.config, self.model_dir, self.step = config, model_dir, step
        self.depth, self.mode = depth, mode
        self.spec, self.graph = model.spec, model.graph
        self.full_depth = model.graph.depth
        self.restored_paths = restored_paths
        self.num_params = nested_unet.count_params(model)
        self.mesh = parallel.make_mesh()
        self._graphdef, state = nnx.split(model)
        self._state = jax.device_put(state, parallel.replicated(self.mesh))
        self._forward = jax.jit(self._probabilities, static_argnames=("flips",))

    @property
    def align(self) -> int:
        """Spatial sizes the network takes are multiples of this (2^D, D the full depth)."""
        return 2**self.full_depth

    @property
    def output_activation(self) -> str:
        return self.spec.output_activation

    def _probabilities(
        self, state: nnx.State, images: jax.Array, *, flips: tuple[tuple[int, ...], ...]
    ) -> jax.Array:
        model = nnx.merge(self._graphdef, state)
        total = None
        for axes in flips:
            flipped = jnp.flip(images, axes) if axes else images
            probabilities = model.predict(flipped, depth=self.depth, mode=self.mode)
            probabilities = jnp.flip(probabilities, axes) if axes else probabilities
            total = probabilities if total is None else total + probabilities
        return total / len(flips)

    def flips(self, tta: bool) -> tuple[tuple[int, ...], ...]:
        """Spatial-axis subsets to mirror: all 2^d of them with test-time augmentation."""
        if not tta:
            return ((),)
        axes = range(1, self.spec.spatial_dims + 1)
        return tuple(
            subset for r in range(len(axes) + 1) for subset in itertools.combinations(axes, r)
        )

    def predict_batch(self, images: np.ndarray, *, tta: bool = False) -> np.ndarray:
        """Probabilities (B, *spatial, K) float32 of a batch (B, *spatial, C).

        Spatial sizes must be multiples of `align` (use `predict` for any size). The batch is
        split over every device, padded to a multiple of their number.
        """
        images = np.asarray(images, np.float32)
        nested_unet.check_input_shape(images.shape, self.spec, self.full_depth)
        count = images.shape[0]
        devices = self.mesh.devices.size
        if count % devices:
            filler = np.repeat(images[-1:], devices - count % devices, axis=0)
            images = np.concatenate([images, filler])
        sharded = jax.device_put(images, parallel.batch_sharding(self.mesh))
        probabilities = self._forward(self._state, sharded, flips=self.flips(tta))
        return np.asarray(probabilities, np.float32)[:count]

    def predict(
        self, image: np.ndarray, *, tile: TileOptions | None = None, tta: bool = False
    ) -> np.ndarray:
        """Probabilities (*spatial, K) of one image or volume (*spatial, C) of any size.

        Without `tile`, the whole image is predicted at once after mirror-padding it to a
        multiple of 2^D; with it, tile by tile (`unetjax.tiling`). With `tta`, the mean over
        every mirrored copy of the image, each padded and tiled as it is (so the result
        mirrors exactly with the input, whatever its size).
        """
        image = np.asarray(image, np.float32)
        self.check_image(image)
        if not tta:
            return self._predict_one(image, tile)
        flips = self.flips(True)
        total = None
        for flip in flips:
            axes = tuple(axis - 1 for axis in flip)  # no batch axis here
            flipped = np.ascontiguousarray(np.flip(image, axes)) if axes else image
            probabilities = self._predict_one(flipped, tile)
            probabilities = np.flip(probabilities, axes) if axes else probabilities
            total = probabilities if total is None else total + probabilities
        return total / len(flips)

    def _predict_one(self, image: np.ndarray, tile: TileOptions | None) -> np.ndarray:
        if tile is None:
            padded, crop = tiling.pad_to_multiple(image, self.align)
            return self.predict_batch(padded[None])[0][crop]
        return tiling.predict_tiled(
            self.predict_batch,
            image,
            tile=tile.tile,
            overlap=tile.overlaps(),
            align=self.align,
            blend=tile.blend,
            batch_size=tile.batch_size,
            border=tile.border,
        )

    def check_image(self, image: np.ndarray, name: str = "image") -> None:
        """Raises a ValueError naming `name` when `image` is not (*spatial, in_channels)."""
        dims, channels = self.spec.spatial_dims, self.spec.in_channels
        layout = "(H, W, C)" if dims == 2 else "(D, H, W, C)"
        if image.ndim != dims + 1:
            raise ValueError(f"{name}: shape {image.shape}; the {dims}D model expects {layout}")
        if image.shape[-1] != channels:
            raise ValueError(
                f"{name}: shape {image.shape} has {image.shape[-1]} channels; the model expects "
                f"{channels} ({layout} with C = {channels})"
            )

    def postprocess(
        self, probabilities: np.ndarray, *, threshold: float = 0.5, min_size: int = 0
    ) -> np.ndarray:
        """Labels from probabilities (see `postprocess`) with this model's output activation."""
        return postprocess(
            probabilities,
            output_activation=self.output_activation,
            threshold=threshold,
            min_size=min_size,
        )


def postprocess(
    probabilities: np.ndarray, *, output_activation: str, threshold: float = 0.5, min_size: int = 0
) -> np.ndarray:
    """Hard labels from probabilities (*spatial, K).

    sigmoid: `probabilities >= threshold`, uint8 (*spatial) for one class or (*spatial, K) for
    several (multi-label); softmax: the argmax class, uint8 (*spatial) (0 is background).
    min_size: connected components (face-connected) of a class smaller than this many pixels
    are removed (set to 0, background).
    """
    if output_activation == "sigmoid":
        labels = (probabilities >= threshold).astype(np.uint8)
        if labels.shape[-1] == 1:
            labels = labels[..., 0]
        if min_size > 0:
            if labels.ndim == probabilities.ndim:
                for k in range(labels.shape[-1]):
                    labels[..., k] = remove_small_components(labels[..., k], min_size)
            else:
                labels = remove_small_components(labels, min_size)
        return labels
    if output_activation != "softmax":
        raise ValueError(
            f"output_activation must be 'sigmoid' or 'softmax', got {output_activation!r}"
        )
    labels = np.argmax(probabilities, axis=-1).astype(np.uint8)
    if min_size > 0:
        for k in range(1, probabilities.shape[-1]):
            keep = remove_small_components(labels == k, min_size)
            labels[(labels == k) & ~keep.astype(bool)] = 0
    return labels


def remove_small_components(mask: np.ndarray, min_size: int) -> np.ndarray:
    """`mask` (any rank) without its connected components smaller than `min_size` pixels."""
    components, count = scipy.ndimage.label(mask)
    if count == 0:
        return mask
    sizes = np.bincount(components.ravel())
    keep = sizes >= min_size
    keep[0] = False
    return keep[components].astype(mask.dtype)


def _checkpoint_step(directory: str, step: int | None) -> int:
    steps = checkpoint.checkpoint_steps(directory) if os.path.isdir(directory) else []
    if not steps:
        raise FileNotFoundError(f"no checkpoint in {directory}")
    if step is None:
        return max(steps)
    if step not in steps:
        raise FileNotFoundError(f"no checkpoint for step {step} in {directory}; it has {steps}")
    return step


def full_abstract(config: ml_collections.ConfigDict) -> NestedUNet:
    """The full network of `config.model`, shapes only (nothing allocated)."""
    return nnx.eval_shape(lambda: run.build_model(config.model))


def available(config: ml_collections.ConfigDict, depth: int, mode: Mode) -> bool:
    """Whether a run (any depth and mode) or an export (its subgraph) can predict at depth/mode."""
    full = run.build_graph(config.model)
    if depth not in full.head_depths:
        return False
    export = config.get(EXPORT_KEY)
    if not export:
        return True
    held = graph_lib.subgraph(full, export.depth, mode=export.mode)
    wanted = graph_lib.subgraph(full, depth, mode=mode)
    return set(wanted.node_names) <= set(held.node_names) and {h.name for h in wanted.heads} <= {
        h.name for h in held.heads
    }


def available_settings(config: ml_collections.ConfigDict) -> list[tuple[int, str]]:
    """Every (depth, mode) the run or export at hand can predict."""
    depths = run.build_graph(config.model).head_depths
    return [(d, m) for d in depths for m in MODES if available(config, d, m)]


def load_predictor(
    path: str | os.PathLike,
    *,
    depth: int | None = None,
    mode: Mode = "fast",
    step: int | None = None,
    dtype: str | None = None,
) -> Predictor:
    """A predictor at depth L (default: the deepest available) and `mode` from a run or export.

    Only the L-subgraph's parameters and other state (batch statistics) are read.
    dtype: compute dtype override ("float32", "bfloat16"); None keeps the run's.
    """
    model_dir = os.fspath(path)
    config = run.load_config(model_dir)
    if dtype is not None:
        if dtype not in run.DTYPES:
            raise ValueError(f"dtype={dtype!r}; expected one of {list(run.DTYPES)}")
        config.model.dtype = dtype
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    settings = available_settings(config)
    if depth is None:
        depth = max(d for d, m in settings if m == mode) if settings else 1
    if (depth, mode) not in settings:
        raise ValueError(
            f"{model_dir} cannot predict at depth {depth} in mode {mode!r}; it can at "
            f"{', '.join(f'L{d} {m}' for d, m in settings)}"
        )
    directory = run.checkpoint_dir(model_dir)
    step = _checkpoint_step(directory, step)
    abstract = nested_unet.pruned_abstract(full_abstract(config), depth, mode)
    graphdef, params, model_state = nnx.split(abstract, nnx.Param, ...)
    target = {"params": params}
    if jax.tree.leaves(model_state):
        target["model_state"] = model_state
    restored = checkpoint.restore_subtree(directory, target, step)
    restored_paths = tuple(
        (key, *(str(part) for part in path))
        for key, tree in restored.items()
        for path, _ in nnx.to_flat_state(tree)
    )
    model = nnx.merge(graphdef, restored["params"], restored.get("model_state", model_state))
    logger.info(
        "loaded %s step %d at depth %d (%s): %d arrays, %d parameters",
        model_dir,
        step,
        depth,
        mode,
        len(restored_paths),
        nested_unet.count_params(model),
    )
    return Predictor(
        model,
        depth=depth,
        mode=mode,
        config=config,
        model_dir=model_dir,
        step=step,
        restored_paths=restored_paths,
    )


def export(
    path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    depth: int,
    mode: Mode = "fast",
    step: int | None = None,
) -> str:
    """Writes a self-contained model directory holding only the depth-L subgraph's state.

    The directory has a run's layout (`config.json`, `checkpoints/<step>/`) with `config.export`
    = {depth, mode, source, step}, so `load_predictor(out_dir, depth=L, mode=mode)` (or any
    smaller depth the subgraph serves) predicts exactly what the full model does. Returns out_dir.
    """
    predictor = load_predictor(path, depth=depth, mode=mode, step=step)
    out_dir = os.fspath(out_dir)
    if os.path.exists(run.checkpoint_dir(out_dir)):
        raise FileExistsError(f"{run.checkpoint_dir(out_dir)} exists; export to a new directory")
    model = nnx.merge(predictor._graphdef, predictor._state)
    _, params, model_state = nnx.split(model, nnx.Param, ...)
    state: dict[str, Any] = {"step": jnp.asarray(predictor.step, jnp.int32), "params": params}
    if jax.tree.leaves(model_state):
        state["model_state"] = model_state
    manager = checkpoint.CheckpointManager(run.checkpoint_dir(out_dir), keep_latest=1)
    manager.save(predictor.step, state, data_state={})
    manager.wait_until_finished()
    manager.close()
    config = run.load_config(path)  # the saved dtype, not a load-time override
    config[EXPORT_KEY] = ml_collections.ConfigDict(
        {
            "depth": depth,
            "mode": mode,
            "source": os.path.abspath(os.fspath(path)),
            "step": predictor.step,
        }
    )
    run.save_config(out_dir, config)
    logger.info(
        "exported %s depth %d (%s), %d parameters, to %s",
        path,
        depth,
        mode,
        predictor.num_params,
        out_dir,
    )
    return out_dir


def tile_options(
    tile: int | Sequence[int] | None,
    *,
    overlap: int | None = None,
    blend: str = "gaussian",
    batch_size: int = 4,
    border: int = 0,
) -> TileOptions | None:
    """TileOptions from command-line style values; None when `tile` is None or 0."""
    if not tile:
        return None
    tile_value = int(tile) if isinstance(tile, int | np.integer) else tuple(int(t) for t in tile)
    return TileOptions(
        tile=tile_value, overlap=overlap, blend=blend, batch_size=batch_size, border=border
    )
