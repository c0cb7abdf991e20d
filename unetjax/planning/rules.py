"""The planning rules that need no measurement: optimiser, normalisation, augmentation, 2D or 3D,
how validation is scored, the number of steps for a time budget, and the data fields of a plan
(docs/medical.md)."""

from __future__ import annotations

import math

from unetjax.data import kinds
from unetjax.planning import fingerprint

TRAIN_SHARE = 0.8  # of the time budget; the rest compiles, evaluates and checkpoints
# Each evaluation scores every validation case per head and in the accurate mode: 21 s on the
# 17-minute CPU hippocampus run, so ten of them took a fifth of its budget (benchmarks/RESULTS.md).
# Evaluations fall on every (CHECKPOINTS // EVALUATIONS)th checkpoint (`intervals`).
EVALUATIONS, CHECKPOINTS = 5, 10
SGD_FROM_STEPS = 5000
MIN_STEPS, MAX_STEPS = 10, 250_000


def long_run(num_steps: int) -> bool:
    """Whether a run of `num_steps` takes nnU-Net's long recipe (SGD, poly, instance norm)
    rather than the short one (Adam, cosine, batch norm): one count decides both."""
    return num_steps >= SGD_FROM_STEPS


def optimiser(num_steps: int, long: bool) -> tuple[dict, str]:
    """nnU-Net's SGD for long runs; Adam with a cosine decay for short ones (`long_run`)."""
    if long:
        values = {
            "optimizer.name": "sgd",
            "optimizer.learning_rate": 1e-2,
            "optimizer.momentum": 0.99,
            "optimizer.nesterov": True,
            "optimizer.weight_decay": 3e-5,
            "optimizer.schedule": "poly",
            "optimizer.poly_power": 0.9,
            "optimizer.end_lr_factor": 0.0,
            "optimizer.warmup_steps": 0,
        }
        return values, f"{num_steps} steps: nnU-Net's SGD (0.01, Nesterov 0.99, poly 0.9)"
    values = {
        "optimizer.name": "adam",
        "optimizer.learning_rate": 3e-3,
        "optimizer.weight_decay": 0.0,
        "optimizer.schedule": "cosine",
        "optimizer.end_lr_factor": 0.01,
        "optimizer.warmup_steps": min(50, num_steps // 10),
    }
    return values, (
        f"{num_steps} steps, a short run: Adam 3e-3 with a cosine decay converges in few steps; "
        "nnU-Net's SGD schedule assumes 250,000"
    )


def normalisation(num_steps: int) -> tuple[str, str]:
    """nnU-Net's instance norm for long runs; batch norm for short ones, where it converged
    faster (the hippocampus comparison in benchmarks/RESULTS.md)."""
    if long_run(num_steps):
        return "instance", (
            f"instance: {num_steps} steps, nnU-Net's long schedule and its norm (batches of 2 "
            "make batch statistics noisy)"
        )
    return "batch", (
        f"batch: {num_steps} steps, under {SGD_FROM_STEPS}; in a short run batch norm converged "
        "faster (hippocampus, 414 steps, one seed: mean Dice 0.78 against 0.73 with instance "
        "norm); nnU-Net's instance norm suits its long schedule"
    )


def augmentation(fp: dict, long: bool) -> tuple[dict, str]:
    """Mirroring and in-plane rotation and scaling; 90-degree turns only where orientation
    carries no meaning (microscopy), never for anatomy; elastic deformation for anatomy in a
    short run (`long_run`), where it helped, and not in nnU-Net's long one."""
    anatomy = _volumes(fp)  # scans have an orientation; micrographs do not
    elastic = anatomy and not long
    values = {
        "data.augment": True,
        "data.flip_prob": 0.5,
        "data.rot90_prob": 0.0 if anatomy else 0.5,
        "data.affine_prob": 0.2,
        "data.rotation_degrees": 30.0 if anatomy else 180.0,
        "data.scale_range": (0.7, 1.4),
        "data.elastic_prob": 0.2 if elastic else 0.0,
        "data.brightness_delta": 0.1,
        "data.contrast_range": (0.75, 1.25),
        "data.gamma_range": (0.7, 1.5),
        "data.noise_prob": 0.1,
        "data.noise_std": 0.1,
    }
    why = (
        "anatomy (a Decathlon folder): mirroring, in-plane rotation +-30 and scaling 0.7-1.4, "
        "intensity changes, no 90-degree turns (anatomy never shows them), "
        + (
            "elastic deformation (p 0.2): a short run, where it helped (hippocampus, 475 steps, "
            "three seeds: mean Dice 0.790 against 0.784 without it)"
            if elastic
            else "no elastic deformation (nnU-Net v2 dropped it from its long schedule)"
        )
        if anatomy
        else "no preferred orientation (2D images): mirroring, 90-degree turns, any in-plane "
        "rotation, scaling 0.7-1.4, intensity changes"
    )
    return values, why


def dimensionality(fp: dict) -> str:
    """Why the data trains in 2D or 3D (and when both would be worth a try)."""
    if fp["spatial_dims"] == 2:
        return "2D images"
    spacing = fp["target_spacing"]
    if max(spacing) / min(spacing) > 3:
        return (
            "3D; the spacing is anisotropic (over 3x), where nnU-Net also trains a 2D model "
            "on slices and keeps the better: the decathlon reader trains 3D only"
        )
    return "3D volumes at near-isotropic spacing: 3D context helps, as in nnU-Net's 3d_fullres"


def evaluation(fp: dict) -> str:
    """Why validation scores whole images as `predict` predicts them (no `data.eval_patch_size`
    crop): tiled at the patch size where the sizes vary."""
    if not _volumes(fp):
        return "whole images (full-size validation, tiled where sizes vary)"
    return (
        "whole volumes, overlap-tiled at the patch size as `predict` predicts them; a centre "
        "crop padded beyond a scan changes the predictions near the padding (hippocampus, nine "
        "runs: 61 cases with an Anterior HD95 over 15 mm on crops, 9 as predicted)"
    )


def intervals(num_steps: int) -> dict:
    """Checkpoint CHECKPOINTS times, so a crash loses at most a tenth of the run (never more
    often than every 10 steps); evaluate about EVALUATIONS times, the last at the final step, on
    checkpoint steps: an evaluation also saves, and off them it added a save a step or two from a
    checkpoint's."""

    def every(times: int) -> int:
        return max(1, min(num_steps, max(10, math.ceil(num_steps / times))))

    checkpoint = every(CHECKPOINTS)
    return {
        "train.eval_every": min(num_steps, checkpoint * (CHECKPOINTS // EVALUATIONS)),
        "train.checkpoint_every": checkpoint,
        "train.log_every": max(1, min(50, checkpoint // 5)),
    }


def schedule_steps(seconds: float, hours: float) -> tuple[int, str]:
    usable = hours * 3600 * TRAIN_SHARE
    steps = int(min(MAX_STEPS, max(MIN_STEPS, usable // seconds)))
    return steps, (
        f"{hours:g} h x {TRAIN_SHARE:.0%} for training / {seconds:.3g} s per measured step "
        f"(clipped to {MIN_STEPS}..{MAX_STEPS})"
    )


def data_fields(fp: dict) -> dict:
    """The config.data fields that name and shape the dataset the plan was made for."""
    return fingerprint.SOURCES[fp["kind"]].data_fields(fp)


def _volumes(fp: dict) -> bool:
    """Whether the fingerprinted data trains as volumes of a scan (`kinds.takes_volumes`)."""
    return kinds.get(fp["kind"]).takes_volumes
