"""Pruned predictors from a trained run: load at depth L, predict batches or whole images.

UNet++ trained with deep supervision can be cut at inference to any depth L <= D (the paper's
pruning): mode "fast" runs head L's subgraph alone, "accurate" averages heads 1..L.
`load_predictor(path, depth=L, mode=...)` reads the run's `config.json`, builds the depth-L
model's structure without allocating it, and restores only that subgraph's arrays from the Orbax
checkpoint (a partial restore), so memory and load time shrink with L.

`path` is a run directory written by train.py or a directory written by `export`: both hold
`config.json` and `checkpoints/<step>/`; an export holds only the L-subgraph's parameters and
records what it can serve under `config.export`. A model package (`inference.package`) holds
`config.json` and its weights in model.safetensors instead of a checkpoint.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from unetjax import backend, checkpoint, models, nested_unet, parallel, rundir
from unetjax import graph as graph_lib
from unetjax.inference import package_weights, preprocessing, tiling
from unetjax.inference.postprocess import postprocess as labels_from_probabilities
from unetjax.inference.tiling import TileOptions
from unetjax.inference.tta import flip_sets, mean_over_flips
from unetjax.nested_unet import Mode, NestedUNet

logger = logging.getLogger(__name__)

MODES = ("fast", "accurate")
EXPORT_KEY = "export"

# (state, images (B, *spatial, C)) -> probabilities (B, *spatial, K): pure, jit-able.
NetworkFunction = Callable[[nnx.State, jax.Array], jax.Array]


class Predictor:
    """A network pruned to `depth` in `mode`, its restored state and a jit-compiled forward pass.

    Attributes:
      config: the run's config (`config.model` describes the full network).
      model_dir: the run or export directory it was loaded from.
      step: the checkpoint step restored.
      depth, mode: what it predicts (head `depth`, or the mean of heads <= depth).
      spec: the layer options; `spec.dtype` is the compute dtype.
      graph: the pruned graph (`subgraph(full_graph, depth, mode)`).
      state: the restored arrays (parameters and batch statistics) of the pruned model.
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
        self.graphdef, state = nnx.split(model)
        self.state = jax.device_put(state, parallel.replicated(self.mesh))
        self._forward = backend.jit(self.network_function(), static_argnames=("flips",))

    @property
    def align(self) -> tuple[int, ...]:
        """Per axis, spatial sizes the network takes are multiples of this (2^D, D the full
        depth; with per-axis pooling, the product of the axis's strides)."""
        return self.spec.divisor(self.full_depth)

    @property
    def default_tile(self) -> list[int] | None:
        """The tile size `predict` uses unless told (see `default_tile`)."""
        return default_tile(self.config)

    @property
    def output_activation(self) -> str:
        return self.spec.output_activation

    @property
    def in_channels(self) -> int:
        return self.spec.in_channels

    @property
    def spatial_dims(self) -> int:
        return self.spec.spatial_dims

    @property
    def _data(self) -> dict:
        return self.config.get("data") or {}

    @property
    def color_mode(self) -> str:
        """How images are read for this model (`data.color_mode`)."""
        return self._data.get("color_mode") or "auto"

    @property
    def class_names(self) -> list[str] | None:
        return self._data.get("class_names")

    @property
    def training_resize(self) -> dict | None:
        """The `data.resize` the run was trained with (predict resizes images alike)."""
        return self._data.get("resize")

    @property
    def takes_volumes(self) -> bool:
        """Whether the run was trained on NIfTI volumes (predicted with their geometry)."""
        from unetjax.data.volumes import preprocessing as volume_preprocessing

        return volume_preprocessing.takes_volumes(self._data)

    def describe(self) -> str:
        return (
            f"{self.model_dir} step {self.step}, depth {self.depth} ({self.mode}), "
            f"{self.num_params:,} parameters"
        )

    def check_tile(self, tile: TileOptions | None) -> None:
        """Any tile size fits a run (it tiles any image)."""

    def model(self) -> NestedUNet:
        """The pruned module with the restored state (for export and inspection)."""
        return nnx.merge(self.graphdef, self.state)

    def network_function(self) -> Callable[..., jax.Array]:
        """`f(state, images, flips=((),))` -> probabilities: the pruned network as a pure function
        of its state, optionally averaged over mirrored copies (`flips`, see `flip_sets`)."""
        graphdef, depth, mode = self.graphdef, self.depth, self.mode

        def probabilities(state, images, flips=((),)):
            model = nnx.merge(graphdef, state)
            predict = lambda x: model.predict(x, depth=depth, mode=mode)  # noqa: E731
            return mean_over_flips(predict, images, flips, jnp.flip)

        return probabilities

    def flips(self, tta: bool) -> tuple[tuple[int, ...], ...]:
        """The mirrorings to average: all 2^d with test-time augmentation, else none."""
        return flip_sets(self.spec.spatial_dims) if tta else ((),)

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
        probabilities = self._forward(self.state, sharded, flips=self.flips(tta))
        return np.asarray(probabilities, np.float32)[:count]

    def predict(
        self,
        image: np.ndarray,
        *,
        tile: TileOptions | None = None,
        tta: bool = False,
        bucket: bool = False,
        normalized: bool = False,
    ) -> np.ndarray:
        """Probabilities (*spatial, K) of one image or volume (*spatial, C) of any size.

        The image is unit-scale, as `image_io.read_image` gives it, and normalised here as in
        training (`normalize`); `normalized=True` takes one the data pipeline already normalised (a
        dataset's example, a resampled volume). Without `tile`, the whole image is predicted at once
        after mirror-padding it to a multiple of 2^D; with it, tile by tile
        (`unetjax.inference.tiling`). With `tta`, the mean over every mirrored copy of the image,
        each padded and tiled as it is (so the result mirrors exactly with the input, whatever its
        size). With `bucket`, a folder of varied sizes compiles a few shapes, not one per size: a
        whole image is padded to one of a few sizes per octave (`tiling.bucket_size`) instead of the
        next multiple of 2^D, and with `tile` an image smaller than the tile is padded up to it
        (fixed-shape tiles).
        """
        image = np.asarray(image, np.float32)
        self.check_image(image)
        batch = image[None] if normalized else self.normalize(image)[None]
        predict = lambda x: self._predict_one(x[0], tile, bucket)[None]  # noqa: E731
        flip = lambda x, axes: np.ascontiguousarray(np.flip(x, axes))  # noqa: E731
        return mean_over_flips(predict, batch, self.flips(tta), flip)[0]

    def _predict_one(self, image: np.ndarray, tile: TileOptions | None, bucket: bool) -> np.ndarray:
        from unetjax.data import kinds

        return tiling.predict_image(
            self.predict_batch,
            image,
            tile,
            align=self.align,
            bucket=bucket,
            pad_to=kinds.padded_patch(self._data),
        )

    @property
    def normalization(self) -> preprocessing.Normalization:
        """The run's input normalisation, as an exported artifact records it."""
        return preprocessing.normalization_from_config(self.config)

    def normalize(self, image: np.ndarray) -> np.ndarray:
        """A unit-scale image (as `image_io.read_image` gives it) normalised as the run's data
        were in training, by the rule an exported artifact applies inside."""
        return preprocessing.normalize(np.asarray(image, np.float32)[None], self.normalization)[0]

    def check_image(self, image: np.ndarray, name: str = "image") -> None:
        """Raises a ValueError naming `name` when `image` is not (*spatial, in_channels)."""
        try:
            nested_unet.check_layout(image.shape, self.spec, batched=False)
        except ValueError as error:
            raise ValueError(f"{name}: {error}") from None

    def postprocess(
        self, probabilities: np.ndarray, *, threshold: float = 0.5, min_size: int = 0
    ) -> np.ndarray:
        """Labels from probabilities (see `postprocess.postprocess`) for this model's output."""
        return labels_from_probabilities(
            probabilities,
            output_activation=self.output_activation,
            threshold=threshold,
            min_size=min_size,
        )


def default_tile(config: ml_collections.ConfigDict) -> list[int] | None:
    """A run's tile size for prediction, None for whole images.

    A trained run's is its training patch size: fixed-shape tiles compile once for images of
    every size (benchmarks/RESULTS.md: 3.3x the images/s of whole images on 20 sizes from 40 to
    300 px). An imported model never saw a training patch: the tile given at import
    (`imported_from.tile`), else whole images, as the library it came from predicts them.
    """
    imported = config.get("imported_from")
    if imported is not None:
        tile = imported.get("tile")
    else:
        tile = (config.get("data") or {}).get("patch_size")
    return [int(t) for t in tile] if tile else None


def available(config: ml_collections.ConfigDict, depth: int, mode: Mode) -> bool:
    """Whether a run (any depth and mode) or an export (its subgraph) can predict at depth/mode."""
    full = graph_lib.graph_from_config(config.model)
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
    depths = graph_lib.graph_from_config(config.model).head_depths
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
    config = rundir.load_config(model_dir)
    if dtype is not None:
        if dtype not in models.DTYPES:
            raise ValueError(f"dtype={dtype!r}; expected one of {list(models.DTYPES)}")
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
    full = nnx.eval_shape(lambda: models.from_config(config.model))
    abstract = nested_unet.pruned_abstract(full, depth, mode)
    graphdef, params, model_state = nnx.split(abstract, nnx.Param, ...)
    target = {"params": params}
    if jax.tree.leaves(model_state):
        target["model_state"] = model_state
    if package_weights.is_package(model_dir):  # weights in model.safetensors, not Orbax
        restored, step = package_weights.restore(model_dir, target, step)
    else:
        directory = rundir.checkpoint_dir(model_dir)
        step = checkpoint.resolve_step(directory, step)
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
