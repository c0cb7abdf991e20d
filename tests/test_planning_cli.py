"""unetjax-plan and configs/auto.py as a user runs them: error paths in subprocesses, the hash
check, and a planned run end to end."""

import json
import os
import pathlib
import subprocess
import sys

import ml_collections
import numpy as np
import pytest
from PIL import Image

from configs import auto
from unetjax.data.volumes import synthetic_decathlon
from unetjax.planning import fingerprint, planner, plans_file

REPO = pathlib.Path(__file__).resolve().parents[1]


def _run(args, tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "TFDS_DATA_DIR": str(tmp_path / "tfds")}
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )


def _assert_user_error(result, *fragments):
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return synthetic_decathlon.write_dataset(
        tmp_path_factory.mktemp("msd"), num_training=4, num_test=0
    )


def test_a_missing_folder_and_a_negative_budget_are_one_line_errors(tmp_path, folder):
    _assert_user_error(
        _run(["-m", "unetjax.plan", str(tmp_path / "nowhere")], tmp_path), "no such folder"
    )
    _assert_user_error(
        _run(["-m", "unetjax.plan", str(folder), "--memory-gb", "-1"], tmp_path),
        "expected a positive number of GB",
    )


def test_a_dataset_of_one_case_gets_a_one_line_reason(tmp_path):
    one = synthetic_decathlon.write_dataset(tmp_path / "one", num_training=1, num_test=0)
    _assert_user_error(
        _run(["-m", "unetjax.plan", str(one)], tmp_path), "1 labelled case", "at least 2"
    )


@pytest.mark.slow  # two compiles of the train step
def test_a_budget_too_small_names_the_budget_and_the_minimum_that_fits(tmp_path):
    for name in ("images", "masks"):
        (tmp_path / "cells" / name).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index, size in enumerate([(20, 24), (24, 20), (22, 22)]):  # varied sizes, 2D
        Image.fromarray(rng.integers(0, 255, size, dtype=np.uint8)).save(
            tmp_path / "cells" / "images" / f"c{index}.png"
        )
        mask = (rng.random(size) > 0.5).astype(np.uint8) * 255
        Image.fromarray(mask).save(tmp_path / "cells" / "masks" / f"c{index}.png")
    result = _run(["-m", "unetjax.plan", str(tmp_path / "cells"), "--memory-gb", "1e-5"], tmp_path)
    _assert_user_error(result, "memory budget of 1e-05 GB", "too small", "at least")


def test_a_plan_made_for_other_data_is_refused_naming_both_hashes(folder, tmp_path):
    config = auto.get_config()
    config.data.manual_dir = str(folder)
    config.plan.file = str(tmp_path / "plans.json")
    stale = {"version": planner.VERSION, "config": {}, "data_hash": "ffff", "source": "/old"}
    (tmp_path / "plans.json").write_text(json.dumps(stale))
    current = fingerprint.data_hash(str(folder))
    with pytest.raises(ValueError, match=f"hash ffff, /old.*has hash {current}"):
        plans_file.planned_config(config, str(tmp_path / "run"))


def test_auto_without_a_data_folder_says_what_to_set(tmp_path):
    result = _run(
        ["train.py", "--config", "configs/auto.py", "--workdir", str(tmp_path / "run")], tmp_path
    )
    _assert_user_error(result, "--config.data.manual_dir=DIR")


def _formula_peak(model_config, optimizer, batch, patch):
    return batch * int(np.prod(patch)) * sum(model_config.filters) * 40


@pytest.mark.slow  # a real training start: tens of seconds on a loaded 2-core CPU
def test_a_planned_run_trains_with_the_plan_and_records_the_overrides(folder, tmp_path):
    """The plan beside the data is reused (made here with a formula for the memory, so no
    compile), its values land in the run's config, and the overridden ones are recorded."""
    budget = plans_file.budget(1.0, 0.01)
    model = ml_collections.ConfigDict(auto.get_config().model.to_dict())
    plan = planner.make_plan(
        fingerprint.fingerprint(str(folder)),
        budget,
        model,
        peak=_formula_peak,
        step_seconds=lambda *a: 1.0,
    )
    plans_file.save(plan, tmp_path)
    workdir = tmp_path / "run"
    result = _run(
        [
            "train.py",
            "--config",
            "configs/auto.py",
            "--workdir",
            str(workdir),
            f"--config.data.manual_dir={folder}",
            f"--config.plan.file={tmp_path / 'plans.json'}",
            "--config.plan.memory_gb=1.0",
            "--config.plan.hours=0.01",
            "--config.model.filters=(4, 8, 16)",
            "--config.train.stop_after_steps=1",
            "--config.train.progress_bar=False",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    saved = json.loads((workdir / "config.json").read_text())
    assert saved["plan"]["overridden"] == ["model.filters"]
    assert saved["model"]["filters"] == [4, 8, 16]
    # The synthetic volumes are about 3 x 0.9 x 1 mm: the thick first axis waits a level.
    assert plan["config"]["model.strides"] == [[1, 2, 2], [2, 2, 2]]
    assert saved["model"]["strides"] == plan["config"]["model.strides"]
    assert saved["model"]["kernels"] == plan["config"]["model.kernels"]
    assert saved["data"]["patch_size"] == list(plan["config"]["data.patch_size"])
    assert saved["train"]["num_steps"] == plan["config"]["train.num_steps"]
    kept = json.loads((workdir / "plans.json").read_text())
    assert kept["data_hash"] == plan["data_hash"]
    assert kept["overrides"] == {"model.filters": [4, 8, 16]}


def test_the_keys_given_on_the_command_line_are_the_overrides():
    from unetjax.cli import train

    argv = ["--config", "configs/auto.py", "--config.train.batch_size=3", "--workdir", "w"]
    argv += ["--config.data.patch_size", "(8, 16, 16)"]
    assert train.override_keys(argv) == ("train.batch_size", "data.patch_size")


def test_a_read_only_data_folder_asks_for_output_before_any_work(folder, tmp_path):
    folder.chmod(0o555)
    try:
        result = _run(["-m", "unetjax.plan", str(folder)], tmp_path)
    finally:
        folder.chmod(0o755)
    _assert_user_error(result, "cannot write plans.json", "give --output DIR")
    assert not (folder / "plans.json").exists()


def test_the_hippocampus_benchmark_splits_by_subject_and_answers_help(tmp_path):
    from benchmarks.hippocampus_plan import subject_split

    ids = [f"hippocampus_{n:03d}" for n in (1, 2, 3, 4, 6, 7, 8, 10, 11, 12)]
    split = subject_split(ids, 0.4, seed=0)
    subject = lambda case: (int(case[-3:]) + 1) // 2  # noqa: E731 - cases 2k-1 and 2k
    assert sorted(split["train"] + split["validation"]) == ids
    assert not {subject(c) for c in split["train"]} & {subject(c) for c in split["validation"]}
    result = _run(["benchmarks/hippocampus_plan.py", "--help"], tmp_path)
    assert result.returncode == 0 and "split by subject" in result.stdout.lower()


def _per_case_csvs(folder, values):
    """Writes folder/ARM/eval_validation/per_case.csv from arm -> (case, class) -> (dice, hd95)
    at the deepest head (2), fast mode, beside decoys: head 1 and the accurate mode."""
    header = "case,split,depth,mode,class,dice,hd95\n"
    for arm, cases in values.items():
        rows = [f"{c},validation,1,fast,{k},0.0,99.0" for (c, k) in cases]
        rows += [f"{c},validation,2,accurate,{k},0.0,99.0" for (c, k) in cases]
        rows += [f"{c},validation,2,fast,{k},{d},{h}" for (c, k), (d, h) in cases.items()]
        (folder / arm / "eval_validation").mkdir(parents=True)
        (folder / arm / "eval_validation" / "per_case.csv").write_text(header + "\n".join(rows))


def test_the_monai_arms_scores_pair_with_the_plans_by_case_not_by_position(tmp_path):
    """MONAI's scores, kept in evaluation order (b before a), are written as per_case rows;
    by hand, plan minus MONAI: Anterior Dice a 0.8 - 0.7, b 0.6 - 0.5 (paired by position it
    would be +0.3 and -0.1, better on one case); Posterior Dice a 0.7 - 0.6, b 0.9 - 0.9;
    Anterior HD95 a 2 - 2, b 5 - 6."""
    from benchmarks.hippocampus_plan import paired, write_per_case

    plan = {("a", 1): (0.8, 2.0), ("b", 1): (0.6, 5.0), ("a", 2): (0.7, 3.0), ("b", 2): (0.9, 1.0)}
    _per_case_csvs(tmp_path / "s0", {"plan": plan})
    monai = {
        "Anterior": {"dice": [0.5, 0.7], "hd95": [6.0, 2.0]},
        "Posterior": {"dice": [0.9, 0.6], "hd95": [1.0, 3.0]},
    }
    write_per_case(
        tmp_path / "s0" / "monai" / "eval_validation" / "per_case.csv", ["b", "a"], monai
    )
    lines = {
        line.split(" | ")[0]: line
        for line in paired([tmp_path / "s0"], "plan", "monai").splitlines()
    }
    assert lines["| dice Anterior"].startswith("| dice Anterior | +0.100 [")
    assert lines["| dice Anterior"].endswith("| 2 of 2 |")
    assert lines["| dice Posterior"].startswith("| dice Posterior | +0.050 [")
    assert lines["| hd95 Anterior"].startswith("| hd95 Anterior | -0.500 [")
    assert lines["| hd95 Posterior"].startswith("| hd95 Posterior | +0.000 [")


def test_the_hippocampus_benchmark_pairs_plan_and_hand_case_by_case(tmp_path):
    """Hand-built per_case.csv files: the table's differences are the per-case means (deepest
    head, fast mode; the shallower head and the accurate mode are ignored), HD95 counts a
    smaller distance as better, and a second seed's run is averaged in case by case."""
    from benchmarks.hippocampus_plan import paired, seed_means

    seed_0 = {
        "plan": {
            ("a", 1): (0.8, 2.0),
            ("b", 1): (0.6, 5.0),
            ("a", 2): (0.7, 3.0),
            ("b", 2): (0.9, 1.0),
        },
        "hand": {
            ("a", 1): (0.7, 3.0),
            ("b", 1): (0.7, 4.0),
            ("a", 2): (0.7, 3.0),
            ("b", 2): (0.8, 2.0),
        },
    }
    _per_case_csvs(tmp_path / "s0", seed_0)
    table = paired([tmp_path / "s0"], "plan", "hand")
    lines = {line.split(" | ")[0]: line for line in table.splitlines()}
    assert lines["| dice Anterior"].startswith("| dice Anterior | +0.000 [")  # +0.1 and -0.1
    assert lines["| dice Anterior"].endswith("| 1 of 2 |")
    assert lines["| dice Posterior"].startswith("| dice Posterior | +0.050 [")  # 0 and +0.1
    assert lines["| hd95 Anterior"].startswith("| hd95 Anterior | +0.000 [")  # -1 and +1
    assert lines["| hd95 Posterior"].endswith("| 1 of 2 |")  # 3 vs 3 is no better; 1 < 2 is
    # Seed 1: plan Anterior 0.6 on both cases, hand 0.7. Averaged over the seeds, plan has
    # a 0.7, b 0.6 against hand's 0.7, 0.7: differences 0 and -0.1, better on neither case.
    seed_1 = {arm: dict(cases) for arm, cases in seed_0.items()}
    seed_1["plan"].update({("a", 1): (0.6, 2.0), ("b", 1): (0.6, 5.0)})
    _per_case_csvs(tmp_path / "s1", seed_1)
    table = paired([tmp_path / "s0", tmp_path / "s1"], "plan", "hand")
    lines = {line.split(" | ")[0]: line for line in table.splitlines()}
    assert lines["| dice Anterior"].startswith("| dice Anterior | -0.050 [")
    assert lines["| dice Anterior"].endswith("| 0 of 2 |")
    assert lines["| dice Posterior"].startswith("| dice Posterior | +0.050 [")
    means = seed_means([tmp_path / "s0", tmp_path / "s1"], ["plan"]).splitlines()
    # plan: seed 0 Anterior 0.7, Posterior 0.8; seed 1 Anterior 0.6, Posterior 0.8
    assert means[2:] == [
        "| plan | s0 | 0.700 | 0.800 | 0.750 |",
        "| plan | s1 | 0.600 | 0.800 | 0.700 |",
        "| plan | mean of 2 | 0.650 | 0.800 | 0.725 |",
    ]
