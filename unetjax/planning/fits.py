"""The measured fits of a plan: the patch and the batch to a memory budget, the width and the
batch to a time budget, with the norm chosen between the two (`planner.make_plan` calls them in
that order).

Each fit compiles or times the real train step through the `peak` and `step_seconds` functions
it is given (`memory.peak_bytes`, `memory.seconds_per_step`; tests pass formulas instead).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import ml_collections
import numpy as np

from unetjax.data import kinds
from unetjax.planning import rules, topology

MIN_BATCH = 2
MAX_DATASET_FRACTION = 0.05  # no batch holds more than 5% of the dataset's voxels
MIN_PATCH_EDGE = 2 * topology.MIN_EDGE
# A time budget that allows fewer steps than this at the memory-fitted size narrows the network
# (batch to MIN_BATCH, then halved filters down to MIN_BASE_FILTERS): on a CPU, 17 minutes buy
# about 110 steps of nnU-Net's 32-wide hippocampus network. 400 from the hippocampus benchmark
# (benchmarks/RESULTS.md): in 17 minutes base 16 at 414 steps beat base 8 at 749 (target 1000).
TARGET_STEPS = 400
MIN_BASE_FILTERS = 8

# The train step is measured with Adam, whose two moments per parameter bound SGD's one.
MEASURE_OPTIMIZER = ml_collections.ConfigDict(
    {
        "name": "adam",
        "learning_rate": 1e-3,
        "schedule": "constant",
        "warmup_steps": 0,
        "b1": 0.9,
        "b2": 0.999,
        "grad_clip_norm": 0.0,
    }
)

PeakFn = Callable[[ml_collections.ConfigDict, ml_collections.ConfigDict, int, Sequence[int]], int]
TimeFn = Callable[[ml_collections.ConfigDict, ml_collections.ConfigDict, int, Sequence[int]], float]


class PlanError(ValueError):
    """The data or the budgets admit no plan; the message says why and what would work."""


@dataclasses.dataclass(frozen=True)
class Budget:
    """What the plan must fit: device memory in bytes (and where that figure came from), and
    the hours training may take."""

    memory_bytes: int
    memory_source: str
    hours: float


def gigabytes(value: int) -> str:
    return f"{value / 2**30:.3g} GB"


def task(fp: dict) -> tuple[int, str]:
    """(num_classes, output_activation) as the trainer will infer them from the data."""
    if kinds.get(fp["kind"]).takes_volumes:  # label maps with the labels of dataset.json
        return len(fp["labels"]), "softmax"
    values = {int(v) for v in fp["class_fractions"]}
    if values <= {0, 1} or values <= {0, 255}:
        return 1, "sigmoid"
    return max(values) + 1, "softmax"


def model_config(
    base: ml_collections.ConfigDict, fp: dict, shape: topology.Topology
) -> ml_collections.ConfigDict:
    """`base` (a config.model section) with the planned and data-derived fields filled in."""
    config = ml_collections.ConfigDict(base.to_dict())
    num_classes, activation = task(fp)
    config.update(
        depth=shape.depth,
        filters=topology.filters(shape.depth, fp["spatial_dims"]),
        # Per-axis pooling, as lists of lists: what the plan's JSON holds.
        strides=[list(s) for s in shape.strides],
        kernels=[list(k) for k in shape.kernels],
        base_filters=None,
        spatial_dims=fp["spatial_dims"],
        in_channels=len(fp["channels"]),
        num_classes=num_classes,
        output_activation=activation,
    )
    return config


def _shrink(patch: list[int], median, divisor) -> bool:
    """One shrink step of the axis largest relative to the median shape that can still shrink;
    False when every axis is at its minimum."""
    order = np.argsort([-p / m for p, m in zip(patch, median, strict=True)])
    for axis in order:
        smaller = patch[axis] - divisor[axis]
        if smaller >= MIN_PATCH_EDGE:
            patch[axis] = smaller
            return True
    return False


def shrink_sequence(spacing, median) -> list[topology.Topology]:
    """Every candidate from the initial patch down to the smallest, one shrink step apart, each
    with its per-axis pooling. As in nnU-Net, the padded patch shrinks by the divisor of the
    axis and is padded again for its new topology."""
    sequence = [topology.pooling(spacing, topology.initial_patch(spacing, median))]
    while True:
        planned = sequence[-1]
        patch = list(planned.patch)
        if not _shrink(patch, median, planned.divisor):
            return sequence
        candidate = topology.pooling(spacing, patch)
        if candidate.patch == planned.patch:
            return sequence  # padding undid the step: nothing smaller to try
        sequence.append(candidate)


def fit_patch(
    fp: dict, budget: Budget, base: ml_collections.ConfigDict, optimizer, peak: PeakFn
) -> tuple[topology.Topology, int, list[str]]:
    """The largest candidate patch (nnU-Net's shrink order) whose step fits at batch 2, its
    measured peak and the patches measured. Memory falls along the candidates, so a jump sized
    by the first measurement, then bisection, needs a few compiles rather than one per step."""
    sequence = shrink_sequence(fp["target_spacing"], fp["median_shape"])
    measured: dict[int, int] = {}
    tried = []

    def used(index: int) -> int:
        if index not in measured:
            shape = sequence[index]
            config = model_config(base, fp, shape)
            measured[index] = peak(config, optimizer, MIN_BATCH, shape.patch)
            tried.append(f"{shape_text(shape.patch)}: {gigabytes(measured[index])}")
        return measured[index]

    fits, too_big = None, None
    index = 0
    while fits is None:
        if used(index) <= budget.memory_bytes:
            fits = index
            break
        too_big = index
        if index == len(sequence) - 1:
            shape = sequence[index]
            raise PlanError(
                f"a memory budget of {gigabytes(budget.memory_bytes)} ({budget.memory_source}) "
                f"is too small: the smallest sensible network (patch {shape_text(shape.patch)}, "
                f"batch {MIN_BATCH}, filters {topology.filters(shape.depth, fp['spatial_dims'])})"
                f" needs {gigabytes(used(index))}; raise --memory-gb to at least "
                f"{math.ceil(used(index) / 2**30 * 1000) / 1000:g}"
            )
        target = _voxels(sequence[index]) * budget.memory_bytes / used(index)
        index = next(
            (j for j in range(index + 1, len(sequence)) if _voxels(sequence[j]) <= target),
            len(sequence) - 1,
        )
    while too_big is not None and fits - too_big > 1:
        middle = (fits + too_big) // 2
        if used(middle) <= budget.memory_bytes:
            fits = middle
        else:
            too_big = middle
    return sequence[fits], used(fits), tried


def _voxels(candidate: topology.Topology) -> int:
    return math.prod(candidate.patch)


def fit_batch(
    fp: dict, budget: Budget, config, optimizer, patch, peak_at_min: int, peak: PeakFn
) -> tuple[int, int, str]:
    """(batch, its measured peak, why): memory grows linearly with the batch, so two compiles
    give its slope; the 5% rule caps it; a final compile checks the choice."""
    peak_one = peak(config, optimizer, 1, patch)
    per_sample = max(peak_at_min - peak_one, 1)
    by_memory = MIN_BATCH + (budget.memory_bytes - peak_at_min) // per_sample
    cap = round(MAX_DATASET_FRACTION * fp["total_voxels"] / math.prod(patch))
    batch = int(max(MIN_BATCH, min(by_memory, cap)))
    why = (
        f"{by_memory} fit in memory ({gigabytes(per_sample)} per sample)"
        + (f"; capped at {cap}: 5% of the dataset's voxels" if cap < by_memory else "")
        + (f"; raised to the minimum {MIN_BATCH}" if batch > min(by_memory, cap) else "")
    )
    used = peak_at_min if batch == MIN_BATCH else peak(config, optimizer, batch, patch)
    while used > budget.memory_bytes and batch > MIN_BATCH:
        batch -= 1
        used = peak(config, optimizer, batch, patch)
    return batch, used, why


def fit_norm(
    budget: Budget,
    config: ml_collections.ConfigDict,
    batch: int,
    patch: Sequence[int],
    used: int,
    peak: PeakFn,
    step_seconds: TimeFn,
) -> tuple[ml_collections.ConfigDict, int, float, int, str]:
    """(model config, its measured peak, seconds per step, the steps that decided, why), before
    the time fit. The memory-fitted network's step is timed with instance norm, as the memory
    fit ran; that count decides the recipe (`rules.long_run`, norm and optimiser together). A
    short run's batch norm is compiled again (batch norm that would not fit keeps instance
    norm) and timed again, so the time fit narrows by the step that will run (batch norm's was
    13 to 15% faster on the CPU)."""
    seconds = step_seconds(config, MEASURE_OPTIMIZER, batch, patch)
    steps = rules.schedule_steps(seconds, budget.hours)[0]
    norm, why = rules.normalisation(steps)
    why += f" (counted at the memory fit with {config.norm} norm: {seconds:.3g} s a step)"
    if norm == config.norm:
        return config, used, seconds, steps, why
    chosen = ml_collections.ConfigDict({**config.to_dict(), "norm": norm})
    chosen_peak = peak(chosen, MEASURE_OPTIMIZER, batch, patch)
    if chosen_peak > budget.memory_bytes:
        over = f"{config.norm}: {norm} norm would need {gigabytes(chosen_peak)}, over the budget"
        return config, used, seconds, steps, over
    return chosen, chosen_peak, step_seconds(chosen, MEASURE_OPTIMIZER, batch, patch), steps, why


def fit_time(
    budget: Budget,
    config: ml_collections.ConfigDict,
    batch: int,
    patch: Sequence[int],
    seconds: float,
    step_seconds: TimeFn,
) -> tuple[ml_collections.ConfigDict, int, float, str]:
    """(model config, batch, seconds per step, why): the memory-fitted network (whose step
    took `seconds`) when the budget gives it TARGET_STEPS steps; otherwise the batch drops to
    MIN_BATCH, then the filters halve until it does (or the base width reaches
    MIN_BASE_FILTERS), each candidate timed with the chosen norm."""
    tried = [f"base {config.filters[0]}, batch {batch}: {seconds:.3g} s"]
    while rules.schedule_steps(seconds, budget.hours)[0] < TARGET_STEPS:
        if batch > MIN_BATCH:
            batch = MIN_BATCH
        elif config.filters[0] > MIN_BASE_FILTERS:
            config = ml_collections.ConfigDict(config.to_dict())
            base = max(MIN_BASE_FILTERS, config.filters[0] // 2)
            config.filters = topology.filters(config.depth, config.spatial_dims, base)
        else:
            break
        seconds = step_seconds(config, MEASURE_OPTIMIZER, batch, patch)
        tried.append(f"base {config.filters[0]}, batch {batch}: {seconds:.3g} s")
    if len(tried) == 1:
        return config, batch, seconds, f"{tried[0]} per step leaves {TARGET_STEPS}+ steps"
    return (
        config,
        batch,
        seconds,
        (
            f"narrowed for the time budget (under {TARGET_STEPS} steps at the memory fit); "
            f"timed with {config.norm} norm {'; '.join(tried)}"
        ),
    )


def shape_text(values: Sequence[float]) -> str:
    return "x".join(f"{v:g}" for v in values)
