"""Deployable artifacts of a pruned predictor: one StableHLO or ONNX file plus a JSON sidecar.

The artifact is the whole inference function, not the bare network: the run's input
normalisation in front (`preprocessing`), the depth-L network in its mode with its parameters
baked in as constants (only the L-subgraph's), probabilities behind and, optionally, the hard
labels (threshold or argmax). Running it needs only its runtime (`artifact_runner`, or the
deployer snippet in docs/inference.md).

StableHLO (`jax.export`): symbolic batch and spatial sizes, the latter multiples of 2^D (per
axis with `model.strides`), so one file serves every image size; lowered for several
platforms (CPU and CUDA by default).
ONNX (jax2onnx): a symbolic batch and a fixed spatial size. jax2onnx 0.17 cannot keep spatial
sizes symbolic through this network (its `nnx.max_pool` rule leaves a symbolic length
unpooled, and the concatenation after it then fails); another size is another export.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from unetjax import backend, rundir
from unetjax.inference import preprocessing
from unetjax.inference.deploy import artifact_format
from unetjax.inference.predictor import Predictor

logger = logging.getLogger(__name__)

STABLEHLO_PLATFORMS = ("cpu", "cuda")
ONNX_OPSET = 17  # onnxruntime >= 1.13 and TensorRT >= 8.6 read it; the ops need no newer one
INPUT_NAME = "image"
VERIFY_TOLERANCE = 1e-4


def deployable_function(
    predictor: Predictor,
    *,
    normalization: preprocessing.Normalization,
    threshold: float = 0.5,
    labels: bool = False,
) -> Callable[[jax.Array], Any]:
    """`f(images)` -> probabilities, or (probabilities, labels) with `labels`.

    images: (B, *spatial, C) float32 in [0, 1] as `image_io` reads them; normalised inside.
    labels: uint8; sigmoid: `probabilities >= threshold`, (B, *spatial) for one class, else
    (B, *spatial, K); softmax: the argmax class, (B, *spatial).
    """
    network = predictor.network_function()
    state = jax.device_get(predictor.state)  # host constants: no device or sharding baked in
    activation = predictor.output_activation

    def deployed(images):
        probabilities = network(state, preprocessing.normalize(images, normalization))
        if not labels:
            return probabilities
        if activation == "softmax":
            hard = jnp.argmax(probabilities, axis=-1)
        else:
            hard = probabilities >= threshold
            if hard.shape[-1] == 1:
                hard = hard[..., 0]
        return probabilities, hard.astype(jnp.uint8)

    return deployed


def export_stablehlo(
    predictor: Predictor,
    path: str | os.PathLike,
    *,
    threshold: float = 0.5,
    labels: bool = False,
    platforms: Sequence[str] | None = STABLEHLO_PLATFORMS,
    normalization: preprocessing.Normalization | None = None,
) -> dict[str, Any]:
    """Writes `path` (.stablehlo) and its sidecar; returns the sidecar's fields.

    platforms: what to lower for ("cpu", "cuda", "rocm", "tpu"); None: this machine's.
    """
    path = _check_path(path, "stablehlo")
    normalization = normalization or preprocessing.normalization_from_config(predictor.config)
    function = deployable_function(
        predictor, normalization=normalization, threshold=threshold, labels=labels
    )
    spatial = ("d", "h", "w")[-predictor.spec.spatial_dims :]
    shape = jax.export.symbolic_shape(
        ", ".join(["b", *(f"{a}*{axis}" for a, axis in zip(predictor.align, spatial, strict=True))])
        + f", {predictor.spec.in_channels}"
    )
    exported = jax.export.export(
        jax.jit(function), platforms=None if platforms is None else tuple(platforms)
    )(jax.ShapeDtypeStruct(shape, jnp.float32))
    with open(path, "wb") as f:
        f.write(exported.serialize())
    runtime = {"platforms": list(exported.platforms), "jax": jax.__version__}
    return _finish(
        predictor,
        path,
        "stablehlo",
        spatial_size={"multiple_of": multiple_of(predictor.align)},
        normalization=normalization,
        threshold=threshold,
        labels=labels,
        runtime=runtime,
    )


def export_onnx(
    predictor: Predictor,
    path: str | os.PathLike,
    *,
    spatial_shape: Sequence[int],
    threshold: float = 0.5,
    labels: bool = False,
    opset: int = ONNX_OPSET,
    normalization: preprocessing.Normalization | None = None,
) -> dict[str, Any]:
    """Writes `path` (.onnx, one self-contained file) for inputs (B, *spatial_shape, C), any B,
    and its sidecar; returns the sidecar's fields."""
    try:
        import jax2onnx
        import onnx
    except ImportError as error:
        raise ImportError(
            f"ONNX export needs jax2onnx and onnx ({error}); pip install 'unetjax[deploy]'"
        ) from None
    path = _check_path(path, "onnx")
    spatial_shape = check_spatial_shape(spatial_shape, predictor.spec.spatial_dims, predictor.align)
    normalization = normalization or preprocessing.normalization_from_config(predictor.config)
    function = deployable_function(
        predictor, normalization=normalization, threshold=threshold, labels=labels
    )
    try:
        # jax2onnx reads no platform_dependent: the CPU's forms, which it converts.
        with backend.forms_for("cpu"):
            model = jax2onnx.to_onnx(
                function,
                [("B", *spatial_shape, predictor.spec.in_channels)],
                model_name=f"unetjax_L{predictor.depth}_{predictor.mode}",
                opset=opset,
                input_names=[INPUT_NAME],
                output_names=_output_names(labels),
            )
    except Exception as error:  # jax2onnx raises whatever its op rules raise
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ValueError(
            f"jax2onnx {_version('jax2onnx')} cannot convert this network "
            f"({type(error).__name__}: {first_line}); linear interpolation "
            "(upsample='interpolate', UNet 3+) does not convert yet: use --format stablehlo"
        ) from None
    # jax2onnx 0.17 annotates some intermediate tensors with wrong shapes (a max-pool's NCHW
    # output with its NHWC shape), which onnxruntime warns about on every load; the annotations
    # are optional, so they are dropped and the checker confirms the model is still complete.
    del model.graph.value_info[:]
    onnx.checker.check_model(model, full_check=True)
    onnx.save_model(model, path)
    runtime = {
        "opset": opset,
        "jax2onnx": _version("jax2onnx"),
        "onnx": onnx.__version__,
    }
    return _finish(
        predictor,
        path,
        "onnx",
        spatial_size={"fixed": list(spatial_shape)},
        normalization=normalization,
        threshold=threshold,
        labels=labels,
        runtime=runtime,
    )


def multiple_of(align: Sequence[int]) -> int | list[int]:
    """The sidecar's `multiple_of`: one int when every axis has the same (as before per-axis
    pooling), else one per axis."""
    return int(align[0]) if len(set(align)) == 1 else [int(a) for a in align]


def check_spatial_shape(
    shape: Sequence[int], spatial_dims: int, align: Sequence[int]
) -> tuple[int, ...]:
    """`shape` as a tuple of `spatial_dims` positive multiples of `align` (per axis), or a
    ValueError."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != spatial_dims:
        raise ValueError(f"image size {shape}: a {spatial_dims}D model needs {spatial_dims} sizes")
    bad = [s for s, a in zip(shape, align, strict=True) if s < 1 or s % a]
    if bad:
        what = f"2^D = {align[0]}" if len(set(align)) == 1 else f"{tuple(align)} per axis"
        nearest = tuple(max(a, -(-s // a) * a) for s, a in zip(shape, align, strict=True))
        raise ValueError(
            f"image size {shape}: every size must be a positive multiple of {what} (e.g. {nearest})"
        )
    return shape


def verify(
    predictor: Predictor, path: str | os.PathLike, *, tolerance: float = VERIFY_TOLERANCE
) -> float:
    """Runs the artifact at `path` through its own runtime on a random batch and returns the
    largest difference from `predictor.predict_batch`; a RuntimeError above `tolerance`."""
    from unetjax.inference.deploy import artifact_runner

    runner = artifact_runner.load_artifact(path)
    shape = runner.fixed_shape or predictor.align
    images = np.random.default_rng(0).random((2, *shape, predictor.spec.in_channels), np.float32)
    difference = float(
        np.max(np.abs(runner.predict_batch(images) - _reference(predictor, images, runner)))
    )
    if not difference <= tolerance:
        raise RuntimeError(
            f"{path}: the artifact differs from the in-process predictor by {difference:.2e} "
            f"(> {tolerance:.0e}); please report this with the run's config"
        )
    return difference


def _reference(predictor: Predictor, images: np.ndarray, runner) -> np.ndarray:
    """The predictor's probabilities for the artifact's input, normalised as the artifact does."""
    normalized = preprocessing.normalize(images, runner.normalization)
    return predictor.predict_batch(np.asarray(normalized, np.float32))


def _check_path(path: str | os.PathLike, fmt: str) -> str:
    path = os.fspath(path)
    if artifact_format.artifact_format(path) != fmt:
        raise ValueError(f"--output {path}: a {fmt} artifact's file name ends in .{fmt}")
    if os.path.exists(path):
        raise FileExistsError(f"{path} exists; export to a new file")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return path


def _output_names(labels: bool) -> list[str]:
    return ["probabilities", "labels"] if labels else ["probabilities"]


def _version(package: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _finish(
    predictor: Predictor,
    path: str,
    fmt: str,
    *,
    spatial_size: dict[str, Any],
    normalization: preprocessing.Normalization,
    threshold: float,
    labels: bool,
    runtime: dict[str, Any],
) -> dict[str, Any]:
    """Writes the sidecar of the model file at `path` and returns its fields."""
    config = predictor.config
    dims = predictor.spec.spatial_dims
    layout = "NDHW" if dims == 3 else "NHW"
    activation = predictor.output_activation
    if not labels:
        labels_rule = None
    elif activation == "softmax":
        labels_rule = "argmax over classes, uint8 (0 is background)"
    else:
        labels_rule = "probabilities >= threshold, uint8 (class axis dropped for one class)"
    fields = {
        "format": fmt,
        "input": {
            "name": INPUT_NAME,
            "layout": layout + "C",
            "dtype": "float32",
            "channels": predictor.spec.in_channels,
            "value_range": [0.0, 1.0],
            "color_mode": (config.get("data", None) or {}).get("color_mode", "auto"),
            "resize": (config.get("data", None) or {}).get("resize"),
            "spatial_dims": dims,
            "batch": "any",
            "spatial_size": spatial_size,
        },
        "normalization": normalization.to_json(),
        "output": {
            "names": _output_names(labels),
            "activation": activation,
            "classes": predictor.spec.num_classes,
            "layout": layout + "K",
            "threshold": float(threshold),
            "labels": labels_rule,
        },
        "model": {
            "architecture": config.model.get("architecture"),
            "depth": predictor.depth,
            "full_depth": predictor.full_depth,
            # Per-axis pooling (None: every axis by 2 per level); the runner's alignment.
            "strides": None
            if predictor.spec.strides is None
            else [list(s) for s in predictor.spec.strides],
            "mode": predictor.mode,
            "parameters": predictor.num_params,
            "step": predictor.step,
            "compute_dtype": np.dtype(predictor.spec.dtype or np.float32).name,
            "source": os.path.abspath(predictor.model_dir),
        },
        "config_sha256": artifact_format.config_sha256(rundir.load_config(predictor.model_dir)),
        "runtime": runtime,
    }
    artifact_format.write_sidecar(path, fields)
    logger.info(
        "wrote %s (%s, L%d %s, %d parameters, %d bytes)",
        path,
        fmt,
        predictor.depth,
        predictor.mode,
        predictor.num_params,
        os.path.getsize(path),
    )
    return artifact_format.read_sidecar(path)
