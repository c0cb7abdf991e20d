"""Run a deployable artifact (.stablehlo or .onnx) with its runtime alone.

`load_artifact(path)` reads the model file and its sidecar (`artifact_format`) and returns an
`ArtifactRunner` with what `predict.py` needs, the same calls a `Predictor` offers:
`predict_batch` (sizes the artifact takes), `predict` (any size: mirror-padded, optionally tiled
and mirrored, with the predictor's own tiling and TTA code), `check_image`, `postprocess`.

StableHLO runs with `jax.export.deserialize` (jit-compiled once per input shape); ONNX with
onnxruntime on the CPU. The network comes from the file: no Flax, Orbax or unetjax model code is
called.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from unetjax import scales
from unetjax.inference import preprocessing, tiling
from unetjax.inference.deploy import artifact_format
from unetjax.inference.postprocess import postprocess as labels_from_probabilities
from unetjax.inference.tiling import TileOptions
from unetjax.inference.tta import flip_sets, mean_over_flips

logger = logging.getLogger(__name__)


def align_text(align: Sequence[int]) -> str:
    """What input sizes are multiples of: "2^D = 16", or per axis "(4, 16, 16) per axis"."""
    return f"2^D = {align[0]}" if len(set(align)) == 1 else f"{tuple(align)} per axis"


class ArtifactRunner:
    """A loaded artifact and its sidecar.

    Attributes:
      path: the model file.
      sidecar: the sidecar's fields (see `artifact_format`).
      format: "stablehlo" or "onnx".
      depth, mode, num_params, step: the pruned network it holds.
      spatial_dims, in_channels, output_activation, threshold: from the sidecar.
      align: per axis, spatial sizes of `predict_batch` are multiples of it (2^D, or the
        product of the axis's strides; sidecars older than per-axis pooling have no strides).
      fixed_shape: the one spatial shape an ONNX artifact takes; None for StableHLO.
      normalization: the preprocessing inside the artifact.
      training_resize: the training's `data.resize`, for the caller to resize images alike.
      default_tile, class_names, takes_volumes: None, None, False (as `inference.Model` asks):
        an artifact predicts whole images, names no classes, and reads no NIfTI geometry.
    """

    default_tile = None
    class_names = None
    takes_volumes = False

    def __init__(self, path: str, sidecar: dict[str, Any], run: Callable[..., np.ndarray]):
        self.path, self.sidecar, self.format = path, sidecar, sidecar["format"]
        model, inputs, outputs = sidecar["model"], sidecar["input"], sidecar["output"]
        self.depth, self.mode = int(model["depth"]), model["mode"]
        self.num_params, self.step = int(model["parameters"]), model.get("step")
        self.spatial_dims, self.in_channels = int(inputs["spatial_dims"]), int(inputs["channels"])
        self.color_mode = inputs.get("color_mode", "auto")
        self.training_resize = inputs.get("resize")  # data.resize of the training
        self.output_activation = outputs["activation"]
        self.threshold = float(outputs["threshold"])
        full_depth = int(model["full_depth"])
        strides, _ = scales.from_config(model, full_depth)  # None in older sidecars
        self.align = scales.divisor(strides, full_depth, self.spatial_dims)
        fixed = inputs["spatial_size"].get("fixed")
        self.fixed_shape = tuple(int(s) for s in fixed) if fixed else None
        self.normalization = preprocessing.Normalization.from_json(sidecar["normalization"])
        self._run = run  # (images, flips) -> probabilities (B, *spatial, K)

    def describe(self) -> str:
        size = (
            "x".join(map(str, self.fixed_shape))
            if self.fixed_shape
            else f"multiples of {align_text(self.align)}"
        )
        return (
            f"{self.format} artifact {self.path}: depth {self.depth} ({self.mode}), "
            f"{self.num_params:,} parameters, spatial size {size}"
        )

    def flips(self, tta: bool) -> tuple[tuple[int, ...], ...]:
        return flip_sets(self.spatial_dims) if tta else ((),)

    def check_batch(self, shape: tuple[int, ...]) -> None:
        """A ValueError naming the shape when a batch does not fit the artifact."""
        axes = ("depth", "height", "width")[-self.spatial_dims :]
        layout = "(" + ", ".join(("batch", *axes, "channels")) + ")"
        if len(shape) != self.spatial_dims + 2:
            raise ValueError(f"input shape {shape} has rank {len(shape)}; expected {layout}")
        if shape[-1] != self.in_channels:
            raise ValueError(
                f"input shape {shape} has {shape[-1]} channels; {self.path} expects "
                f"{self.in_channels} (channels last, {layout})"
            )
        spatial = tuple(shape[1:-1])
        if self.fixed_shape is not None and spatial != self.fixed_shape:
            raise ValueError(
                f"input shape {shape}: {self.path} takes spatial size {self.fixed_shape} only "
                "(ONNX artifacts have a fixed size; use predict for any size, or export "
                "another with --image-size)"
            )
        for size, align in zip(spatial, self.align, strict=True):
            if size % align:
                lower, upper = size // align * align, (size // align + 1) * align
                nearest = f"{lower} or {upper}" if lower else f"{upper}"
                raise ValueError(
                    f"input shape {shape}: spatial size {size} is not a multiple of "
                    f"{align_text(self.align)}; use {nearest}, or pad (predict handles "
                    "any size)"
                )

    def predict_batch(self, images: np.ndarray, *, tta: bool = False) -> np.ndarray:
        """Probabilities (B, *spatial, K) float32 of a batch (B, *spatial, C) in [0, 1]."""
        images = np.ascontiguousarray(images, np.float32)
        self.check_batch(images.shape)
        return np.asarray(self._run(images, self.flips(tta)), np.float32)

    def predict(
        self,
        image: np.ndarray,
        *,
        tile: TileOptions | None = None,
        tta: bool = False,
        bucket: bool = False,
    ) -> np.ndarray:
        """Probabilities (*spatial, K) of one unit-scale image (*spatial, C) of any size, as
        `Predictor.predict` computes them (normalisation, here inside the artifact;
        mirror-padding, size buckets with `bucket`, tiling, TTA over host flips).

        An ONNX artifact's fixed size is its tile: smaller images are mirror-padded up to it,
        larger ones tiled with it (overlap, blend and batch size from `tile` when given).
        """
        image = np.asarray(image, np.float32)
        self.check_image(image)
        batch = image[None]
        predict = lambda x: self._predict_one(x[0], tile, bucket)[None]  # noqa: E731
        flip = lambda x, axes: np.ascontiguousarray(np.flip(x, axes))  # noqa: E731
        return mean_over_flips(predict, batch, self.flips(tta), flip)[0]

    def _predict_one(self, image: np.ndarray, tile: TileOptions | None, bucket: bool) -> np.ndarray:
        if self.fixed_shape is not None:
            tile = TileOptions(
                tile=self.fixed_shape,
                overlap=tile.overlap if tile else None,
                blend=tile.blend if tile else "gaussian",
                batch_size=tile.batch_size if tile else 4,
                border=tile.border if tile else 0,
            )
            image, crop = _pad_to_at_least(image, self.fixed_shape)
            return self._tiled(image, tile)[crop]
        if tile is None:
            pad = tiling.pad_to_bucket if bucket else tiling.pad_to_multiple
            padded, crop = pad(image, self.align)
            return self.predict_batch(padded[None])[0][crop]
        return self._tiled(image, tile, bucket)

    def check_tile(self, tile: TileOptions | None) -> None:
        """A ValueError when a tile size is asked of an ONNX artifact, whose tile is its size."""
        if tile is None or self.fixed_shape is None:
            return
        asked = (tile.tile,) * self.spatial_dims if isinstance(tile.tile, int) else tile.tile
        if tuple(asked) != self.fixed_shape:
            size = "x".join(map(str, self.fixed_shape))
            raise ValueError(
                f"tile {tile.tile}: {self.path} takes {size} only and tiles with it; omit the "
                "tile size, or export another artifact with --image-size"
            )

    def _tiled(self, image: np.ndarray, tile: TileOptions, bucket: bool = False) -> np.ndarray:
        if self.normalization.kind == "zscore_image":
            logger.warning(
                "%s normalises each input by its own statistics: tiles are normalised one by "
                "one, not as the whole image",
                self.path,
            )
        return tiling.predict_with_options(
            self.predict_batch, image, tile, align=self.align, fixed_shape=bucket
        )

    def check_image(self, image: np.ndarray, name: str = "image") -> None:
        """Raises a ValueError naming `name` when `image` is not (*spatial, in_channels)."""
        expected = f"a {self.spatial_dims}D image with {self.in_channels} channels last"
        if image.ndim != self.spatial_dims + 1:
            raise ValueError(
                f"{name}: shape {image.shape} has rank {image.ndim}; expected {expected}"
            )
        if image.shape[-1] != self.in_channels:
            raise ValueError(
                f"{name}: shape {image.shape} has {image.shape[-1]} channels; the model expects "
                f"{self.in_channels} ({expected})"
            )

    def postprocess(
        self, probabilities: np.ndarray, *, threshold: float | None = None, min_size: int = 0
    ) -> np.ndarray:
        """Labels (see `postprocess.postprocess`); threshold defaults to the sidecar's."""
        return labels_from_probabilities(
            probabilities,
            output_activation=self.output_activation,
            threshold=self.threshold if threshold is None else threshold,
            min_size=min_size,
        )


def _pad_to_at_least(image: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, tuple]:
    """Mirror-pads the spatial axes at their end up to `shape` where smaller; and the crop."""
    spatial = image.shape[:-1]
    padding = [(0, max(target - size, 0)) for size, target in zip(spatial, shape, strict=True)]
    crop = tuple(slice(0, size) for size in spatial)
    if not any(after for _, after in padding):
        return image, crop
    mode = "reflect" if min(spatial) > 1 else "edge"  # numpy reflects repeatedly past the size
    return np.pad(image, [*padding, (0, 0)], mode=mode), crop


def load_artifact(path: str | os.PathLike) -> ArtifactRunner:
    """An `ArtifactRunner` for the .stablehlo or .onnx file at `path` and its sidecar.

    One-line ValueErrors for a missing sidecar, a truncated or corrupt file, or a file the
    runtime cannot read.
    """
    path = os.fspath(path)
    if artifact_format.artifact_format(path) is None:
        raise ValueError(f"{path}: an artifact file ends in .stablehlo or .onnx")
    sidecar = artifact_format.read_sidecar(path)
    loader = _stablehlo_runner if sidecar["format"] == "stablehlo" else _onnx_runner
    runner = ArtifactRunner(path, sidecar, loader(path, sidecar))
    logger.info("loaded %s", runner.describe())
    return runner


def runs_here(platforms: Sequence[str]) -> bool:
    """Whether code lowered for `platforms` runs on this machine's default device (jax calls
    a CUDA or ROCm device's platform "gpu")."""
    import jax

    platform = jax.devices()[0].platform
    served = {"cuda", "rocm"} if platform == "gpu" else {platform}
    return bool(served & set(platforms))


def _stablehlo_runner(path: str, sidecar: dict[str, Any]) -> Callable[..., np.ndarray]:
    import jax
    import jax.numpy as jnp

    with open(path, "rb") as f:
        blob = f.read()
    try:
        exported = jax.export.deserialize(bytearray(blob))
    except Exception as error:  # flatbuffers raises assorted errors on bad bytes
        raise ValueError(
            f"{path}: not a readable StableHLO artifact ({type(error).__name__}: {error}); "
            "export it again"
        ) from None
    if not runs_here(exported.platforms):
        platform = jax.devices()[0].platform
        raise ValueError(
            f"{path} was exported for {', '.join(exported.platforms)}, not this {platform}; "
            "export it again with --platforms naming this machine's"
        )
    labels = sidecar["output"].get("labels") is not None

    def probabilities(images):
        outputs = exported.call(images)
        return outputs[0] if labels else outputs

    def run(images, flips):
        return mean_over_flips(probabilities, images, flips, jnp.flip)

    return jax.jit(run, static_argnames="flips")


def _onnx_runner(path: str, sidecar: dict[str, Any]) -> Callable[..., np.ndarray]:
    try:
        import onnxruntime
    except ImportError:
        raise ImportError(
            f"{path}: running an ONNX artifact needs onnxruntime; pip install 'unetjax[deploy]'"
        ) from None
    try:
        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime's own exception types (InvalidProtobuf, Fail)
        raise ValueError(
            f"{path}: onnxruntime cannot read it ({type(error).__name__}: {error}); export it again"
        ) from None
    name = sidecar["input"]["name"]

    def probabilities(images):
        return session.run(["probabilities"], {name: images})[0]

    def run(images, flips):
        flip = lambda x, axes: np.ascontiguousarray(np.flip(x, axes))  # noqa: E731
        return mean_over_flips(probabilities, images, flips, flip)

    return run
