"""The depth picker: the most accurate (L, mode) within a latency budget, kept in deploy.json.

`evaluate --sweep --latency-budget-ms X` measures every setting's latency on this device and its
validation IoU at its best threshold; `choose` picks the most accurate one within the budget
(ties: the faster) and `write` stores it in the run directory. `export` and `predict` call
`resolve`, which uses deploy.json when the user names neither a depth nor a mode.

deploy.json: {depth, mode, threshold, latency_ms, budget_ms, image_size, device,
validation_iou, step, considered: [{depth, mode, latency_ms, validation_iou}, ...]}.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from unetjax import rundir

DEPLOY_FILE = "deploy.json"
REQUIRED = ("depth", "mode", "threshold", "latency_ms", "budget_ms", "device", "validation_iou")


@dataclasses.dataclass(frozen=True)
class Setting:
    """What to load: depth (None: the deepest available), mode, threshold (None: the caller's
    default) and why, in words for the command's output."""

    depth: int | None
    mode: str
    threshold: float | None
    reason: str


def deploy_path(model_dir: str | os.PathLike) -> str:
    return os.path.join(os.fspath(model_dir), DEPLOY_FILE)


def validation_iou(row: dict[str, Any], split: str) -> float:
    """A setting's validation IoU at its best threshold (sigmoid: the sweep's best; softmax:
    its IoU, which needs the validation split)."""
    if "sweep" in row:
        return float(row["sweep"]["validation_iou"])
    if split != "validation":
        raise ValueError(
            "choosing a setting needs validation IoU: evaluate a softmax model with "
            "--split validation"
        )
    return float(row["iou"])


def choose(report: dict[str, Any], budget_ms: float, image_size: Sequence[int]) -> dict[str, Any]:
    """The most accurate row of an evaluation report whose latency is within `budget_ms`.

    A ValueError naming the fastest setting when none fits.
    """
    rows = report["results"]
    considered = [
        {
            "depth": row["depth"],
            "mode": row["mode"],
            "latency_ms": float(row["latency_ms"]),
            "validation_iou": validation_iou(row, report["split"]),
        }
        for row in rows
    ]
    within = [c for c in considered if c["latency_ms"] <= budget_ms]
    if not within:
        fastest = min(considered, key=lambda c: c["latency_ms"])
        raise ValueError(
            f"no setting runs within {budget_ms:g} ms at {_size(image_size)} on "
            f"{report['device']}: the fastest is L{fastest['depth']} {fastest['mode']} at "
            f"{fastest['latency_ms']:.2f} ms; raise --latency-budget-ms or use a smaller "
            "--image-size"
        )
    best = max(within, key=lambda c: (c["validation_iou"], -c["latency_ms"]))
    row = next(r for r in rows if (r["depth"], r["mode"]) == (best["depth"], best["mode"]))
    threshold = row["sweep"]["best_threshold"] if "sweep" in row else None
    return {
        "depth": best["depth"],
        "mode": best["mode"],
        "threshold": threshold,
        "latency_ms": best["latency_ms"],
        "budget_ms": float(budget_ms),
        "image_size": [int(s) for s in image_size],
        "device": report["device"],
        "validation_iou": best["validation_iou"],
        "step": report.get("step"),
        "considered": considered,
    }


def write(model_dir: str | os.PathLike, choice: dict[str, Any]) -> str:
    path = deploy_path(model_dir)
    with open(path + ".tmp", "w") as f:
        json.dump(choice, f, indent=2)
        f.write("\n")
    os.replace(path + ".tmp", path)
    return path


def read(model_dir: str | os.PathLike) -> dict[str, Any] | None:
    """deploy.json of a run directory, or None when there is none (or `model_dir` is a file)."""
    path = deploy_path(model_dir)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            choice = json.load(f)
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(
            f"{path}: not readable JSON ({error}); delete it or rerun evaluate"
        ) from None
    missing = [key for key in REQUIRED if key not in choice]
    if missing:
        raise ValueError(f"{path}: missing {missing}; rerun evaluate --latency-budget-ms")
    return choice


def describe(choice: dict[str, Any], path: str) -> str:
    """Why this setting, in one line."""
    threshold = "" if choice["threshold"] is None else f" at threshold {choice['threshold']:g}"
    return (
        f"{path}: the most accurate setting within {choice['budget_ms']:g} ms at "
        f"{_size(choice.get('image_size') or [])} on {choice['device']} (validation IoU "
        f"{choice['validation_iou']:.4f}{threshold}, {choice['latency_ms']:.2f} ms)"
    )


def resolve(model_dir: str | os.PathLike, depth: int | None, mode: str | None) -> Setting:
    """The setting to load: deploy.json's when neither `depth` nor `mode` is given and the run
    has one, else the given values (mode "fast" by default)."""
    if depth is None and mode is None:
        choice = read(model_dir)
        if choice is not None:
            return Setting(
                depth=int(choice["depth"]),
                mode=choice["mode"],
                threshold=choice["threshold"],
                reason=describe(choice, deploy_path(model_dir)),
            )
        return Setting(None, "fast", None, "the default (no deploy.json): deepest depth, fast")
    return Setting(depth, mode or "fast", None, "as requested")


def resolve_threshold(
    model_dir: str | os.PathLike, predictor: Any, setting: Setting, given: float | None = None
) -> tuple[float, str]:
    """The sigmoid threshold `predictor` (a run's, loaded at `setting`: its config, depth, mode
    and step) serves, and where it came from: `given` (--threshold), else deploy.json's (when
    `setting` came from it), else the one `evaluate --sweep` chose for this depth, mode and step,
    else the training's `train.eval_threshold`, else 0.5. `predict --model RUN`, `export` and
    packages all ask here, so an exported artifact thresholds as predict does."""
    if given is not None:
        return float(given), "--threshold"
    if setting.threshold is not None:
        return float(setting.threshold), "deploy.json"
    swept = rundir.chosen_threshold(model_dir, predictor.depth, predictor.mode, predictor.step)
    if swept is not None:
        return swept
    trained = (predictor.config.get("train", None) or {}).get("eval_threshold")
    if trained is not None:
        return float(trained), "train.eval_threshold"
    return 0.5, "the default"


def timing_image(image_size: Sequence[int] | None, first: np.ndarray) -> np.ndarray:
    """The batch of one image that latency is measured on: `first` (a validation image) or, with
    `image_size`, a random image of that size with its channels."""
    if image_size is None:
        return first
    spatial_dims = first.ndim - 2
    if len(image_size) != spatial_dims:
        raise ValueError(
            f"--image-size {' '.join(map(str, image_size))}: a {spatial_dims}D model needs "
            f"{spatial_dims} sizes"
        )
    shape = (1, *(int(s) for s in image_size), first.shape[-1])
    return np.random.default_rng(0).random(shape).astype(np.float32)


def _size(image_size: Sequence[int]) -> str:
    return "x".join(str(s) for s in image_size) or "the validation images' size"
