"""Planning rules on hand-built fingerprints: nnU-Net's pooling, the memory fit and its limits.

The memory fit runs here on a formula in place of the compiled step (fast, and the rule is what
is tested); one test compiles the real step and checks XLA's figure against the arrays it holds.
"""

import math

import jax
import ml_collections
import pytest

from unetjax import models
from unetjax.planning import fits, memory, planner, rules, topology

MODEL = ml_collections.ConfigDict(
    {
        "architecture": "unet_plusplus",
        "deep_supervision": True,
        "norm": "instance",
        "activation": "relu",
        "dropout": 0.0,
        "upsample": "transpose",
        "cat_channels": 64,
        "dtype": "float32",
    }
)


def _fingerprint(spacing, median, num_cases=40, kind="decathlon"):
    return {
        "kind": kind,
        "source": "hand-built",
        "channels": ["MRI"],
        "labels": {"background": 0, "a": 1, "b": 2},
        "class_fractions": {"0": 0.9, "1": 0.05, "2": 0.05},
        "spatial_dims": len(spacing),
        "num_cases": num_cases,
        "target_spacing": list(spacing),
        "median_shape": list(median),
        "max_shape": [int(m) + 5 for m in median],
        "total_voxels": int(num_cases * math.prod(median)),
        "data_hash": "0" * 16,
        "cases": [{"shape_after": list(median)}] * num_cases,
    }


def _formula_peak(model_config, optimizer, batch, patch):
    """Parameters (with Adam's two moments) plus activations linear in batch x voxels."""
    params = sum(f * f * 27 for f in model_config.filters)
    return 4 * 3 * params + batch * math.prod(patch) * sum(model_config.filters) * 40


def _plan(fp, gb, peak=_formula_peak):
    budget = fits.Budget(int(gb * 2**30), "as asked", 1.0)
    return planner.make_plan(fp, budget, MODEL, peak=peak, step_seconds=lambda *a: 0.5)


def test_an_axis_of_5_mm_on_0_8_mm_pixels_is_not_pooled_until_the_others_catch_up():
    shape = topology.pooling((5.0, 0.8, 0.8), (20, 192, 160))
    # Worked by hand: in-plane spacing 0.8 -> 1.6 -> 3.2 mm before 5 mm is under twice it.
    assert shape.strides == ((1, 2, 2), (1, 2, 2), (2, 2, 2), (2, 2, 2), (1, 2, 2))
    assert shape.kernels[:2] == ((1, 3, 3), (1, 3, 3)) and shape.kernels[2] == (3, 3, 3)
    assert shape.divisor == (2**2, 2**5, 2**5) and shape.patch == (20, 192, 160)
    # The bottleneck is about 4 voxels on every axis: 20/4, 192/32, 160/32.
    assert [p // d for p, d in zip(shape.patch, shape.divisor, strict=True)] == [5, 6, 5]


def test_isotropic_data_pools_every_axis_until_the_edge_is_about_4():
    shape = topology.pooling((1.0, 1.0, 1.0), (40, 56, 40))
    assert shape.strides == ((2, 2, 2),) * 3 and shape.patch == (40, 56, 40)


def test_the_initial_patch_follows_the_inverse_spacing_and_the_median_shape():
    patch = topology.initial_patch((5.0, 0.8, 0.8), (1000, 1000, 1000))
    assert patch[1] == patch[2] and patch[1] / patch[0] == pytest.approx(6.25, rel=0.05)
    assert math.prod(patch) == pytest.approx(256**3, rel=0.05)
    assert topology.initial_patch((1.0, 1.0, 1.0), (36, 50, 35)) == (36, 50, 35)


def test_filters_double_from_32_and_are_capped_per_dimension():
    assert topology.filters(5, 3) == (32, 64, 128, 256, 320, 320)
    assert topology.filters(6, 2) == (32, 64, 128, 256, 512, 512, 512)


def test_the_memory_fit_is_monotone_in_the_budget_and_stays_under_it():
    fp = _fingerprint((1.0, 1.0, 1.0), (160, 160, 160), num_cases=200)
    voxels = []
    for gb in (0.5, 1, 2, 4, 8, 16):
        plan = _plan(fp, gb)
        assert plan["predicted_peak_bytes"] <= gb * 2**30
        # The patch is chosen first (at batch 2); a larger one may add a level (a per-axis
        # stride) and its parameters, so batch x patch need not grow with the budget.
        voxels.append(math.prod(plan["config"]["data.patch_size"]))
        assert plan["config"]["train.batch_size"] >= fits.MIN_BATCH
    assert voxels == sorted(voxels) and voxels[-1] > voxels[0]


def test_a_shrinking_patch_gives_up_the_axis_largest_against_the_median_first():
    fp = _fingerprint((1.0, 1.0, 1.0), (64, 200, 200), num_cases=200)
    for gb in (0.5, 2, 4):
        patch = _plan(fp, gb)["config"]["data.patch_size"]
        ratios = [p / m for p, m in zip(patch, fp["median_shape"], strict=True)]
        # Shrunk in proportion to the median shape, not axis by axis to the minimum.
        assert max(ratios) - min(ratios) < 0.15 and patch[0] < patch[1]


def test_the_batch_never_holds_more_than_5_percent_of_the_dataset():
    fp = _fingerprint((1.0, 1.0, 1.0), (32, 32, 32), num_cases=100)
    plan = _plan(fp, 64)
    cap = round(0.05 * fp["total_voxels"] / math.prod(plan["config"]["data.patch_size"]))
    assert plan["config"]["train.batch_size"] == cap == 5


@pytest.mark.parametrize(
    ("hours", "base", "narrowed_batch", "norm"),
    [
        (30.0, 32, False, "instance"),
        (10.0, 32, False, "batch"),
        (1.0, 32, True, "batch"),
        (0.25, 16, True, "batch"),
        (0.1, 16, True, "batch"),
        (0.02, 8, True, "batch"),
    ],
)
def test_a_short_time_budget_drops_the_batch_then_halves_the_filters(
    hours, base, narrowed_batch, norm
):
    """A step of batch b at base width w takes b * (w / 8)^2 * 0.1 s with instance norm and
    0.8x that with batch norm (by hand: base 32, batch 7: 11.2 s, batch 2: 3.2 s; base 16:
    0.8 s; base 8: 0.2 s). The memory fit (batch 7, the 5% cap) timed with instance norm
    decides the recipe: 30 h buys 7714 steps, a long run (instance norm, SGD); every shorter
    budget is a short run (batch norm, Adam), timed again with batch norm before 400 steps must
    fit 80% of the budget. 10 h keeps the memory fit (3214 steps), 1 h drops the batch to 2
    (2880 s / 2.56 s), 15 min also halves the filters (720 s / 0.64 s), 6 min does too (288 s
    / 0.64 s = 450, where instance norm's 0.8 s would give 360 and narrow once more), and
    72 s gets the narrowest network though it buys under 300 steps."""
    fp = _fingerprint((1.0, 1.0, 1.0), (36, 50, 35), num_cases=200)

    def seconds(config, optimizer, batch, patch):
        return batch * (config.filters[0] / 8) ** 2 * 0.1 * (0.8 if config.norm == "batch" else 1)

    budget = fits.Budget(64 * 2**30, "as asked", hours)
    plan = planner.make_plan(fp, budget, MODEL, peak=_formula_peak, step_seconds=seconds)
    config = plan["config"]
    cap = round(0.05 * fp["total_voxels"] / math.prod(config["data.patch_size"]))
    assert config["model.filters"][0] == base
    assert config["train.batch_size"] == (2 if narrowed_batch else cap) and cap == 7
    step = config["train.batch_size"] * (base / 8) ** 2 * 0.1 * (0.8 if norm == "batch" else 1)
    assert config["train.num_steps"] == int(hours * 3600 * 0.8 // step)
    assert ("narrowed" in plan["reasons"]["time fit"]) == narrowed_batch
    assert config["model.norm"] == norm
    assert config["optimizer.name"] == ("adam" if norm == "batch" else "sgd")
    assert config["data.elastic_prob"] == (0.2 if norm == "batch" else 0.0)
    assert plan["measured_model"]["norm"] == norm


def test_the_chosen_norm_is_timed_again_and_the_run_keeps_the_recipe_its_fit_decided():
    """Instance norm steps take 0.625 s, batch norm 0.5 s. 1 h x 80% = 2880 s buys 4608
    instance-norm steps: a short run, so batch norm, timed again: 5760 steps. The count crosses
    5000, yet the recipe stays the one the fit decided (Adam with batch norm, not SGD)."""
    fp = _fingerprint((1.0, 1.0, 1.0), (36, 50, 35), num_cases=200)

    def seconds(config, optimizer, batch, patch):
        return 0.5 if config.norm == "batch" else 0.625

    budget = fits.Budget(64 * 2**30, "as asked", 1.0)
    plan = planner.make_plan(fp, budget, MODEL, peak=_formula_peak, step_seconds=seconds)
    config = plan["config"]
    assert config["train.num_steps"] == 5760 and plan["seconds_per_step"] == 0.5
    assert config["model.norm"] == "batch" and config["optimizer.name"] == "adam"
    assert config["data.elastic_prob"] == 0.2  # the short recipe's augmentation too
    assert plan["reasons"]["steps"].endswith("timed with batch norm")


@pytest.mark.parametrize(
    ("num_steps", "evaluate", "checkpoint", "log"),
    [(453, 92, 46, 9), (30, 20, 10, 2), (5, 5, 5, 1), (250_000, 50_000, 25_000, 50)],
)
def test_a_planned_run_evaluates_five_times_on_checkpoints_and_checkpoints_ten(
    num_steps, evaluate, checkpoint, log
):
    """By hand: 453 steps checkpoint every 46 and evaluate at every second checkpoint (92, 184,
    276, 368 and the final 453); never more often than every 10 steps nor less than once; a log
    line every fifth of a checkpoint interval, at most 50 steps apart."""
    assert rules.intervals(num_steps) == {
        "train.eval_every": evaluate,
        "train.checkpoint_every": checkpoint,
        "train.log_every": log,
    }


def test_batch_norm_that_does_not_fit_the_budget_keeps_instance_norm():
    """A formula where batch norm costs 1.5x the memory of instance norm: the batch fit fills
    the budget with instance norm, so the short run keeps instance norm and says why."""
    fp = _fingerprint((1.0, 1.0, 1.0), (36, 50, 35), num_cases=200)

    def peak(config, optimizer, batch, patch):
        return _formula_peak(config, optimizer, batch, patch) * (
            1.5 if config.norm == "batch" else 1
        )

    budget = fits.Budget(2**29, "as asked", 0.25)
    plan = planner.make_plan(fp, budget, MODEL, peak=peak, step_seconds=lambda *a: 0.5)
    assert plan["config"]["train.num_steps"] == 1440  # 0.25 h x 80% / 0.5 s: a short run
    assert plan["config"]["model.norm"] == "instance"
    assert plan["reasons"]["norm"].startswith("instance: batch norm would need")
    assert plan["predicted_peak_bytes"] <= 0.5 * 2**30


def test_a_budget_too_small_names_the_budget_and_the_minimum():
    fp = _fingerprint((1.0, 1.0, 1.0), (64, 64, 64))
    with pytest.raises(fits.PlanError, match=r"budget of 0.001 GB .* needs .* at least"):
        _plan(fp, 0.001)


def test_one_case_gets_a_one_line_reason():
    with pytest.raises(fits.PlanError, match="1 labelled case; a plan needs at least 2"):
        _plan(_fingerprint((1.0, 1.0, 1.0), (32, 32, 32), num_cases=1), 4)


def test_validation_scores_whole_volumes_as_predict_does_and_anatomy_is_not_turned():
    fp = _fingerprint((1.0, 1.0, 1.0), (36, 50, 35))
    plan = _plan(fp, 4)
    assert plan["config"]["data.eval_patch_size"] is None  # no crop padded beyond the scans
    assert "as `predict` predicts them" in plan["reasons"]["evaluation"]
    assert plan["config"]["data.rot90_prob"] == 0.0  # anatomy: no 90-degree turns
    folder = _fingerprint((1.0, 1.0), (300, 400), kind="image_folder")
    folder["class_fractions"] = {"0": 0.8, "255": 0.2}
    config = _plan(folder, 4)["config"]
    assert config["data.eval_patch_size"] is None and config["data.name"] == "image_folder"


def test_a_short_run_deforms_anatomy_elastically_but_not_2d_images():
    """Elastic deformation is the short recipe's for volumes only: 2D folders keep their
    90-degree turns and get none (not measured there)."""
    budget = fits.Budget(2**30, "as asked", 0.1)  # 288 s / 0.5 s: 576 steps, a short run
    volume = planner.make_plan(
        _fingerprint((1.0, 1.0, 1.0), (36, 50, 35)),
        budget,
        MODEL,
        peak=_formula_peak,
        step_seconds=lambda *a: 0.5,
    )
    assert volume["config"]["data.elastic_prob"] == 0.2
    assert "elastic deformation (p 0.2)" in volume["reasons"]["augmentation"]
    folder = _fingerprint((1.0, 1.0), (300, 400), kind="image_folder")
    folder["class_fractions"] = {"0": 0.8, "255": 0.2}
    config = planner.make_plan(
        folder, budget, MODEL, peak=_formula_peak, step_seconds=lambda *a: 0.5
    )["config"]
    assert config["data.elastic_prob"] == 0.0 and config["data.rot90_prob"] == 0.5


def test_the_compiled_step_holds_at_least_its_parameters_moments_and_batch():
    fp = _fingerprint((1.0, 1.0), (32, 32), kind="image_folder")
    fp["class_fractions"] = {"0": 0.5, "1": 0.5}
    shape = topology.pooling((1.0, 1.0), (16, 16))
    model = fits.model_config(MODEL, fp, shape)
    model.filters = (4, 8, 16)
    params = 4 * 8 * 9 + 4 + 4 * 4 * 9 + 4  # a lower bound: the first two convolutions
    peak = memory.peak_bytes(model, fits.MEASURE_OPTIMIZER, 8, (16, 16))
    # Parameters and Adam's two moments (float32), the images and the int32 masks.
    assert peak >= 3 * 4 * params + 8 * 16 * 16 * (4 + 4)
    assert peak < 64 * 2**20  # and not a wild figure for a 4..16-filter network


def test_a_plan_for_thick_slices_carries_per_axis_strides_that_the_model_takes():
    # Spacing per array axis, as the fingerprint holds it: the first axis is the 4 mm one.
    fp = _fingerprint((4.0, 0.8, 0.8), (12, 48, 40))
    base = ml_collections.ConfigDict({**MODEL.to_dict(), "architecture": "unet"})
    budget = fits.Budget(2**30, "as asked", 1.0)
    plan = planner.make_plan(fp, budget, base, peak=_formula_peak, step_seconds=lambda *a: 0.5)
    config = plan["config"]
    strides, kernels = config["model.strides"], config["model.kernels"]
    # In-plane 0.8 -> 1.6 -> 3.2 mm before the 4 mm axis is under twice the finest.
    assert strides[:2] == [[1, 2, 2], [1, 2, 2]] and kernels[:2] == [[1, 3, 3], [1, 3, 3]]
    assert len(strides) == config["model.depth"] and len(kernels) == len(strides) + 1
    assert "(1,2,2) (1,2,2)" in plan["reasons"]["pooling"]
    model_config = ml_collections.ConfigDict(base.to_dict())
    for key, value in config.items():
        if key.startswith("model."):
            model_config[key.removeprefix("model.")] = value
    model_config.update(filters=(2,) * len(kernels), spatial_dims=3, in_channels=1)
    model_config.update(num_classes=3, output_activation="softmax")
    model = models.from_config(model_config)
    patch = tuple(config["data.patch_size"])
    assert all(p % d == 0 for p, d in zip(patch, model.spec.divisor(len(strides)), strict=True))
    # Traced at the patch (test_planning_cli trains a planned anisotropic run for real).
    (logits,) = jax.eval_shape(model, jax.ShapeDtypeStruct((1, *patch, 1), "float32"))
    assert logits.shape == (1, *patch, 3)
