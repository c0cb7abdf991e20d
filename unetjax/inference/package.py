"""A model package to share: one folder that loads anywhere with `unetjax.load_pretrained`.

    unetjax-export --model runs/cells --package cells_model [--with-artifacts]

Layout of a package (a run directory's files that inference reads, and the weights without
Orbax, so it can live in a Hugging Face Hub repository):
  unetjax_package.json  what the package is: format version, step, source run, architecture,
                        input channels and their names, output classes, normalisation,
                        thresholds, the default setting, the evaluation and artifact files
  model.safetensors     the run's parameters and batch statistics, one tensor per state path
                        ("params/nodes/x_0_1/conv1/conv/kernel", "model_state/.../mean")
  config.json           the run's config (model, data, normalisation statistics)
  dataset_summary.json, thresholds.json, preprocessing.json, deploy.json   as in the run
  evaluation/<split>/   the run's `evaluate` output (summary.json, evaluation.json, .md)
  artifacts/            with --with-artifacts: the default setting as a StableHLO file
  README.md             the model card (`model_card.write`)

`load_predictor(package)` restores from model.safetensors instead of a checkpoint
(`package_weights.restore`),
so a package predicts exactly what its run does, at any depth and mode the run could.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from typing import Any

import jax
from flax import nnx

from unetjax import checkpoint, models, nested_unet, progress, rundir
from unetjax.data.volumes import preprocessing as volume_preprocessing
from unetjax.inference import predictor as predictor_lib
from unetjax.inference.deploy import deploy_choice
from unetjax.inference.package_weights import (
    MANIFEST_FILE,
    WEIGHTS_FILE,
    flat_tensors,
    is_package,
)

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
EVALUATION_DIR = "evaluation"
ARTIFACTS_DIR = "artifacts"
# Run files a package keeps: what the data were, the chosen thresholds and setting, how volumes
# are prepared. The evaluation files are copied per split (EVALUATION_FILES).
RUN_FILES = (
    rundir.DATASET_SUMMARY_FILE,
    rundir.THRESHOLDS_FILE,
    volume_preprocessing.FILE,
    deploy_choice.DEPLOY_FILE,
)
EVALUATION_FILES = ("summary.json", "evaluation.json", "evaluation.md")
STATE_KEYS = ("params", "model_state")


def _held_state(run_dir: str, config, step: int) -> dict[str, nnx.State]:
    """Everything the run (or export) can predict with: the full network's state, or an
    export's subgraph."""
    full = nnx.eval_shape(lambda: models.from_config(config.model))
    export = config.get("export")
    held = nested_unet.pruned_abstract(full, export.depth, export.mode) if export else full
    _, params, model_state = nnx.split(held, nnx.Param, ...)
    target = {"params": params}
    if jax.tree.leaves(model_state):
        target["model_state"] = model_state
    return checkpoint.restore_subtree(rundir.checkpoint_dir(run_dir), target, step)


def _channel_names(config, preprocessing: dict | None) -> list[str]:
    if preprocessing and preprocessing.get("channel_names"):
        return list(preprocessing["channel_names"])
    channels = config.model.in_channels
    return {1: ["gray"], 3: ["red", "green", "blue"]}.get(
        channels, [f"channel {c}" for c in range(channels)]
    )


def _output_names(config, dataset_summary: dict | None) -> list[str]:
    """One name per output channel: every class for softmax, the foreground for a binary
    sigmoid, each label for multi-label."""
    names = [c["name"] for c in (dataset_summary or {}).get("classes") or []]
    count = config.model.num_classes
    if config.model.output_activation == "sigmoid" and count == 1:
        return names[1:2] or ["foreground"]
    return names[:count] if len(names) >= count else [f"class {k}" for k in range(count)]


def _read_json(path: str) -> dict | None:
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def _thresholds(run_dir: str, step: int) -> dict[str, float] | None:
    """`evaluate --sweep`'s thresholds per setting ("L2 fast": 0.45), if swept at this step."""
    record = _read_json(os.path.join(run_dir, rundir.THRESHOLDS_FILE))
    return record["thresholds"] if record and record.get("step") == step else None


def _copy_evaluations(run_dir: str, out_dir: str, step: int) -> dict[str, dict]:
    """Copies each eval_<split>/ report of this step; returns {split: {"step", "files"}}."""
    copied = {}
    for name in sorted(os.listdir(run_dir)):
        source = os.path.join(run_dir, name)
        summary = _read_json(os.path.join(source, "summary.json"))
        if not name.startswith("eval_") or summary is None:
            continue
        if summary.get("step") != step:
            logger.warning("%s evaluates step %s, not %d: left out", source, summary["step"], step)
            continue
        target = os.path.join(out_dir, EVALUATION_DIR, summary["split"])
        os.makedirs(target, exist_ok=True)
        files = [f for f in EVALUATION_FILES if os.path.isfile(os.path.join(source, f))]
        for file in files:
            shutil.copyfile(os.path.join(source, file), os.path.join(target, file))
        copied[summary["split"]] = {"step": step, "files": files}
    return copied


def write(
    run_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    step: int | None = None,
    with_artifacts: bool = False,
    license: str = "other",
    show_progress: bool = True,
) -> dict[str, Any]:
    """Writes the package of `run_dir` (a run or an export) into the new folder `out_dir`;
    returns its manifest."""
    from safetensors.numpy import save_file

    from unetjax.inference import model_card

    run_dir, out_dir = os.fspath(run_dir), os.fspath(out_dir)
    if os.path.exists(out_dir) and os.listdir(out_dir):
        raise FileExistsError(f"{out_dir} exists and is not empty; package into a new folder")
    if is_package(run_dir):
        raise ValueError(f"{run_dir} is a model package already: share the folder as it is")
    config = rundir.load_config(run_dir)
    step = checkpoint.resolve_step(rundir.checkpoint_dir(run_dir), step)
    bar = progress.bar(
        total=4 if with_artifacts else 3,
        unit="part",
        desc="packaging",
        enabled=show_progress,
        leave=False,
    )
    tensors = flat_tensors(_held_state(run_dir, config, step))
    os.makedirs(out_dir, exist_ok=True)
    save_file(tensors, os.path.join(out_dir, WEIGHTS_FILE), metadata={"step": str(step)})
    bar.update()
    rundir.save_config(out_dir, config)
    for name in RUN_FILES:
        if os.path.isfile(os.path.join(run_dir, name)):
            shutil.copyfile(os.path.join(run_dir, name), os.path.join(out_dir, name))
    evaluations = _copy_evaluations(run_dir, out_dir, step)
    bar.update()
    dataset_summary = _read_json(os.path.join(run_dir, rundir.DATASET_SUMMARY_FILE))
    preprocessing = _read_json(os.path.join(run_dir, volume_preprocessing.FILE))
    setting = deploy_choice.resolve(run_dir, None, None)
    if setting.depth is None:
        depth = max(d for d, m in predictor_lib.available_settings(config) if m == setting.mode)
        setting = dataclasses.replace(setting, depth=depth)
    manifest: dict[str, Any] = {
        "format": "unetjax-package",
        "format_version": FORMAT_VERSION,
        "step": step,
        "source": os.path.abspath(run_dir),
        "architecture": config.model.architecture,
        "spatial_dims": config.model.spatial_dims,
        "depth": config.model.depth,
        "in_channels": config.model.in_channels,
        "channel_names": _channel_names(config, preprocessing),
        "output_activation": config.model.output_activation,
        "output_names": _output_names(config, dataset_summary),
        "normalization": config.get("normalization", {}).to_dict()
        if config.get("normalization")
        else None,
        "volume_preprocessing": volume_preprocessing.FILE if preprocessing else None,
        "thresholds": _thresholds(run_dir, step),
        "default_setting": {
            "depth": setting.depth,
            "mode": setting.mode,
            "threshold": setting.threshold,
            "reason": setting.reason,
        },
        "license": license,
        "weights": {"file": WEIGHTS_FILE, "tensors": len(tensors)},
        "evaluations": evaluations,
        "artifacts": [],
    }
    rundir.save_json(out_dir, MANIFEST_FILE, manifest)  # the artifacts load the package
    if with_artifacts:
        manifest["artifacts"] = _write_artifacts(out_dir, setting)
        rundir.save_json(out_dir, MANIFEST_FILE, manifest)
        bar.update()
    model_card.write(out_dir, manifest, config)
    bar.update()
    bar.close()
    logger.info("packaged %s step %d into %s", run_dir, step, out_dir)
    return manifest


def _write_artifacts(out_dir: str, setting: deploy_choice.Setting) -> list[str]:
    """The default setting as a StableHLO artifact (and its sidecar), loaded from the package
    itself so it holds exactly the packaged weights."""
    from unetjax.inference.deploy import artifact, artifact_format

    predictor = predictor_lib.load_predictor(out_dir, depth=setting.depth, mode=setting.mode)
    threshold, _ = deploy_choice.resolve_threshold(out_dir, predictor, setting)
    os.makedirs(os.path.join(out_dir, ARTIFACTS_DIR), exist_ok=True)
    name = os.path.join(ARTIFACTS_DIR, f"model_L{predictor.depth}_{predictor.mode}.stablehlo")
    artifact.export_stablehlo(predictor, os.path.join(out_dir, name), threshold=threshold)
    sidecar = artifact_format.sidecar_path(os.path.join(out_dir, name))
    return [name, os.path.relpath(sidecar, out_dir)]


def local_path(name_or_path: str | os.PathLike, *, revision: str | None = None) -> str:
    """A local package folder as given, or a Hugging Face Hub repository id downloaded
    (`huggingface_hub.snapshot_download`, cached) to a local folder."""
    path = os.fspath(name_or_path)
    if os.path.isdir(path):
        return path
    if os.path.exists(path) or path.startswith((".", "/", "~")) or path.count("/") != 1:
        raise FileNotFoundError(
            f"{path}: no such model package folder (nor a Hugging Face Hub id like 'user/model')"
        )
    try:
        import huggingface_hub
    except ImportError:
        raise ImportError(
            f"{path} is not a local folder; loading it from the Hugging Face Hub needs "
            "huggingface_hub (pip install huggingface_hub)"
        ) from None
    try:
        return huggingface_hub.snapshot_download(repo_id=path, revision=revision)
    except Exception as error:  # offline, unknown repository, no access: one line for the user
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise OSError(
            f"{path}: not a local folder, and the Hugging Face Hub download failed "
            f"({type(error).__name__}: {first})"
        ) from None


def load_pretrained(
    name_or_path: str | os.PathLike,
    *,
    depth: int | None = None,
    mode: str = "fast",
    dtype: str | None = None,
    revision: str | None = None,
):
    """The predictor of a model package: a folder, or a Hugging Face Hub repository id.

    Arguments as `inference.load_predictor`'s (depth None: the deepest), which it returns for
    the package: the predictor its run gives. `unetjax-predict --model PACKAGE` follows the
    package's deploy.json instead, as it does for a run.
    """
    path = local_path(name_or_path, revision=revision)
    if not is_package(path):
        raise FileNotFoundError(
            f"{path}: no {MANIFEST_FILE}; expected a folder written by `unetjax-export --package`"
        )
    return predictor_lib.load_predictor(path, depth=depth, mode=mode, dtype=dtype)
