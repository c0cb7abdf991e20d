"""Inference: pruned predictors, overlap-tile prediction, post-processing and export.

`load_predictor(run, depth=L, mode=...)` restores only the depth-L subgraph of a run and predicts
batches (`predict_batch`) or whole images of any size (`predict`, optionally tiled and mirrored);
`export` writes a self-contained pruned model directory.

The names that need JAX and Flax (the predictor, export) are imported on first use, so
`unetjax.inference.deploy.artifact_runner` (a deployed artifact's runner) loads with numpy and its
runtime alone.
"""

import importlib

from unetjax.inference.postprocess import postprocess, remove_small_components
from unetjax.inference.tiling import TileOptions, predict_tiled
from unetjax.inference.tta import flip_sets

_LAZY = {
    "MODES": "predictor",
    "Predictor": "predictor",
    "available_settings": "predictor",
    "default_tile": "predictor",
    "load_predictor": "predictor",
    "export": "deploy.export",
}

__all__ = [
    "MODES",
    "Predictor",
    "TileOptions",
    "available_settings",
    "default_tile",
    "export",
    "flip_sets",
    "load_predictor",
    "postprocess",
    "predict_tiled",
    "remove_small_components",
]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value  # looked up once
    return value
