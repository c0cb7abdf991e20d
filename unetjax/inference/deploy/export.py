"""Export a run pruned to depth L as a self-contained model directory (Orbax)."""

from __future__ import annotations

import logging
import os
import shutil
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from unetjax import checkpoint, rundir
from unetjax.data.volumes import preprocessing as volume_preprocessing
from unetjax.inference.predictor import EXPORT_KEY, load_predictor
from unetjax.nested_unet import Mode

logger = logging.getLogger(__name__)

# Run files an export keeps: what the data were, the chosen thresholds, how volumes are prepared.
EXPORTED_FILES = (
    rundir.DATASET_SUMMARY_FILE,
    rundir.THRESHOLDS_FILE,
    volume_preprocessing.FILE,
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
    if os.path.exists(rundir.checkpoint_dir(out_dir)):
        raise FileExistsError(f"{rundir.checkpoint_dir(out_dir)} exists; export to a new directory")
    _, params, model_state = nnx.split(predictor.model(), nnx.Param, ...)
    state: dict[str, Any] = {"step": jnp.asarray(predictor.step, jnp.int32), "params": params}
    if jax.tree.leaves(model_state):
        state["model_state"] = model_state
    manager = checkpoint.CheckpointManager(rundir.checkpoint_dir(out_dir), keep_latest=1)
    manager.save(predictor.step, state, data_state={})
    manager.wait_until_finished()
    manager.close()
    config = rundir.load_config(path)  # the saved dtype, not a load-time override
    config[EXPORT_KEY] = ml_collections.ConfigDict(
        {
            "depth": depth,
            "mode": mode,
            "source": os.path.abspath(os.fspath(path)),
            "step": predictor.step,
        }
    )
    rundir.save_config(out_dir, config)
    # What predict needs besides the network (e.g. a volume run's spacing and intensity scheme).
    for name in EXPORTED_FILES:
        source = os.path.join(os.fspath(path), name)
        if os.path.isfile(source):
            shutil.copyfile(source, os.path.join(out_dir, name))
    logger.info(
        "exported %s depth %d (%s), %d parameters, to %s",
        path,
        depth,
        mode,
        predictor.num_params,
        out_dir,
    )
    return out_dir
