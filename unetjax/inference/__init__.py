"""Inference: pruned predictors, overlap-tile prediction, post-processing and export.

`load_predictor(run, depth=L, mode=...)` restores only the depth-L subgraph of a run and predicts
batches (`predict_batch`) or whole images of any size (`predict`, optionally tiled and mirrored);
`export` writes a self-contained pruned model directory.
"""

from unetjax.inference.export import export
from unetjax.inference.postprocess import postprocess, remove_small_components
from unetjax.inference.predictor import (
    MODES,
    Predictor,
    available_settings,
    flip_sets,
    load_predictor,
)
from unetjax.inference.tiling import TileOptions, predict_tiled

__all__ = [
    "MODES",
    "Predictor",
    "TileOptions",
    "available_settings",
    "export",
    "flip_sets",
    "load_predictor",
    "postprocess",
    "predict_tiled",
    "remove_small_components",
]
