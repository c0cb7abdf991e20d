"""The plan: every training choice derived from a fingerprint, a memory budget and a time budget.

`make_plan` returns a JSON-ready dict whose "config" maps dotted config keys (`train.batch_size`)
to values, with a reason for each in "reasons"; `configs/auto.py` applies it as ordinary config
fields, and `unetjax-plan` prints it. The memory fit compiles the real train step
(`memory.peak_bytes`, in `fits`): nnU-Net estimates its VRAM from a formula calibrated on one
GPU, we ask XLA for the step that will actually run. docs/medical.md gives every rule and where
it departs from nnU-Net.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import ml_collections

from unetjax.planning import fits, memory, rules, topology

VERSION = 1


def make_plan(
    fp: dict,
    budget: fits.Budget,
    base_model: ml_collections.ConfigDict,
    *,
    devices: int = 1,
    peak: fits.PeakFn = memory.peak_bytes,
    step_seconds: fits.TimeFn = memory.seconds_per_step,
) -> dict:
    """The plan for fingerprint `fp` (see the module doc). `peak` and `step_seconds` measure
    the train step; tests pass formulas instead."""
    if fp["num_cases"] < 2:
        raise fits.PlanError(
            f"{fp['source']}: {fp['num_cases']} labelled case; a plan needs at least 2 (one to "
            "train on, one to validate on)"
        )
    base_model = ml_collections.ConfigDict(base_model.to_dict())
    base_model.norm = "instance"  # the memory fit runs with it; `fits.fit_norm` picks the run's
    shape, used, tried = fits.fit_patch(fp, budget, base_model, fits.MEASURE_OPTIMIZER, peak)
    model = fits.model_config(base_model, fp, shape)
    batch, used, batch_why = fits.fit_batch(
        fp, budget, model, fits.MEASURE_OPTIMIZER, shape.patch, used, peak
    )
    model, used, seconds, decided_steps, norm_why = fits.fit_norm(
        budget, model, batch, shape.patch, used, peak, step_seconds
    )
    fitted = (tuple(model.filters), batch)
    model, batch, seconds, time_why = fits.fit_time(
        budget, model, batch, shape.patch, seconds, step_seconds
    )
    if (tuple(model.filters), batch) != fitted:  # narrowed: the run's step compiled again
        used = peak(model, fits.MEASURE_OPTIMIZER, batch, shape.patch)
    num_steps, steps_why = rules.schedule_steps(seconds, budget.hours)
    long = rules.long_run(decided_steps)
    optimiser_fields, optimiser_why = rules.optimiser(num_steps, long)
    augment_fields, augment_why = rules.augmentation(fp, long)
    evaluation_why = rules.evaluation(fp)
    spacing, median = fp["target_spacing"], fp["median_shape"]
    smaller = sum(
        any(s < p for s, p in zip(case["shape_after"], shape.patch, strict=True))
        for case in fp["cases"]
    )
    config = {
        **rules.data_fields(fp),
        "data.patch_size": shape.patch,
        "data.eval_patch_size": None,
        **augment_fields,
        "model.norm": model.norm,
        "model.depth": shape.depth,
        "model.strides": [list(s) for s in shape.strides],
        "model.kernels": [list(k) for k in shape.kernels],
        "model.filters": tuple(model.filters),
        "model.base_filters": None,
        "train.batch_size": batch,
        "train.eval_batch_size": devices,
        "train.num_steps": num_steps,
        **rules.intervals(num_steps),
        **optimiser_fields,
    }
    per_axis = " ".join("(" + ",".join(map(str, s)) + ")" for s in shape.strides)
    reasons = {
        "target spacing": f"{_mm(spacing)}: the median spacing of {fp['num_cases']} cases "
        "(with nnU-Net's exception for strongly anisotropic data)",
        "median shape": f"{fits.shape_text(median)} voxels at the target spacing",
        "patch": f"{fits.shape_text(shape.patch)}: shaped by the inverse spacing, clipped to the "
        "median shape, shrunk (largest relative to the median first) until batch "
        f"{fits.MIN_BATCH} fit {fits.gigabytes(budget.memory_bytes)}; tried {'; '.join(tried)}"
        + (
            f"; {smaller} case(s) smaller than the patch along some axis are padded there"
            if smaller
            else ""
        ),
        "pooling": f"nnU-Net's per-axis strides {per_axis}, in the model (model.strides, "
        "model.kernels): a coarse axis waits, unpooled and with kernel 1, until the others "
        "have caught up",
        "depth": f"{shape.depth}: pooling until the bottleneck edge is about "
        f"{topology.MIN_EDGE} voxels",
        "filters": f"{tuple(model.filters)}: doubling per level, capped at "
        f"{topology.MAX_FILTERS[fp['spatial_dims']]}; base {topology.BASE_FILTERS} unless the "
        "time budget is short",
        "norm": norm_why,
        "batch": f"{batch}: {batch_why}; measured peak {fits.gigabytes(used)} of "
        f"{fits.gigabytes(budget.memory_bytes)} ({budget.memory_source})",
        "time fit": time_why,
        "steps": f"{num_steps}: {steps_why}, timed with {model.norm} norm",
        "optimiser": optimiser_why,
        "augmentation": augment_why,
        "dimensionality": rules.dimensionality(fp),
        "evaluation": evaluation_why,
    }
    return {
        "version": VERSION,
        "source": fp["source"],
        "data_hash": fp["data_hash"],
        "budget": dataclasses.asdict(budget),
        "architecture": base_model.architecture,
        "config": config,
        "reasons": reasons,
        "predicted_peak_bytes": used,
        "measured_model": model.to_dict(),
        "seconds_per_step": seconds,
        "fingerprint": fp,
    }


def _mm(values: Sequence[float]) -> str:
    return " x ".join(f"{v:.3g}" for v in values) + " mm"


def describe(plan: dict) -> str:
    """The plan as a few readable lines: each choice and why."""
    width = max(len(k) for k in plan["reasons"])
    lines = [f"plan for {plan['source']} (data hash {plan['data_hash']})"]
    lines += [f"  {key:<{width}}  {why}" for key, why in plan["reasons"].items()]
    return "\n".join(lines)
