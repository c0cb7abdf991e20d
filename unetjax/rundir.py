"""A run directory on disk: where its config, checkpoints and reports live.

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

import ml_collections

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"


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
