"""A run directory on disk: where its config, checkpoints and reports live.

Layout of a run's workdir:
  config.json         the full config, with the data-derived model fields filled in
  checkpoints/<step>/ Orbax checkpoints (see `unetjax.checkpoint`)
  metrics.jsonl       one JSON object per logged step or evaluation
  tensorboard/        TensorBoard event files
  overlays/           prediction overlays of validation images, per evaluation
  dataset_summary.json, splits.json   what was trained on (samples, sizes, classes; stems)
  thresholds.json     the thresholds `evaluate --sweep` chose, per depth and mode
"""

from __future__ import annotations

import json
import os

import ml_collections

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
METRICS_FILE = "metrics.jsonl"
DATASET_SUMMARY_FILE = "dataset_summary.json"
SPLITS_FILE = "splits.json"  # file stems per split, for folder datasets


def checkpoint_dir(workdir: str | os.PathLike) -> str:
    return os.path.join(os.fspath(workdir), CHECKPOINT_DIR)


def save_config(workdir: str | os.PathLike, config: ml_collections.ConfigDict) -> None:
    """Writes config.json atomically (a temporary file renamed over the old one)."""
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(os.fspath(workdir), CONFIG_FILE)
    with open(path + ".tmp", "w") as f:
        f.write(config.to_json_best_effort(indent=2, sort_keys=True))
    os.replace(path + ".tmp", path)


def save_json(workdir: str | os.PathLike, name: str, payload) -> None:
    """Writes `name` in the run directory atomically."""
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(os.fspath(workdir), name)
    with open(path + ".tmp", "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True)
    os.replace(path + ".tmp", path)


def load_config(workdir: str | os.PathLike) -> ml_collections.ConfigDict:
    path = os.path.join(os.fspath(workdir), CONFIG_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} not found: expected a run directory written by train.py (or an exported model)"
        )
    with open(path) as f:
        return ml_collections.ConfigDict(json.load(f))


def last_record(workdir: str | os.PathLike, *, split: str) -> dict | None:
    """The last metrics.jsonl record of `split` ("train" or "val"), or None."""
    path = os.path.join(os.fspath(workdir), METRICS_FILE)
    if not os.path.isfile(path):
        return None
    last = None
    with open(path) as f:
        for line in f:
            record = json.loads(line)
            if record.get("split") == split:
                last = record
    return last


# Keys a rerun may change and still resume: how long to train, how often to log, evaluate and
# save, how the work is spread and shown. Anything else (model, data, optimiser, seed) would
# silently mix two experiments in one directory.
RESUMABLE_KEYS = (
    "train.num_steps",
    "train.log_every",
    "train.eval_every",
    "train.checkpoint_every",
    "train.keep_latest",
    "train.num_overlays",
    "train.stop_after_steps",
    "train.early_stopping_patience",
    "train.eval_batch_size",
    "train.progress_bar",
    "train.distributed",
    "train.coordinator_address",
    "train.num_processes",
    "train.process_id",
    "data.data_dir",
    "data.num_threads",
    "data.prefetch",
)
# Model fields filled in from the dataset: a config that leaves them unset means "from the data".
DERIVED_KEYS = (
    "model.in_channels",
    "model.num_classes",
    "model.output_activation",
    "model.spatial_dims",
)
PATH_KEYS = ("data.manual_dir", "data.data_dir")
# Sections computed from the data (normalisation statistics): compared once they are known.
DERIVED_SECTIONS = ("normalization.",)


class RunDirectoryError(ValueError):
    """The run directory cannot be used as asked (exit code 2 from the commands)."""


def check_workdir(workdir: str | os.PathLike) -> None:
    """Fails at once, before any data is prepared, when `workdir` cannot hold a run."""
    path = os.path.abspath(os.fspath(workdir))
    if os.path.exists(path) and not os.path.isdir(path):
        raise RunDirectoryError(f"--workdir {path} is a file; give a directory for the run")
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
        raise RunDirectoryError(
            f"--workdir {path}: {existing} is not a writable directory; choose another --workdir"
        )


def absolute_paths(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A copy with data paths made absolute, so the saved run works from any directory."""
    config = ml_collections.ConfigDict(config.to_dict())
    for key in PATH_KEYS:
        section, field = key.split(".")
        value = config[section].get(field)
        if value:
            config[section][field] = os.path.abspath(os.path.expanduser(value))
    return config


def _flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = list(value) if isinstance(value, tuple) else value
    return flat


def changed_keys(saved: dict, wanted: dict) -> list[tuple[str, object, object]]:
    """(key, saved value, wanted value) for every key a resume may not change.

    Derived model fields left unset in `wanted` are not compared (the data decides them).
    """
    old, new = _flatten(saved), _flatten(wanted)
    changes = []
    for key in sorted(set(old) | set(new)):
        if key in RESUMABLE_KEYS or key.startswith("export."):
            continue
        derived = key in DERIVED_KEYS or key.startswith(DERIVED_SECTIONS)
        if derived and new.get(key) is None:
            continue
        before, after = old.get(key), new.get(key)
        if before != after:
            changes.append((key, before, after))
    return changes


def check_resume(workdir: str | os.PathLike, config: ml_collections.ConfigDict) -> None:
    """Refuses to resume a run whose saved config differs from `config` beyond RESUMABLE_KEYS,
    naming each changed key (old -> new) and the way out."""
    path = os.path.join(os.fspath(workdir), CONFIG_FILE)
    if not os.path.isfile(path):
        return
    with open(path) as f:
        saved = json.load(f)
    wanted = json.loads(absolute_paths(config).to_json_best_effort())
    changes = changed_keys(saved, wanted)
    if changes:
        listed = "; ".join(f"{key}: {before!r} -> {after!r}" for key, before, after in changes)
        raise RunDirectoryError(
            f"{os.fspath(workdir)} holds a run with another config ({listed}); resume it with its "
            f"own config, or start this one elsewhere with --workdir"
        )


THRESHOLDS_FILE = "thresholds.json"


def save_thresholds(
    workdir: str | os.PathLike, step: int, split: str, best: dict[tuple[int, str], float]
) -> None:
    """Records `evaluate --sweep`'s best sigmoid threshold per (depth, mode) for `step`."""
    path = os.path.join(os.fspath(workdir), THRESHOLDS_FILE)
    record = {
        "step": step,
        "split": split,
        "thresholds": {f"L{depth} {mode}": value for (depth, mode), value in best.items()},
    }
    with open(path + ".tmp", "w") as f:
        json.dump(record, f, indent=2)
    os.replace(path + ".tmp", path)


def chosen_threshold(
    workdir: str | os.PathLike, depth: int, mode: str, step: int
) -> tuple[float, str] | None:
    """The swept threshold for this setting and checkpoint step, with where it came from."""
    path = os.path.join(os.fspath(workdir), THRESHOLDS_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        record = json.load(f)
    value = record["thresholds"].get(f"L{depth} {mode}")
    if value is None or record["step"] != step:
        return None
    return float(value), f"evaluate --sweep on the {record['split']} split at step {step}"
